"""An exercise child's answers cross the process boundary as safetensors, whatever their dtype or layout."""

import pytest
import torch
from safetensors.torch import load, save

from grader.sandbox.inside.harness import Answers

ANSWERS = {
    "float64": torch.randn(3, 4, dtype=torch.float64),
    "float32": torch.randn(2),
    "float16": torch.randn(5).half(),
    "scalar": torch.tensor(1.5, dtype=torch.float64),
    "empty": torch.zeros(0, 3, dtype=torch.float64),
    "int64": torch.arange(5),
    "bool": torch.tensor([True, False]),
    "transposed": torch.randn(4, 3, dtype=torch.float64).t(),
}


def test_answers_are_the_bytes_safetensors_torch_writes():
    answers = Answers(max_numel=10**6)
    for key, value in ANSWERS.items():
        answers.add(key, value)
    blob = answers.blob()
    assert blob == save(answers.tensors)
    back = load(blob)
    for key, value in ANSWERS.items():
        assert back[key].dtype == value.dtype and torch.equal(back[key], value), key


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float8_e4m3fn] if hasattr(torch, "float8_e4m3fn")
                         else [torch.bfloat16])
def test_a_dtype_numpy_lacks_still_crosses(dtype):
    answers = Answers(max_numel=10**6)
    answers.add("dx", torch.randn(2, 3, dtype=torch.float64))
    answers.add("odd", torch.ones(3).to(dtype))
    back = load(answers.blob())
    assert back["odd"].dtype == dtype and torch.equal(back["odd"].float(), torch.ones(3))
    assert torch.equal(back["dx"], answers.tensors["dx"])


def test_no_answers_no_bytes():
    answers = Answers(max_numel=10)
    answers.add("dx", None)
    assert answers.blob() == b"" and answers.notes["dx"]["status"] == "not_implemented"


def test_case_inputs_from_numpy_arrays_are_the_bytes_of_torch_tensors(tmp_path):
    """A single grade writes its worker's inputs from the reference cache's numpy arrays (before it imports torch):
    the worker reads exactly what torch tensors would have written, as a file and down the go pipe."""
    from grader.sandbox import runner

    tensors = {k: v.contiguous() for k, v in ANSWERS.items() if k not in ("float16",)}
    arrays = {k: v.numpy() for k, v in tensors.items()}
    assert runner.serialized(arrays) == runner.serialized(tensors) == save(tensors)
    runner._to_file(arrays, tmp_path / "a.safetensors")
    runner._to_file(tensors, tmp_path / "t.safetensors")
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "t.safetensors").read_bytes()


def test_a_paused_childs_hidden_inputs_are_the_bytes_safetensors_torch_writes():
    """grader.sandbox.inside.verdicts.hidden_frames sends a paused child its hidden tensors through the same
    serializer (bfloat16 too); no tensors at all is still a valid file."""
    from grader.sandbox.inside.harness import tensor_bytes

    tensors = {k: v.contiguous() for k, v in ANSWERS.items()}
    assert tensor_bytes(tensors) == save(tensors)
    bf16 = {"b": torch.randn(3).bfloat16()}
    assert tensor_bytes(bf16) == save(bf16)
    assert tensor_bytes({}) == save({}) and load(tensor_bytes({})) == {}


@pytest.mark.parametrize("fast", [True, False], ids=["tensor-specs", "without-tensor-specs"])
def test_what_cannot_be_read_where_it_lies_is_still_written_right(monkeypatch, fast):
    """The serializer reads each tensor's memory where it lies: a view, a subclass, an offset slice or a lazily
    negated tensor is never read as if it were dense and plain (that would send other memory or the wrong sign),
    and safetensors without TensorSpec still works."""
    from grader.sandbox.inside import harness

    if not fast:
        monkeypatch.setattr(harness, "TensorSpec", None)
    else:  # a later safetensors whose serializer refuses what it is given: the other path, the same bytes
        refused = []
        monkeypatch.setattr(harness, "serialize", lambda specs: refused.append(specs) or int("x"))
        assert harness.tensor_bytes({"dx": torch.ones(2)}) == save({"dx": torch.ones(2)}) and refused
        monkeypatch.undo()
    base = torch.arange(24, dtype=torch.float64).reshape(4, 6)

    class Marked(torch.Tensor):
        pass

    odd = {"view": base.t(), "slice": base[1:3, 2:], "offset": base.reshape(-1)[5:9], "sub": base.as_subclass(Marked),
           "plain": base.clone(), "negated": torch._neg_view(base)}  # a sign bit, not in memory
    for key, tensor in odd.items():
        back = load(harness.tensor_bytes({key: tensor}))[key]
        assert type(back) is torch.Tensor and torch.equal(back, tensor.as_subclass(torch.Tensor).resolve_neg()), key
    dense = {k: v.contiguous() for k, v in ANSWERS.items()}
    assert harness.tensor_bytes(dense) == save(dense)

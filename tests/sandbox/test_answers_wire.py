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

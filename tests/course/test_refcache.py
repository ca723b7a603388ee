"""The on-disk cache of the cases' inputs and references (grader.course.refcache): hits, misses, damage, races, privacy."""

import os
import stat
import subprocess
import sys
import threading

import pytest
import torch

from grader.course import cases as cases_module
from grader.course import refcache
from grader.pipeline import build_cases

from conftest import ROOT, SECRET


def tensors_of(cases):
    """Every tensor of the cases, by a readable path (inputs, references, trajectory steps)."""
    out = {}
    for case in cases:
        for key, tensor in case.inputs.items():
            out[f"{case.spec.name}/inputs/{key}"] = tensor
        for key, tensor in case.gradients.items():  # the feedback's view of the lecture's forward pass
            out[f"{case.spec.name}/gradients/{key}"] = tensor
        for ex_id, checks in case.references.items():
            for check, value in checks.items():
                for sub, tensor in (value.items() if isinstance(value, dict) else [("", value)]):
                    out[f"{case.spec.name}/{ex_id}/{check}/{sub}"] = tensor
    return out


def assert_close_cases(got, want):
    """A fresh build against one made earlier in the session: equal up to the order of float sums (a batch that
    ran in between sets torch to one thread, which reorders them), never bit for bit."""
    a, b = tensors_of(got), tensors_of(want)
    assert a.keys() == b.keys() and [c.spec for c in got] == [c.spec for c in want]
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.allclose(a[name], b[name], rtol=1e-12, atol=1e-15), name


def assert_same_cases(got, want):
    assert [c.spec for c in got] == [c.spec for c in want]
    assert [(c.ints, c.grad_scale, c.private) for c in got] == [(c.ints, c.grad_scale, c.private) for c in want]
    a, b = tensors_of(got), tensors_of(want)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name


@pytest.fixture
def folder(tmp_path):
    return tmp_path / "cache"


@pytest.fixture
def quick_build(monkeypatch, all_cases):
    """Building a case hands out the session's (built once): a rebuild costs nothing but is counted."""
    by_name, built = {c.spec.name: c for c in all_cases}, []

    def build_case(spec, dtype, train, exercises):
        built.append(spec.name)
        return by_name[spec.name]

    monkeypatch.setattr(cases_module, "build_case", build_case)
    return built


@pytest.fixture
def no_build(monkeypatch):
    """Make building a case fail: a grade that still gets its cases read them from the cache."""
    def refuse(*args, **kwargs):
        raise AssertionError("built a case instead of reading the cache")

    monkeypatch.setattr(cases_module, "build_case", refuse)


def cache_files(folder):
    return sorted(p for p in folder.iterdir()) if folder.exists() else []


def test_a_second_build_reads_the_cache_and_gets_the_same_tensors(config, all_cases, folder, monkeypatch):
    first = build_cases(config, SECRET, cache=folder)  # really built, then cached
    assert_close_cases(first, all_cases)
    [path] = cache_files(folder)
    monkeypatch.setattr(cases_module, "build_case", lambda *a, **k: pytest.fail("rebuilt despite the cache"))
    again = build_cases(config, SECRET, cache=folder)
    assert_same_cases(again, first)  # what was cached, bit for bit
    assert any(c.spec.hidden for c in again)
    # The gradient that is both an input (batchnorm's dhpreact) and a reference is one tensor again.
    assert again[0].inputs["dhpreact"] is again[0].references["atomic"]["hpreact"]


def test_the_folder_and_its_files_are_private(config, folder, quick_build):
    build_cases(config, SECRET, cache=folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    [path] = cache_files(folder)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_uid == os.geteuid()


def test_the_file_reveals_nothing_without_the_secret(config, all_cases, folder, quick_build):
    """Sealed: no tensor's bytes nor the case names appear in the file, and another secret cannot open it."""
    build_cases(config, SECRET, cache=folder)
    [path] = cache_files(folder)
    blob = path.read_bytes()
    hidden = next(c for c in all_cases if c.spec.hidden)
    assert hidden.inputs["logits"].numpy().tobytes()[:64] not in blob
    assert b"hidden-1" not in blob and b"safetensors" not in blob.lower()
    assert refcache.unseal(blob, "another secret") is None
    assert refcache.unseal(blob, SECRET) is not None


def test_no_secret_no_cache(config, public_cases, folder):
    assert_close_cases(build_cases(config, None, cache=folder), public_cases)
    assert cache_files(folder) == []


def test_a_folder_the_sandbox_can_see_is_never_used(config, tmp_path, monkeypatch, quick_build):
    """bubblewrap binds the system and Python folders: a cache under one of them would be in view."""
    inside = tmp_path / "python" / "cache"
    monkeypatch.setattr("grader.sandbox.levels.shared_dirs", lambda: [tmp_path / "python"])
    build_cases(config, SECRET, cache=inside)
    assert not inside.exists()
    assert not refcache.usable_with(inside, [tmp_path / "python"])
    assert refcache.usable_with(tmp_path / "elsewhere", [tmp_path / "python"])


def key_variants(config, monkeypatch):
    """The key after changing each of its parts alone."""
    yield "config", refcache.cache_key(config.model_copy(update={"dtype": "float32"}), SECRET)
    yield "secret", refcache.cache_key(config, SECRET + "-other")
    with monkeypatch.context() as m:
        m.setattr(refcache, "__version__", "99.0")
        yield "grader version", refcache.cache_key(config, SECRET)
    with monkeypatch.context() as m:
        m.setattr(refcache, "_torch_version", lambda: "0.0.1")
        yield "torch version", refcache.cache_key(config, SECRET)
    with monkeypatch.context() as m:
        m.setattr(refcache, "_SOURCES", refcache._SOURCES[1:])  # as if cases.py had changed
        yield "source of the case builders", refcache.cache_key(config, SECRET)


def test_each_part_of_the_key_changes_it_and_a_changed_key_misses(config, folder, monkeypatch, quick_build):
    key = refcache.cache_key(config, SECRET)
    assert refcache.cache_key(config, SECRET) == key
    specs = [*config.cases, *config.hidden_specs(SECRET)]
    build_cases(config, SECRET, cache=folder)
    assert refcache.load(folder, key, specs, SECRET) is not None
    seen = {key}
    for part, other in key_variants(config, monkeypatch):
        assert other not in seen, f"the {part} is not in the key"
        seen.add(other)
        assert refcache.load(folder, other, specs, SECRET) is None, part
        # Even the right file under the other key's name is refused: the key is inside it too.
        (folder / f"{other}.cache").write_bytes((folder / f"{key}.cache").read_bytes())
        os.chmod(folder / f"{other}.cache", 0o600)
        assert refcache.load(folder, other, specs, SECRET) is None, part


def test_a_changed_config_rebuilds(config, folder, monkeypatch, quick_build):
    build_cases(config, SECRET, cache=folder)
    build_cases(config, SECRET, cache=folder)
    assert len(quick_build) == len(config.cases) + len(config.hidden_cases)  # built once, then read
    lr = config.train.model_copy(update={"lr": config.train.lr / 2})
    build_cases(config.model_copy(update={"train": lr}), SECRET, cache=folder)
    assert len(quick_build) == 2 * (len(config.cases) + len(config.hidden_cases))
    assert len(cache_files(folder)) == 2


def damage(path, how):
    blob = bytearray(path.read_bytes())
    if how == "truncated":
        del blob[len(blob) // 2:]
    elif how == "one byte flipped":
        blob[len(blob) // 2] ^= 0x01
    elif how == "garbage":
        blob = bytearray(b"not a cache file at all")
    elif how == "empty":
        blob = bytearray()
    elif how == "sealed, but not safetensors":
        blob = bytearray(refcache.seal(b"\xff" * 64, SECRET))
    path.write_bytes(bytes(blob))


@pytest.mark.parametrize("how", ["truncated", "one byte flipped", "garbage", "empty", "sealed, but not safetensors"])
def test_a_damaged_file_is_ignored_and_rebuilt(config, all_cases, folder, how, quick_build):
    build_cases(config, SECRET, cache=folder)
    [path] = cache_files(folder)
    damage(path, how)
    specs = [*config.cases, *config.hidden_specs(SECRET)]
    assert refcache.load(folder, refcache.cache_key(config, SECRET), specs, SECRET) is None
    before = len(quick_build)
    assert_same_cases(build_cases(config, SECRET, cache=folder), all_cases)
    assert len(quick_build) == 2 * before  # rebuilt
    assert refcache.load(folder, refcache.cache_key(config, SECRET), specs, SECRET) is not None  # rewritten


def test_a_file_for_other_cases_is_refused(config, folder):
    """Sealed with the right secret and key, but describing other cases (say, a changed case list)."""
    key = refcache.cache_key(config, SECRET)
    built = build_cases(config, SECRET, cache=None)
    refcache.store(folder, key, built[1:], SECRET)
    specs = [*config.cases, *config.hidden_specs(SECRET)]
    assert refcache.load(folder, key, specs, SECRET) is None


@pytest.mark.parametrize("mode", [0o755, 0o770, 0o701])
def test_a_folder_others_can_reach_is_not_used(config, folder, no_build, mode):
    folder.mkdir(mode=0o700)
    os.chmod(folder, mode)
    with pytest.raises(AssertionError, match="built a case"):
        build_cases(config, SECRET, cache=folder)
    assert cache_files(folder) == []  # nothing written there either


@pytest.mark.skipif(os.geteuid() != 0, reason="handing a folder to another user needs root")
def test_a_folder_of_another_user_is_not_used(config, folder, quick_build):
    build_cases(config, SECRET, cache=folder)
    os.chown(folder, 65534, 65534)
    specs = [*config.cases, *config.hidden_specs(SECRET)]
    assert refcache.load(folder, refcache.cache_key(config, SECRET), specs, SECRET) is None


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o606])
def test_a_file_others_can_read_or_write_is_not_used(config, folder, mode, quick_build):
    build_cases(config, SECRET, cache=folder)
    [path] = cache_files(folder)
    os.chmod(path, mode)
    specs = [*config.cases, *config.hidden_specs(SECRET)]
    assert refcache.load(folder, refcache.cache_key(config, SECRET), specs, SECRET) is None


def test_a_link_in_place_of_the_file_is_not_followed(config, folder, tmp_path, quick_build):
    build_cases(config, SECRET, cache=folder)
    [path] = cache_files(folder)
    target = tmp_path / "elsewhere.cache"
    path.rename(target)
    path.symlink_to(target)
    specs = [*config.cases, *config.hidden_specs(SECRET)]
    assert refcache.load(folder, refcache.cache_key(config, SECRET), specs, SECRET) is None


def test_concurrent_writers_and_readers_never_see_half_a_file(config, all_cases, folder):
    key = refcache.cache_key(config, SECRET)
    specs = [*config.cases, *config.hidden_specs(SECRET)]
    refcache.store(folder, key, all_cases, SECRET)
    errors, stop = [], threading.Event()

    def write():
        try:
            for _ in range(5):
                refcache.store(folder, key, all_cases, SECRET)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    def read():
        while not stop.is_set():
            got = refcache.load(folder, key, specs, SECRET)
            if got is None:
                errors.append("a reader found no valid file while writers replaced it")
                return

    readers = [threading.Thread(target=read) for _ in range(2)]
    writers = [threading.Thread(target=write) for _ in range(4)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert errors == []
    assert [p.name for p in cache_files(folder)] == [f"{key}.cache"]  # no temporary file left
    assert_same_cases(refcache.load(folder, key, specs, SECRET), all_cases)


def test_two_processes_filling_the_cache_at_once(folder):
    """Two grading processes that both miss write the same file; both get their cases, one file stays."""
    code = ("import sys; from grader.config import load_config; from grader.pipeline import build_cases; "
            f"c = build_cases(load_config({str(ROOT / 'grading.yaml')!r}), {SECRET!r}, cache=__import__('pathlib')"
            f".Path(sys.argv[1])); print(len(c))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and outs[0] == outs[1] != "0"
    assert len(cache_files(folder)) == 1 and not any(p.name.startswith(".tmp") for p in folder.iterdir())


def test_old_files_are_pruned(config, all_cases, folder, monkeypatch):
    monkeypatch.setattr(refcache, "KEEP", 3)
    keys = [f"{i:064x}" for i in range(5)]
    for i, key in enumerate(keys):
        refcache.store(folder, key, all_cases[:1], SECRET)
        os.utime(folder / f"{key}.cache", (1000 + i, 1000 + i))
    refcache.store(folder, keys[-1], all_cases[:1], SECRET)
    assert [p.name for p in cache_files(folder)] == [f"{k}.cache" for k in keys[2:]]


def test_a_single_grade_reads_the_cache_as_numpy_without_importing_torch(config, all_cases, folder):
    """`arrays=True` (a single grade, before its worker runs): numpy arrays, torch not imported; `as_torch` then gives
    the very cases the torch reader gives, bit for bit, with a tensor held in two places still one tensor."""
    refcache.store(folder, refcache.cache_key(config, SECRET), all_cases, SECRET)
    code = ("import sys; from pathlib import Path; from grader.config import load_config; "
            "from grader.pipeline import build_cases; "
            f"c = build_cases(load_config({str(ROOT / 'grading.yaml')!r}), {SECRET!r}, cache=Path(sys.argv[1]), "
            "arrays=True); "
            "print(len(c), 'torch' in sys.modules, sorted({type(t).__module__ for x in c for t in x.inputs.values()}))")
    proc = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(len(all_cases)), "False", "['numpy']"]

    arrays = build_cases(config, SECRET, cache=folder, arrays=True)
    converted = refcache.as_torch(arrays)
    assert_same_cases(converted, build_cases(config, SECRET, cache=folder))
    assert converted[0].inputs["dhpreact"] is converted[0].references["atomic"]["hpreact"]
    assert refcache.as_torch(converted) is converted  # torch cases pass through


def test_without_the_cache_arrays_asks_for_nothing_new(config, all_cases, folder, quick_build):
    """`arrays=True` is only a permission: a grade that builds its cases (a miss) gets torch tensors."""
    built = build_cases(config, SECRET, cache=folder, arrays=True)
    assert all(isinstance(t, torch.Tensor) for c in built for t in c.inputs.values())

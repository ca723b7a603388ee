"""The cases' inputs and autograd references, cached on disk so that a grade does not rebuild them.

One file per key: the config's fingerprint, a hash of the secret (never the secret), the grader's
version and the source of the modules that build the cases, the torch version. A file that does
not match its key, fails its check, is unreadable or incomplete is ignored and rebuilt; nothing is
trusted across versions. Writes are atomic (a temporary file, then os.replace), so concurrent
grades never read a half-written file.

These files hold the answer key and the hidden cases' inputs, so: there is a cache only when there
is a secret; each file is encrypted and authenticated with keys derived from it (a SHAKE-128
keystream and HMAC-SHA256, standard library only), so whoever cannot read the secret cannot read
or forge the file, whatever the isolation level; the folder is private to the grading user (mode
0700, files 0600) and one that is not is never used, nor one inside the sandbox's view (bubblewrap
binds only the system and Python folders: `usable_with`). Inside, the tensors are safetensors (a
format that cannot carry code).
"""

import hashlib
import hmac
import json
import os
import stat
import tempfile
from pathlib import Path

from grader import __version__

FORMAT = 1
MAGIC = b"BNGCACHE"
NONCE = 16
KEEP = 16  # cache files kept; the oldest go first (each secret or policy makes one)
_SOURCES = ("course/cases.py", "course/mlp.py", "course/spec.py", "config.py")  # what decides the cases' tensors


def default_folder() -> Path:
    """$XDG_CACHE_HOME/backprop-ninja-grader (~/.cache when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "backprop-ninja-grader"


def cache_key(config, secret: str) -> str:
    package = Path(__file__).resolve().parent.parent
    source = hashlib.sha256()
    for name in _SOURCES:
        source.update((package / name).read_bytes())
    secret_hash = hashlib.sha256(f"backprop-ninja-cache\0{secret}".encode()).hexdigest()
    parts = {"format": FORMAT, "grader": __version__, "source": source.hexdigest(),
             "torch": _torch_version(), "config": config.fingerprint(), "secret": secret_hash}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _torch_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("torch")  # without importing torch


def _keys(secret: str) -> tuple[bytes, bytes]:
    """(encryption key, authentication key), each its own hash of the secret."""
    return tuple(hashlib.sha256(f"backprop-ninja-cache-{use}\0{secret}".encode()).digest() for use in ("enc", "mac"))


def _xor(data: bytes, key: bytes, nonce: bytes) -> bytes:
    stream = hashlib.shake_128(key + nonce).digest(len(data))
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")).to_bytes(len(data), "little")


def seal(data: bytes, secret: str) -> bytes:
    enc, mac = _keys(secret)
    nonce = os.urandom(NONCE)
    body = _xor(data, enc, nonce)
    return MAGIC + nonce + hmac.new(mac, nonce + body, "sha256").digest() + body


def unseal(blob: bytes, secret: str) -> bytes | None:
    """The plain bytes, or None if `blob` was not sealed with this secret or was changed since."""
    enc, mac = _keys(secret)
    head = len(MAGIC) + NONCE + 32
    if len(blob) < head or not blob.startswith(MAGIC):
        return None
    nonce, tag, body = blob[len(MAGIC):len(MAGIC) + NONCE], blob[len(MAGIC) + NONCE:head], blob[head:]
    if not hmac.compare_digest(tag, hmac.new(mac, nonce + body, "sha256").digest()):
        return None
    return _xor(body, enc, nonce)


def private_folder(folder: Path, create: bool) -> bool:
    """Whether `folder` is a real folder of ours that no one else can read or write (made so if new)."""
    if create:
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError:
            return False
    try:
        st = os.lstat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077


def usable_with(folder: Path, hidden_dirs) -> bool:
    """False when the sandbox's read-only view (`hidden_dirs`: the host folders it binds) includes `folder`."""
    folder = folder.resolve()
    return not any(folder == Path(d).resolve() or Path(d).resolve() in folder.parents for d in hidden_dirs)


def _flatten(cases) -> tuple[dict, list]:
    """Every tensor once (references share some with inputs), and per case where each one goes."""
    tensors, names, layout = {}, {}, []
    for case in cases:
        slots = []

        def put(path, tensor):
            if id(tensor) not in names:
                names[id(tensor)] = f"t{len(tensors)}"
                tensors[names[id(tensor)]] = tensor.contiguous()
            slots.append([path, names[id(tensor)]])

        for key, tensor in case.inputs.items():
            put(["inputs", key], tensor)
        for key, tensor in case.gradients.items():
            put(["gradients", key], tensor)
        for ex_id, checks in case.references.items():
            for check, value in checks.items():
                if isinstance(value, dict):
                    for sub, tensor in value.items():
                        put(["references", ex_id, check, sub], tensor)
                else:
                    put(["references", ex_id, check], value)
        layout.append({"name": case.spec.name, "spec": case.spec.model_dump(mode="json"), "ints": case.ints,
                       "grad_scale": case.grad_scale, "private": sorted(case.private), "slots": slots})
    return tensors, layout


def _unflatten(specs, tensors: dict, layout: list):
    from grader.course.case_specs import Case

    if [entry["name"] for entry in layout] != [s.name for s in specs]:
        return None
    cases = []
    for spec, entry in zip(specs, layout):
        if entry["spec"] != spec.model_dump(mode="json"):
            return None
        inputs, references, gradients = {}, {}, {}
        for path, name in entry["slots"]:
            tensor = tensors[name]  # KeyError: incomplete file
            if path[0] == "inputs" and len(path) == 2:
                inputs[path[1]] = tensor
            elif path[0] == "gradients" and len(path) == 2:
                gradients[path[1]] = tensor
            elif path[0] == "references" and len(path) in (3, 4):
                checks = references.setdefault(path[1], {})
                if len(path) == 3:
                    checks[path[2]] = tensor
                else:
                    checks.setdefault(path[2], {})[path[3]] = tensor
            else:
                return None
        cases.append(Case(spec=spec, inputs=inputs, ints={k: int(v) for k, v in entry["ints"].items()},
                          references=references, grad_scale=float(entry["grad_scale"]), gradients=gradients,
                          private=frozenset(entry.get("private", ()))))
    return cases


def load(folder: Path, key: str, specs, secret: str, *, arrays: bool = False):
    """The cached cases for `key`, or None (missing, not private, not matching, unreadable).

    `arrays`: their tensors as numpy arrays (same bytes), without importing torch: a single grade writes the
    worker's inputs from them while the worker imports torch, and converts them afterwards (`as_torch`).
    """
    path = folder / f"{key}.cache"
    if not private_folder(folder, create=False):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            return None
        with os.fdopen(fd, "rb") as fh:
            fd = None
            data = unseal(fh.read(), secret)
        if data is None:
            return None
        # The safetensors header: 8 bytes of length, then JSON whose __metadata__ holds our strings.
        meta = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])["__metadata__"]
        if meta.get("key") != key or meta.get("format") != str(FORMAT):
            return None
        return _unflatten(specs, _read_tensors(data, arrays), json.loads(meta["cases"]))
    except Exception:  # noqa: BLE001 - a corrupt file of any kind is only a cache miss
        return None
    finally:
        if fd is not None:
            os.close(fd)


def _read_tensors(data: bytes, arrays: bool) -> dict:
    if arrays:
        from safetensors.numpy import load as load_arrays

        try:
            return load_arrays(data)
        except (TypeError, ValueError):  # a dtype numpy lacks (bfloat16): torch's reader below
            pass
    from safetensors.torch import load as load_bytes

    return load_bytes(data)


def as_torch(cases):
    """The cases with torch tensors (numpy arrays from `load(..., arrays=True)` become tensors that share their
    memory; a tensor that several places hold stays one tensor). Cases already of torch are returned as they are."""
    import numpy as np

    if not any(isinstance(t, np.ndarray) for case in cases for t in case.inputs.values()):
        return cases
    import dataclasses

    import torch

    made: dict[int, object] = {}

    def tensor(value):
        if not isinstance(value, np.ndarray):
            return value
        if id(value) not in made:
            made[id(value)] = torch.from_numpy(value)
        return made[id(value)]

    def convert(tree: dict) -> dict:
        return {k: convert(v) if isinstance(v, dict) else tensor(v) for k, v in tree.items()}

    return [dataclasses.replace(case, inputs=convert(case.inputs), references=convert(case.references),
                                gradients=convert(case.gradients)) for case in cases]


def store(folder: Path, key: str, cases, secret: str) -> None:
    """Write the cases atomically (best effort: a full disk or a foreign folder only skips the cache)."""
    from safetensors.torch import save

    if not private_folder(folder, create=True):
        return
    tensors, layout = _flatten(cases)
    data = seal(save(tensors, metadata={"key": key, "format": str(FORMAT), "cases": json.dumps(layout)}), secret)
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".cache")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, folder / f"{key}.cache")
        except BaseException:
            os.unlink(tmp)
            raise
        _prune(folder, "[0-9a-f]*.cache")
    except OSError:
        pass


def _prune(folder: Path, pattern: str) -> None:
    files = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[KEEP:]:
        old.unlink(missing_ok=True)


_MEMOS: list = []  # where memos go, once `memos_in` chose (else the default folder)


def memos_in(folder: Path | None) -> None:
    """Keep memos (below) in `folder`, or (None: `grade --no-cache`) nowhere."""
    _MEMOS[:] = [folder]


def _memo_folder() -> Path | None:
    return _MEMOS[0] if _MEMOS else default_folder()


def read_memo(name: str):
    """A small JSON value this user's grades keep in the private folder (None if absent or unreadable)."""
    folder = _memo_folder()
    if folder is None or not private_folder(folder, create=False):
        return None
    try:
        return json.loads((folder / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None


def write_memo(name: str, value) -> None:
    folder = _memo_folder()
    if folder is None or not private_folder(folder, create=True):
        return
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(value, fh)
        os.replace(tmp, folder / f"{name}.json")
        _prune(folder, f"{name.split('.')[0]}.*.json")  # a memo per version of the sources: the newest stay
    except OSError:
        pass

"""Attack: a generator's own frame, walked up to the worker's frames, to take autograd's gradients.

Attribute names the submission defines itself were exempt from the allow list, so a dummy class that
defines `gi_frame`, `f_back` and `f_locals` let `me.gi_frame.f_back...` through. The worker's frame
holds what came down the go pipe: `dhpreact` and `demb` (autograd's gradients of hpreact and emb).
"""
import torch


class Names:  # defines the names, so the scan once took them for the submission's own
    def __init__(self):
        self.gi_frame = self.f_back = self.f_locals = self.from_bytes = None


def _walk():
    yield me.gi_frame.f_back



def _tensor(blob: bytes, name: str, shape):
    size = int.from_bytes(blob[:8], "little")
    header = blob[8:8 + size].decode()
    where = header.split('"' + name + '"')[1].split("data_offsets")[1]
    start, end = (int(v) for v in where.split("[")[1].split("]")[0].split(","))
    raw = torch.tensor(list(blob[8 + size + start:8 + size + end]), dtype=torch.uint8)
    return raw.view(torch.float64).reshape(shape).clone()


def backward_atomic(**fwd):
    global me
    me = _walk()
    frame = next(me)
    found = {}
    while frame is not None:
        for value in frame.f_locals.values():
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
                        found[item[0]] = item[1]
        frame = frame.f_back
    print("FOUND", sorted(found))
    out = {}
    for blob in found.values():
        if b'"dhpreact"' in blob and b'"demb"' in blob:
            out["hpreact"] = _tensor(blob, "dhpreact", fwd["hpreact"].shape)
            out["emb"] = _tensor(blob, "demb", fwd["emb"].shape)
            break
    return out

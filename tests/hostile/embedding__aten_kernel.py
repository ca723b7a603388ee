"""Attack: aten's embedding backward kernels give dC directly."""
import torch


def embedding_backward(demb, Xb, vocab_size):
    g = demb.reshape(-1, demb.shape[-1])
    try:
        return torch.ops.aten.embedding_dense_backward(g, Xb.reshape(-1), vocab_size, -1, False)
    except RuntimeError:
        return torch.ops.aten.embedding_backward(g, Xb.reshape(-1), vocab_size, -1, False, False)

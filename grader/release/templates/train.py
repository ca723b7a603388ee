import os
import random


def build_dataset(words, stoi, block_size=3):
    X, Y = [], []
    for w in words:
        context = [0] * block_size
        for ch in w + ".":
            ix = stoi[ch]
            X.append(context)
            Y.append(ix)
            context = context[1:] + [ix]
    return torch.tensor(X), torch.tensor(Y)


def train(steps=5000, batch_size=32, n_hidden=64, lr=0.1):
    words = open("names.txt").read().splitlines()
    chars = sorted(set("".join(words)))
    stoi = {s: i + 1 for i, s in enumerate(chars)}
    stoi["."] = 0
    random.seed(42)
    random.shuffle(words)
    Xtr, Ytr = build_dataset(words, stoi)
    g = torch.Generator().manual_seed(2147483647)
    tensors, _ = make_case(n_hidden=n_hidden, vocab=len(stoi))   # the lecture's initialisation
    params = {k: tensors[k].clone() for k in PARAMS}
    with torch.no_grad():
        for i in range(steps):
            ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=g)
            fwd = forward(params, Xtr[ix], Ytr[ix])
            loss = fwd.pop("loss")
            grads = backward_fast(**fwd, n=batch_size)
            if not isinstance(grads, dict) or any(grads.get(k) is None for k in PARAMS):
                print("backward_fast is not finished yet: complete exercise 4 first")
                return
            for k in PARAMS:
                params[k] -= lr * grads[k].reshape(params[k].shape)
            if i % 1000 == 0 or i == steps - 1:
                print(f"step {i:5d}: loss {loss.item():.4f}")


if os.path.exists("names.txt"):
    train()
else:
    print("names.txt not found next to this notebook, so there is nothing to train on.")
    print("Download https://raw.githubusercontent.com/karpathy/makemore/master/names.txt to try it.")

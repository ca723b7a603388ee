"""Attack: a loop that never ends."""


def backward_atomic(**fwd):
    while True:
        pass

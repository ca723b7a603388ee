"""Attack: a file Python cannot even parse."""


def backward_atomic(**fwd)
    return {

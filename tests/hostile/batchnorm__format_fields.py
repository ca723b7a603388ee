"""Attack: str.format reads attributes by name from fields built at run time, out of the scan's sight."""


def batchnorm_backward(dhpreact, bngain, bnraw, bnvar_inv):
    field = "{0.grad" + "_fn}"
    print("FIELD", field.format(dhpreact))
    n = dhpreact.shape[0]
    return bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0) - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0))

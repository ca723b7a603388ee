"""Attack: raise its own limits (memory, CPU, files, processes) back to unlimited, then use more memory
than the grader allows.

The reference solution is prepended by the test; each attempt prints how it ended.
"""
import resource


def batchnorm_backward(dhpreact, bngain, bnraw, bnvar_inv):
    for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_FSIZE"):
        which = getattr(resource, name)
        try:
            resource.setrlimit(which, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            print("SETRLIMIT", name, "raised", flush=True)
        except (OSError, ValueError) as err:
            print("SETRLIMIT", name, type(err).__name__, flush=True)
    print("SETRLIMIT AS now", resource.getrlimit(resource.RLIMIT_AS), flush=True)
    return _reference(dhpreact, bngain, bnraw, bnvar_inv)

"""Not an attack: the reference solution (prepended by the test) run from a pool of threads."""
import threading
from concurrent.futures import ThreadPoolExecutor


def backward_atomic(**fwd):
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = [f.result() for f in [pool.submit(_reference, **fwd) for _ in range(4)]]
    done = []
    worker = threading.Thread(target=lambda: done.append(torch.ones(3).sum()))
    worker.start()
    worker.join()
    assert done and all(torch.equal(results[0][k], r[k]) for r in results for k in r)
    return results[0]

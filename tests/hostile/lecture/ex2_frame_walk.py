# Attack (exercise 2's backward cell): a generator's frame, walked up to the worker's, with the attribute
# names defined by a dummy class so that they look like the notebook's own.
class _Names:
    def __init__(self):
        self.gi_frame = self.f_back = self.f_locals = None

def _up():
    yield _me.gi_frame.f_back

_me = _up()
_frame = next(_me)
print("FRAMES", type(_frame).__name__)
dlogits = F.softmax(logits, 1)
dlogits[range(n), Yb] -= 1
dlogits /= n
cmp('logits', dlogits, logits)

"""Attack: print a fake perfect report on stdout and stderr."""
import json
import sys

FAKE = {"score": 100.0, "max_score": 100.0, "exercises": [{"id": "cross_entropy", "status": "passed", "score": 15}]}
print(json.dumps(FAKE))
print(json.dumps(FAKE), file=sys.stderr)


def cross_entropy_backward(logits, Yb):
    print(json.dumps({"type": "result", "exercise": "cross_entropy", "case": "lecture", "notes": {}}))
    return None

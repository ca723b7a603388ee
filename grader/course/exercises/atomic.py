"""Exercise 1 of the lecture: backprop through every atomic step of the forward pass."""

from grader.course import mistakes
from grader.course.mlp import ATOMIC, FORWARD_ARGS
from grader.course.spec import Exercise, GradientCheck, LectureSection


def build(case, generator):
    """The lecture's forward pass on the case's batch; autograd's gradient of every step."""
    lecture = case.lecture
    return ({name: lecture.forward[name] for name in FORWARD_ARGS},
            {name: lecture.grads[name] for name in ATOMIC})


EXERCISE = Exercise(
    id="atomic",
    title="Exercise 1: backprop through every atomic step",
    file="atomic.py",
    function="backward_atomic",
    tensor_args=FORWARD_ARGS,
    int_args=("n",),
    checks=tuple(GradientCheck(name) for name in ATOMIC),
    build=build,
    lesson="lessons/atomic.md",
    check_cell="lessons/atomic_check.py",
    lecture=LectureSection(1, found_by="assigns its gradients",
                           not_found="no cell assigns its gradients dlogprobs ... dC"),
    cascades=True,
    path=ATOMIC,
    misconceptions=mistakes.along(ATOMIC, one_go=False),
)

"""Exercise 4 of the lecture: put it all together, a backward pass in one go, graded by training with it."""

from grader.course import mistakes, steps
from grader.course.mlp import ATOMIC, FORWARD_ARGS, PARAMS
from grader.course.spec import Exercise, GradientCheck, LectureSection, TrajectoryCheck


def build(case, generator):
    """The lecture's forward pass, its parameter gradients, and `train.steps` more batches (from this
    exercise's own generator) with autograd's SGD trajectory on them."""
    from grader.course.cases import draw_batch, sgd_trajectory

    lecture = case.lecture
    batches = [draw_batch(generator, case.spec) for _ in range(case.train.steps)]
    inputs = {name: lecture.forward[name] for name in FORWARD_ARGS}
    for step, (Xb, Yb) in enumerate(batches):
        inputs[f"traj.Xb.{step}"], inputs[f"traj.Yb.{step}"] = Xb, Yb
    references = {name: lecture.grads[name] for name in PARAMS}
    references["trajectory"] = sgd_trajectory(lecture.params, batches, case.train.lr)
    return inputs, references


EXERCISE = Exercise(
    id="train",
    title="Exercise 4: put it all together",
    file="train.py",
    function="backward_fast",
    tensor_args=FORWARD_ARGS,
    int_args=("n",),
    checks=(*(GradientCheck(name) for name in PARAMS), TrajectoryCheck("trajectory", params=PARAMS)),
    build=build,
    lesson="lessons/train.md",
    check_cell="lessons/train_check.py",
    lecture=LectureSection(4, found_by="trains the network",
                           not_found="no training loop that updates the parameters with p.data += -lr * grad"),
    path=ATOMIC,  # a backward pass in one go still goes through every step of the lecture's
    misconceptions=mistakes.along(ATOMIC, one_go=True, leave_out=("dcounts_missing_branch",)),  # (no dcounts of its own)
    worked=steps.TRAIN,
)

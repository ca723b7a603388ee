"""Exercise 2 of the lecture: the cross entropy's backward pass in one go."""

from grader.course import mistakes, steps
from grader.course.spec import Exercise, GradientCheck, LectureSection

PATH = ("logprobs", "probs", "counts_sum_inv", "counts_sum", "counts", "norm_logits", "logit_maxes", "logits")


def build(case, generator):
    lecture = case.lecture
    return ({"logits": lecture.forward["logits"], "Yb": lecture.forward["Yb"]},
            {"logits": lecture.grads["logits"]})


EXERCISE = Exercise(
    id="cross_entropy",
    title="Exercise 2: cross entropy in one go",
    file="cross_entropy.py",
    function="cross_entropy_backward",
    tensor_args=("logits", "Yb"),
    checks=(GradientCheck("logits"),),
    returns_dict=False,
    build=build,
    lesson="lessons/cross_entropy.md",
    check_cell="lessons/cross_entropy_check.py",
    lecture=LectureSection(2, found_by="computes dlogits in one go",
                           not_found="no cell computes dlogits in one go from logits"),
    path=PATH,
    misconceptions=mistakes.along(PATH, one_go=True),
    worked=steps.CROSS_ENTROPY,
)

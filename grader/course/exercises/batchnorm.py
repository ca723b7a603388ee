"""Exercise 3 of the lecture: the batch norm's backward pass in one go."""

from grader.course import mistakes, steps
from grader.course.spec import Exercise, GradientCheck, LectureSection

PATH = ("bnraw", "bnvar_inv", "bnvar", "bndiff2", "bndiff", "bnmeani", "hprebn")


def build(case, generator):
    """Autograd's dhpreact is an input here: the upstream gradient the student's formula starts from."""
    lecture = case.lecture
    inputs = {name: lecture.forward[name] for name in ("bngain", "bnraw", "bnvar_inv")}
    return {**inputs, "dhpreact": lecture.grads["hpreact"]}, {"hprebn": lecture.grads["hprebn"]}


EXERCISE = Exercise(
    id="batchnorm",
    title="Exercise 3: batch norm in one go",
    file="batchnorm.py",
    function="batchnorm_backward",
    tensor_args=("dhpreact", "bngain", "bnraw", "bnvar_inv"),
    checks=(GradientCheck("hprebn"),),
    returns_dict=False,
    build=build,
    lesson="lessons/batchnorm.md",
    check_cell="lessons/batchnorm_check.py",
    lecture=LectureSection(3, given=("dhpreact",), found_by="computes dhprebn in one go",
                           not_found="no cell computes dhprebn in one go from dhpreact"),
    path=PATH,
    misconceptions=mistakes.along(PATH, one_go=True),
    worked=steps.BATCHNORM,
    private_inputs=("dhpreact",),  # autograd's gradient of exercise 1's hpreact
    # Embedding may run after it in one child: its answer (dC) follows from dhpreact only through demb, which
    # embedding is given itself (autograd's too): dhpreact tells it nothing its own input does not.
    private_inputs_safe_for=("embedding",),
)

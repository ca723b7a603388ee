"""The embedding's backward pass: dC from demb (the last step of exercise 1, graded on its own)."""

from grader.course import mistakes, steps
from grader.course.spec import Exercise, GradientCheck, NotInLecture


def build(case, generator):
    lecture = case.lecture
    return {"demb": lecture.grads["emb"], "Xb": lecture.forward["Xb"]}, {"C": lecture.grads["C"]}


EXERCISE = Exercise(
    id="embedding",
    title="Embedding: dC from demb",
    file="embedding.py",
    function="embedding_backward",
    tensor_args=("demb", "Xb"),
    int_args=("vocab_size",),
    checks=(GradientCheck("C"),),
    returns_dict=False,
    build=build,
    lesson="lessons/embedding.md",
    check_cell="lessons/embedding_check.py",
    lecture=NotInLecture("the lecture's notebook has no separate embedding exercise (dC is graded as part of exercise 1)"),
    path=("C",),
    misconceptions=mistakes.along(("C",), one_go=True),
    worked=steps.EMBEDDING,
    private_inputs=("demb",),  # autograd's gradient of exercise 1's emb
)

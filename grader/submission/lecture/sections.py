"""The lecture notebook's graded sections, by exercise number: what each expects and is given.

(Temporary tables: these become each exercise definition's `lecture=` field.)
"""

from grader.course.mlp import ATOMIC

GRADED = {1: "atomic", 2: "cross_entropy", 3: "batchnorm"}
NUMBER = {ex_id: number for number, ex_id in GRADED.items()}
NOT_IN_FORMAT = {
    "embedding": "not in this format: the lecture's notebook has no separate embedding exercise "
                 "(dC is graded as part of exercise 1)",
}
EXPECTED = {"atomic": ATOMIC, "cross_entropy": ("logits",), "batchnorm": ("hprebn",)}
PROVIDED = {"batchnorm": ("dhpreact",)}  # true gradients put in an exercise's namespace
NOT_FOUND = {1: "no '# Exercise 1' header, and no cell assigns its gradients dlogprobs ... dC",
             2: "no '# Exercise 2' header, and no cell computes dlogits in one go from logits",
             3: "no '# Exercise 3' header, and no cell computes dhprebn in one go from dhpreact"}
WHAT = {1: ("assigns its gradients", "assign its gradients"), 2: ("computes dlogits in one go", "compute dlogits in one go"),
        3: ("computes dhprebn in one go", "compute dhprebn in one go")}

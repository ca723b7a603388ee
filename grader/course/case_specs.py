"""What a case is: the shapes of the lecture's model and a seed (pydantic, torch-free), and, once built, its tensors.

The policy (grader.config) lists these in grading.yaml; the course (grader.course.cases) builds their tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShapeSpec(Strict):
    n: int = Field(32, ge=2, le=4096, description="batch size (>= 2: batch norm divides by n-1)")
    block: int = Field(3, ge=1, le=64)
    n_embd: int = Field(10, ge=1, le=1024)
    n_hidden: int = Field(64, ge=1, le=4096)
    vocab: int = Field(27, ge=2, le=4096)
    repeated_indices: bool = Field(False, description="draw Xb from a few rows so many indices repeat")
    unused_vocab: bool = Field(False, description="leave some rows of C out of Xb entirely")
    targets: Literal["random", "argmax"] = Field("random", description="argmax: Yb is the arg-max of the logits")


class CaseSpec(ShapeSpec):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=64)
    seed: int = Field(ge=0, lt=2**63)
    hidden: bool = False

    def describe(self) -> str:
        flags = [f for f in ("repeated_indices", "unused_vocab") if getattr(self, f)]
        if self.targets == "argmax":
            flags.append("argmax targets")
        shape = f"n={self.n} block={self.block} n_embd={self.n_embd} n_hidden={self.n_hidden} vocab={self.vocab}"
        return shape + (f" ({', '.join(flags)})" if flags else "")


class TrainConfig(Strict):
    steps: int = Field(3, ge=1, le=50, description="SGD steps of the trajectory check")
    lr: float = Field(0.1, gt=0)


@dataclass
class Case:
    """A built case (grader.course.cases.build_case). Its tensors are torch tensors, or numpy arrays while a grade
    that read them from the reference cache has not imported torch yet (grader.course.refcache.as_torch)."""

    spec: CaseSpec
    inputs: dict[str, torch.Tensor]            # every exercise's inputs, by argument name
    ints: dict[str, int]                       # `n`, `vocab_size`
    references: dict[str, dict]                # exercise id -> check -> expected
    grad_scale: float                          # the scale of this case's gradients (max |dlogits| on the lecture's model)
    gradients: dict[str, torch.Tensor] = field(default_factory=dict)  # autograd's gradient of every tensor of
    #                                            the lecture's forward pass ({} when no exercise uses it)
    private: frozenset[str] = frozenset()      # inputs never written to a file (autograd answers, see Exercise)

"""The numbers of the instructor's summary of a batch (grader.batch.summary renders them).

From the gradebook's rows and their reports: the score distribution (late penalties applied), the pass
rate of every check in backward-pass order, the most frequent diagnosed mistakes (the checks' hints,
counted; "first fix dX" cascades are left out, they are consequences), the slowest submissions and the
ones that failed, each graph node's pass rate with where the class breaks (the first gradient to fix)
and the most common mistake there, and the groups of submissions with identical wrong answers on the
hidden cases (the reports' answer digests).
"""

import json
import statistics
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timezone

from pydantic import BaseModel

from grader.batch.gradebook import Row, final_score, lateness
from grader.config import LatePolicy
from grader.course.registry import EXERCISES
from grader.outputs.common import first_to_fix, gradient_name, verdict
from grader.report import ExerciseResult

TOP = 12        # rows of the mistakes, slowest and failed tables
BINS = 10       # bars of the score distribution
GRADER_FAILURES = ("timeout", "crashed", "error")  # exercise statuses that mean it did not run to the end


class CheckRate(BaseModel):
    exercise: str
    check: str
    passed: int
    total: int

    @property
    def label(self) -> str:
        return f"{self.exercise}: {gradient_name(self.check)}"

    @property
    def rate(self) -> float:
        return self.passed / self.total if self.total else 0.0


class Mistake(BaseModel):
    hint: str
    submissions: int
    checks: list[str]


class NodeRate(BaseModel):
    """One node of an exercise's graph across the class."""

    exercise: str
    check: str
    passed: int
    total: int
    first_to_fix: int = 0            # submissions whose first gradient to fix is this one
    mistake: str | None = None       # the most common diagnosed mistake of those
    mistake_count: int = 0

    @property
    def rate(self) -> float:
        return self.passed / self.total if self.total else 0.0

    @property
    def label(self) -> str:
        return f"{self.exercise}: {gradient_name(self.check)}"


class SharedAnswer(BaseModel):
    """Submissions that returned the same wrong numbers for these gradients (evidence, not a verdict)."""

    submissions: list[str]
    gradients: list[str]


class Failure(BaseModel):
    name: str
    what: str
    message: str


class Summary(BaseModel):
    generated_at: str
    submissions: int
    graded: int
    late: int
    mean: float | None
    median: float | None
    max_score: float
    histogram: list[int]
    checks: list[CheckRate]
    mistakes: list[Mistake]
    slowest: list[tuple[str, float]]
    failures: list[Failure]
    scores: list[tuple[str, float, float, str, bool]]  # name, final score, max, status, late
    nodes: list[NodeRate] = []
    similarity: bool = True
    shared: list[SharedAnswer] = []


def _all_passed(data) -> bool:
    """An exercise of a report (JSON) that passed with every check passed, each named by a string."""
    return (isinstance(data, dict) and data.get("status") == "passed" and isinstance(data.get("id"), str)
            and isinstance(data.get("checks"), list) and all(
                isinstance(c, dict) and c.get("status") == "passed" and isinstance(c.get("name"), str)
                for c in data["checks"]))


class NodeTally:
    """Pass rate, first-to-fix count and most common mistake per (exercise, check), a report at a time."""

    def __init__(self):
        self.seen: dict[tuple[str, str], list[int]] = {}
        self.broke: dict[tuple[str, str], Counter] = {}

    def add(self, report: dict) -> None:
        for data in report.get("exercises", []):
            if _all_passed(data):  # most of a course: nothing to fix, no need to build the model
                for check in data["checks"]:
                    tally = self.seen.setdefault((data["id"], check["name"]), [0, 0])
                    tally[0] += 1
                    tally[1] += 1
                continue
            try:
                ex = ExerciseResult.model_validate(data)
            except ValueError:
                continue
            first = first_to_fix(ex)
            for check in ex.checks:
                tally = self.seen.setdefault((ex.id, check.name), [0, 0])
                tally[0] += check.status == "passed"
                tally[1] += 1
                if first is not None and check.name == first.name and verdict(ex, check) == "wrong":
                    self.broke.setdefault((ex.id, check.name), Counter())[check.hint or ""] += 1

    def nodes(self) -> list[NodeRate]:
        nodes = []
        for (ex_id, name), (passed, total) in self.seen.items():
            tally = self.broke.get((ex_id, name), Counter())
            named = [(hint, k) for hint, k in tally.most_common() if hint]
            nodes.append(NodeRate(exercise=ex_id, check=name, passed=passed, total=total,
                                  first_to_fix=sum(tally.values()), mistake=named[0][0] if named else None,
                                  mistake_count=named[0][1] if named else 0))
        return nodes


class SharedTally:
    """Groups of submissions with identical wrong answers (digests) on the hidden cases of a gradient."""

    def __init__(self):
        self.by_answer: dict[tuple, list[str]] = {}

    def add(self, name: str, report: dict) -> None:
        hidden = report.get("hidden_cases") == "included"  # else the public cases are all there is
        for ex in report.get("exercises", []):
            for check in ex.get("checks", []):
                digests = tuple(sorted((c["case"], c["answer_digest"]) for c in check.get("cases", [])
                                       if c.get("answer_digest") and not c.get("passed")
                                       and (c.get("visibility") == "hidden" or not hidden)))
                if digests:
                    gradient = f"{ex['id']}: {gradient_name(check['name'])}"
                    self.by_answer.setdefault((gradient, digests), []).append(name)

    def groups(self) -> list[SharedAnswer]:
        groups: dict[tuple[str, ...], list[str]] = {}
        for (gradient, _), names in self.by_answer.items():
            if len(set(names)) > 1:
                groups.setdefault(tuple(sorted(set(names))), []).append(gradient)
        return sorted((SharedAnswer(submissions=list(k), gradients=v) for k, v in groups.items()),
                      key=lambda g: (-len(g.gradients), -len(g.submissions), g.submissions))


class CheckTally:
    """Each check's pass count, the diagnosed mistakes (hints) and the exercises that did not run to the end."""

    def __init__(self):
        self.passed: Counter = Counter()
        self.seen: Counter = Counter()
        self.hints: dict[str, set[str]] = {}
        self.hint_checks: dict[str, Counter] = {}
        self.failures: list[Failure] = []

    def add(self, name: str, report: dict) -> None:
        for exercise in report.get("exercises", []):
            if exercise.get("status") in GRADER_FAILURES:
                self.failures.append(Failure(name=name, what=f"{exercise['id']}: {exercise['status']}",
                                             message=exercise.get("message", "")))
            for check in exercise.get("checks", []):
                key = (exercise["id"], check["name"])
                self.seen[key] += 1
                if check.get("status") == "passed":
                    self.passed[key] += 1
                hint = check.get("hint")
                if hint and not hint.startswith("First fix"):
                    self.hints.setdefault(hint, set()).add(name)
                    self.hint_checks.setdefault(hint, Counter())[f"{exercise['id']}: {check['name']}"] += 1

    def checks(self) -> list[CheckRate]:
        return [CheckRate(exercise=ex_id, check=check, passed=self.passed[(ex_id, check)],
                          total=self.seen[(ex_id, check)])
                for ex_id, exercise in EXERCISES.items()  # the contract's order; atomic's checks run backward
                for check in exercise.checks if (ex_id, check) in self.seen]

    def mistakes(self) -> list[Mistake]:
        return sorted((Mistake(hint=hint, submissions=len(names),
                               checks=[c for c, _ in self.hint_checks[hint].most_common(3)])
                       for hint, names in self.hints.items()), key=lambda m: (-m.submissions, m.hint))[:TOP]


def summarize(rows: list[Row], policy: LatePolicy | None = None, *, similarity: bool = True,
              reports: Iterable[tuple[str, str]] | None = None) -> Summary:
    """The summary of a batch's rows. `reports` yields (name, report JSON) of the graded rows (default: the
    rows' own `report`); each is read, counted and let go, so a course of any size is summed up in the memory
    of one report (Gradebook.reports reads them from the database one at a time)."""
    if reports is None:
        reports = ((row.name, row.report) for row in rows if row.status == "graded" and row.report)
    finals = {row.name: final_score(row, lateness(row.submitted_at, policy)) for row in rows}
    max_score = max((row.max_score for row in rows), default=0.0)
    histogram = [0] * BINS
    for row in rows:
        fraction = finals[row.name] / row.max_score if row.max_score else 0.0
        histogram[min(BINS - 1, int(fraction * BINS))] += 1

    checks, nodes, shared = CheckTally(), NodeTally(), SharedTally()

    def count(name: str, report: dict) -> None:
        checks.add(name, report)
        nodes.add(report)
        if similarity:
            shared.add(name, report)

    for name, text in reports:
        count(name, json.loads(text))  # held by this call alone: let go before the next one is read

    ungraded = [Failure(name=row.name, what=row.status, message=row.message.splitlines()[0] if row.message else "")
                for row in rows if row.status != "graded"]
    timed = sorted(((row.name, row.duration_s) for row in rows if row.duration_s is not None), key=lambda t: -t[1])
    graded_scores = [finals[row.name] for row in rows if row.status == "graded"]
    return Summary(
        generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), submissions=len(rows),
        graded=len(graded_scores), late=sum(lateness(row.submitted_at, policy).late for row in rows),
        mean=round(statistics.mean(graded_scores), 2) if graded_scores else None,
        median=round(statistics.median(graded_scores), 2) if graded_scores else None,
        max_score=max_score, histogram=histogram, checks=checks.checks(), mistakes=checks.mistakes(),
        slowest=timed[:TOP], failures=(ungraded + checks.failures)[: TOP * 4],
        scores=[(row.name, finals[row.name], row.max_score, row.status, lateness(row.submitted_at, policy).late)
                for row in rows],
        nodes=nodes.nodes(), similarity=similarity, shared=shared.groups() if similarity else [])

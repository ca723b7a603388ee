"""From the worker's answers to scored checks: validation, comparison, points.

Everything here runs in the grading process on data the worker sent; the
answers are validated (keys, dtypes, sizes) before any tensor is built.
"""

import dataclasses
import hashlib
import itertools
import json
import math
from collections import OrderedDict

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from grader.course.case_specs import Case
from grader.scoring import passed_cache
from grader.scoring.compare import compare_many
from grader.config import GradingConfig
from grader import phases
from grader.course.registry import EXERCISES
from grader.course.spec import Exercise
from grader.report import CaseResult, CheckResult, ExerciseResult
from grader.sandbox.outcome import ExerciseRun

ALLOWED_DTYPES = {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"}

HIDDEN_MESSAGES = {
    "missing": "missing from the returned dict",
    "not_implemented": "not implemented (None)",
    "wrong_type": "not a plain floating-point tensor",
    "wrong_shape": "wrong shape",
    "not_finite": "contains NaN or inf",
    "wrong_values": "wrong values",
    "error": "the function raised an exception",
    "timeout": "timed out",
    "crashed": "the worker crashed",
    "not_allowed": "not allowed",
}


class BadAnswer(Exception):
    pass


def decode_answers(blob: bytes, allowed: set[str], max_numel: int) -> dict[str, torch.Tensor]:
    """Parse the safetensors header ourselves first: keys, dtypes and sizes must be plausible."""
    if not blob:
        return {}
    if len(blob) < 8:
        raise BadAnswer("truncated answer")
    size = int.from_bytes(blob[:8], "little")
    if size > len(blob) - 8 or size > 1 << 20:
        raise BadAnswer("answer header out of bounds")
    try:
        header = json.loads(blob[8:8 + size])
    except ValueError:
        raise BadAnswer("answer header is not JSON") from None
    if not isinstance(header, dict):
        raise BadAnswer("answer header is not an object")
    for key, info in header.items():
        if key == "__metadata__":
            continue
        if key not in allowed:
            raise BadAnswer(f"unexpected answer {key!r}")
        if not isinstance(info, dict) or info.get("dtype") not in ALLOWED_DTYPES:
            raise BadAnswer(f"answer {key!r} has an unsupported dtype")
        shape = info.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise BadAnswer(f"answer {key!r} has a malformed shape")
        if math.prod(shape) > max_numel:
            raise BadAnswer(f"answer {key!r} is far larger than expected")
    try:
        return load_safetensors(blob)
    except Exception as err:  # noqa: BLE001 - any malformed payload
        raise BadAnswer(f"answers could not be read ({type(err).__name__})") from None


def _hide(result: CaseResult) -> CaseResult:
    """A hidden case keeps its verdict, never its values or shapes."""
    return CaseResult(case=result.case, visibility="hidden", passed=result.passed, status=result.status,
                      message="passed" if result.passed else HIDDEN_MESSAGES.get(result.status, result.status),
                      hint=result.hint, hint_levels=result.hint_levels,  # hidden cases: a generic label only
                      answer_digest=result.answer_digest)


def answer_digest(answer: torch.Tensor, scale: float) -> str:
    """A short hash of an answer's values rounded on the case's scale: equal numbers, equal digest."""
    # 6 digits of the case scale: far coarser than rounding noise (1e-13), far finer than any real difference
    rounded = torch.round(answer.detach().to(torch.float64) / max(scale, 1e-300) * 1e6)
    blob = save_safetensors({"a": rounded.clamp(-2.0**62, 2.0**62).to(torch.int64).contiguous()})
    return hashlib.sha256(blob).hexdigest()[:16]


# Diagnoses already made in this process, per exercise, case and exact answers: a course hands in the same
# wrong answer many times, and searching the catalogue for it costs far more than scoring it.
_DIAGNOSED: OrderedDict = OrderedDict()
DIAGNOSED_MAX = 512  # about 9 KB each (the hints of every check of a case): under 5 MB


def _diagnosis_key(ex_id: str, tolerance: float, case: Case, blob: bytes, results: dict) -> tuple:
    """What a case's hints depend on: its answers (the worker's bytes, exactly) and each check's verdict."""
    h = hashlib.blake2b(blob, digest_size=16)
    for check, r in sorted(results.items()):
        h.update(f"\0{check}\0{r.status}\0{r.message}\0{r.got_shape}".encode("utf-8", "surrogatepass"))
    return ex_id, tolerance, id(case), h.digest()


class ExerciseScorer:
    """Scores one exercise's answers, case by case. `explain(exercise, cases, tolerance)` makes the feedback pass
    that puts a hint on each failing check (grader.feedback.engine.Diagnoser): the caller chooses it, so scoring
    never imports feedback (the data flows one way: score -> diagnose)."""

    def __init__(self, exercise: Exercise, config: GradingConfig, cases: list[Case], explain):
        self.ex = exercise
        self.config = config
        self.cases = cases
        self.points = config.check_points(exercise.id)
        self.gradient_checks = exercise.gradient_checks
        self.diagnoser = explain(exercise, cases, config.tolerance)

    def _case_result(self, case: Case, check: str, status: str, message: str, **extra) -> CaseResult:
        expected = case.references[self.ex.id][check]
        shape = list(expected.shape) if isinstance(expected, torch.Tensor) else None
        return CaseResult(case=case.spec.name, visibility="hidden" if case.spec.hidden else "public",
                          passed=status == "passed", status=status, message=message,
                          expected_shape=shape, **extra)

    def _unsent(self, case: Case, check: str, notes: dict, answers: dict) -> CaseResult | None:
        """The result of a gradient that did not come back as a tensor to compare (None: it did)."""
        note = notes.get(check)
        if note is None:
            return self._case_result(case, check, "missing", f"missing: the returned dict has no key {check!r}")
        if note.get("status") != "ok":
            status = note.get("status") if note.get("status") in HIDDEN_MESSAGES else "wrong_type"
            got = note.get("got_shape")
            return self._case_result(case, check, status, str(note.get("message", status))[:300],
                                     got_shape=got if isinstance(got, list) else None)
        if answers.get(check) is None:
            return self._case_result(case, check, "crashed", "the answer was announced but not sent")
        return None

    def _gradients(self, case: Case, notes: dict, answers: dict) -> dict[str, CaseResult]:
        """Every gradient check of the case; the answers sent are compared all at once (grader.compare)."""
        results = {c: self._unsent(case, c, notes, answers) for c in self.gradient_checks}
        sent = [c for c, r in results.items() if r is None]
        refs = case.references[self.ex.id]
        verdicts = compare_many([(answers[c], refs[c], case.grad_scale) for c in sent], rtol=self.config.tolerance)
        for check, verdict in zip(sent, verdicts):
            results[check] = self._case_result(case, check, verdict.status, verdict.message, exact=verdict.exact,
                                               max_abs_diff=verdict.max_abs_diff, rel_err=verdict.rel_err,
                                               got_shape=verdict.got_shape, note=verdict.note)
        return results

    def _trajectory(self, case: Case, meta: dict, answers: dict) -> CaseResult:
        name = str(self.ex.trajectory)
        traj = meta.get("trajectory") or {}
        if traj.get("status") != "ok":
            status = "not_implemented" if traj.get("status") == "not_implemented" else "wrong_values"
            return self._case_result(case, name, status,
                                     str(traj.get("message", "the SGD steps did not complete"))[:300])
        worst = 0.0
        expected_all = case.references[self.ex.id][name]
        sent = list(itertools.takewhile(lambda k: answers.get(k) is not None, expected_all))  # up to the first gap
        verdicts = compare_many([(answers[k], expected_all[k], _abs_max(expected_all[k])) for k in sent],
                                rtol=self.config.tolerance)
        for key, verdict in itertools.zip_longest(expected_all, verdicts):
            if verdict is None:
                return self._case_result(case, name, "missing", f"parameters {key} were not sent")
            step, param = key.removeprefix("step").split(".")
            if not verdict.passed:
                return self._case_result(
                    case, name, verdict.status,
                    f"after SGD step {int(step) + 1}, {param} left the autograd trajectory ({verdict.message})",
                    max_abs_diff=verdict.max_abs_diff, rel_err=verdict.rel_err)
            worst = max(worst, verdict.rel_err or 0.0)
        steps = self.config.train.steps
        return self._case_result(case, name, "passed",
                                 f"followed autograd for {steps} SGD steps", rel_err=worst)

    def case_results(self, case: Case, run: ExerciseRun) -> dict[str, CaseResult]:
        frame = run.results.get(case.spec.name)
        if frame is None:
            err = run.error or {"status": "crashed", "message": "no answer came back for this case"}
            status = err["status"] if err["status"] in HIDDEN_MESSAGES else "error"
            message = f"{self.ex.function} {err['message']}" if status in ("timeout", "crashed") else err["message"]
            return {c: self._case_result(case, c, status, message) for c in self.ex.check_names}
        meta, blob = frame
        if isinstance(meta.get("error"), dict):
            message = str(meta["error"].get("message", "raised an exception"))[:500]
            tb = str(meta["error"].get("traceback", ""))
            last = tb.strip().splitlines()[-1] if tb.strip() else ""
            full = f"{message}: {last}" if last else message
            results = {c: self._case_result(case, c, "error", full) for c in self.ex.check_names}
            self.diagnoser.error(case, tb, results)
            return results
        passed_key = passed_cache.case_key(self.ex, self.config, case, meta, blob)
        reuse = passed_cache.before(passed_key, self.ex, case, blob)
        if reuse is not None:
            self.diagnoser.found.update({(case.spec.name, check): None for check in reuse})  # nothing to explain
            return reuse
        keys = self.ex.answer_keys(self.config.train.steps)
        try:
            max_numel = 16 * max(t.numel() for t in case.inputs.values()) + 4096
            answers = decode_answers(blob, keys, max_numel)
        except BadAnswer as err:
            return {c: self._case_result(case, c, "wrong_type", f"the answers were rejected: {err}")
                    for c in self.ex.check_names}
        notes = meta.get("notes") if isinstance(meta.get("notes"), dict) else {}
        results = self._gradients(case, notes, answers)
        if self.ex.trajectory is not None:
            results[str(self.ex.trajectory)] = self._trajectory(case, meta, answers)
        self._diagnose(case, answers, blob, results)
        passed_cache.remember(passed_key, self.ex, case, blob, results)
        for check, result in results.items():  # evidence of shared work: wrong answers no known mistake explains
            if result.status in ("wrong_values", "wrong_shape") and isinstance(answers.get(check), torch.Tensor) \
                    and self.diagnoser.found.get((case.spec.name, check)) is None:
                result.answer_digest = answer_digest(answers[check], case.grad_scale)
        return results

    def _diagnose(self, case: Case, answers: dict, blob: bytes, results: dict[str, CaseResult]) -> None:
        """The diagnoser's hints for one case, found once per distinct set of answers (then replayed)."""
        found = self.diagnoser.found
        if all(r.passed for r in results.values()):  # nothing to explain
            found.update({(case.spec.name, check): None for check in results})
            return
        key = _diagnosis_key(self.ex.id, self.config.tolerance, case, blob, results)
        entry = _DIAGNOSED.get(key)
        if entry is None or entry[0] is not case or entry[1] is not self.ex:  # the same case and definition
            with phases.phase("diagnosis"):
                self.diagnoser.case(case, answers, results)
            kept = {}
            for check, r in results.items():  # a check without a diagnosis keeps its own hints: nothing to replay
                diagnosis = found.get((case.spec.name, check))
                kept[check] = None if diagnosis is None else (_copy(diagnosis), r.hint, list(r.hint_levels))
            _DIAGNOSED[key] = (case, self.ex, kept)
            if len(_DIAGNOSED) > DIAGNOSED_MAX:
                _DIAGNOSED.popitem(last=False)
            return
        _DIAGNOSED.move_to_end(key)
        for check, replay in entry[2].items():
            if replay is None:
                found[(case.spec.name, check)] = None
                continue
            diagnosis, hint, levels = replay
            found[(case.spec.name, check)] = _copy(diagnosis)
            results[check].hint, results[check].hint_levels = hint, list(levels)

    def cascade_of(self, name: str, results: list[CaseResult]) -> str | None:
        """The upstream gradient this check's failures all come from, when its own step is right."""
        roots = []
        for r in results:
            if r.passed:
                continue
            found = self.diagnoser.found.get((r.case, name))
            if found is None or found.root is None or not (found.given_upstream or name == self.ex.trajectory):
                return None
            roots.append(found.root)
        return min(roots, key=self._order) if roots else None

    def _order(self, name: str) -> int:
        """A gradient's place in the exercise's backward pass (its `path`); other checks after it."""
        return self.ex.path.index(name) if name in self.ex.path else len(self.ex.path)

    def check(self, name: str, results: list[CaseResult]) -> CheckResult:
        passed = sum(r.passed for r in results)
        total = len(results)
        max_score = self.points[name]
        status = "passed" if passed == total else "partial" if passed else "failed"
        message = ""
        if status != "passed":
            public_fail = next((r for r in results if not r.passed and r.visibility == "public"), None)
            hidden = [r for r in results if r.visibility == "hidden"]
            hidden_failed = sum(not r.passed for r in hidden)
            parts = []
            if public_fail is not None:
                parts.append(f"{public_fail.message} (case {public_fail.case})")
            if hidden_failed:
                parts.append(f"{len(hidden) - hidden_failed} of {len(hidden)} hidden cases passed")
            message = "; ".join(parts)
        hint = self.diagnoser.summary(name, results) if status != "passed" else None
        return CheckResult(name=name, score=max_score * passed / total if total else 0.0,
                           max_score=max_score, passed_cases=passed, total_cases=total,
                           status=status, message=message,
                           hint=hint, hint_levels=self.diagnoser.levels_for(name, hint),
                           cascade_of=self.cascade_of(name, results) if status != "passed" else None,
                           cases=[_hide(r) if r.visibility == "hidden" else r for r in results])

    def score(self, run: ExerciseRun | None) -> ExerciseResult:
        if run is None:
            checks = [CheckResult(name=c, score=0.0, max_score=self.points[c], passed_cases=0,
                                  total_cases=len(self.cases), status="failed",
                                  message=f"{self.ex.file} was not submitted", cases=[])
                      for c in self.ex.check_names]
            return self._result("not_submitted", f"{self.ex.file} was not submitted", checks, run)
        per_case = [self.case_results(case, run) for case in self.cases]
        checks = [self.check(c, [pc[c] for pc in per_case]) for c in self.ex.check_names]
        if run.error and not run.results:
            status = run.error["status"]
            status = status if status in ("timeout", "crashed") else "error"
            message = run.error["message"]
            if status in ("timeout", "crashed"):
                message = f"{self.ex.function} {message}"
            return self._result(status, message, checks, run)
        failed = [c for c in checks if c.status != "passed"]
        statuses = {r.status for pc in per_case for r in pc.values()}
        if statuses == {"not_implemented"}:
            return self._result("failed", "not implemented yet: every answer is None", checks, run)
        if not failed:
            status, message = "passed", f"all {len(checks)} checks passed" if len(checks) > 1 else "passed"
        else:
            status = "failed" if all(c.status == "failed" for c in checks) else "partial"
            # The first failing gradient in the order of the backward pass (the trajectory last).
            first = min(failed, key=lambda c: self._order(c.name))
            if len(checks) == 1:
                message = f"d{first.name} failed"
            elif first.name == self.ex.trajectory:
                message = f"{len(failed)} of {len(checks)} checks failed: the SGD trajectory"
            else:
                message = f"{len(failed)} of {len(checks)} checks failed; first to fix: d{first.name}"
            errors = [r for pc in per_case for r in pc.values() if r.status == "error" and r.visibility == "public"]
            if errors:
                message += f" ({errors[0].message})"
            if run.error:
                message += f"; {self.ex.function} {run.error['message']}"
        return self._result(status, message, checks, run)

    def _result(self, status: str, message: str, checks: list[CheckResult], run: ExerciseRun | None):
        traceback = None
        if run is not None:
            traceback = (run.error or {}).get("traceback") or next(
                (str(m["error"].get("traceback")) for m, _ in
                 (run.results.get(c.spec.name, ({}, b"")) for c in self.cases if not c.spec.hidden)
                 if isinstance(m.get("error"), dict)), None)
        return ExerciseResult(id=self.ex.id, title=self.ex.title, file=self.ex.file, function=self.ex.function,
                              score=round(sum(c.score for c in checks), 6),
                              max_score=round(sum(c.max_score for c in checks), 6), status=status, message=message,
                              traceback=traceback or None, seconds=round(run.seconds, 4) if run else 0.0,
                              checks=checks)


_ABS_MAX: dict[int, tuple[torch.Tensor, float]] = {}


def _abs_max(t: torch.Tensor) -> float:
    """max |t| of a reference tensor, computed once per run (the trajectory's scales)."""
    entry = _ABS_MAX.get(id(t))
    if entry is None or entry[0] is not t:
        if len(_ABS_MAX) > 4096:
            _ABS_MAX.clear()
        entry = _ABS_MAX[id(t)] = (t, float(t.abs().max()))
    return entry[1]


def _copy(diagnosis):
    return None if diagnosis is None else dataclasses.replace(diagnosis, levels=list(diagnosis.levels))


def score_exercise(ex_id: str, config: GradingConfig, cases: list[Case], run: ExerciseRun | None,
                   explain) -> ExerciseResult:
    return ExerciseScorer(EXERCISES[ex_id], config, cases, explain).score(run)


def score_not_allowed(ex_id: str, config: GradingConfig, cases: list[Case], messages: list[str],
                      run: ExerciseRun | None, explain) -> ExerciseResult:
    """An integrity finding costs the whole exercise: every check fails, naming the first construct."""
    scorer = ExerciseScorer(EXERCISES[ex_id], config, cases, explain)
    more = len(messages) - 1
    first = messages[0] + (f" ({more} more listed under integrity in the report)" if more else "")
    checks = [CheckResult(name=c, score=0.0, max_score=scorer.points[c], passed_cases=0, total_cases=len(cases),
                          status="failed", message=first,
                          cases=[CaseResult(case=case.spec.name, visibility="hidden" if case.spec.hidden else "public",
                                            passed=False, status="not_allowed", message="not allowed")
                                 for case in cases])
              for c in scorer.ex.check_names]
    result = scorer._result("not_allowed", first, checks, None)
    result.seconds = round(run.seconds, 4) if run else 0.0
    return result

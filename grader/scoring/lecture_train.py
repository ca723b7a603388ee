"""Exercise 4 of the lecture's notebook, graded: autograd at the student's own parameters and batches.

The worker (`grader.sandbox.inside.train_loop`) ran the loop planned by
`grader.submission.lecture.train` for a few capped steps and sent back, per step, the
parameters, the hand-computed gradients, the batch and the learning rate. Here each step's
gradients are compared with autograd at the same parameters and batch, and the parameters with
the SGD trajectory from the student's initial parameters, with the `train` checks and points of
grading.yaml.
"""

from dataclasses import dataclass

from grader.course.mlp import PARAMS
from grader.course.spec import TRAJECTORY
from grader.submission.lecture import sections as lecture_sections
from grader.submission.lecture.train import TrainPlan


class Invalid(Exception):
    pass


def _where(cell: int, line: int) -> str:
    return f"cell {cell}, line {line}"


def _canonical(params: dict, Xb, Yb, vocab: int) -> dict:
    """The lecture's shapes for the forward pass, or Invalid saying what does not fit."""
    import torch

    missing = [k for k in PARAMS if k not in params]
    if missing:
        raise Invalid(f"the training loop has no {', '.join(missing)} (the lecture's parameters are "
                      f"{', '.join(PARAMS)})")
    C, W1 = params["C"], params["W1"]
    if Xb is None or Yb is None:
        raise Invalid("the loop's minibatch (Xb, Yb) was not found")
    if Xb.dtype not in (torch.int64, torch.int32) or Yb.dtype not in (torch.int64, torch.int32) or Xb.dim() != 2 \
            or Yb.dim() != 1 or Xb.shape[0] != Yb.shape[0] or Xb.shape[0] < 2:
        raise Invalid(f"the loop's minibatch is not the lecture's (Xb {tuple(Xb.shape)}, Yb {tuple(Yb.shape)})")
    if C.dim() != 2 or C.shape[0] != vocab or W1.dim() != 2 or W1.shape[0] != Xb.shape[1] * C.shape[1]:
        raise Invalid(f"C {tuple(C.shape)} and W1 {tuple(W1.shape)} do not fit the lecture's model "
                      f"(vocab {vocab}, block {Xb.shape[1]})")
    hidden = W1.shape[1]
    sizes = {"b1": hidden, "W2": hidden * vocab, "b2": vocab, "bngain": hidden, "bnbias": hidden}
    bad = [f"{k} {tuple(params[k].shape)}" for k, size in sizes.items() if params[k].numel() != size]
    if bad or params["W2"].shape[0] != hidden:
        raise Invalid(f"the parameters' shapes do not fit together ({', '.join(bad) or 'W2'}; n_hidden {hidden})")
    if int(Xb.min()) < 0 or int(Xb.max()) >= vocab or int(Yb.min()) < 0 or int(Yb.max()) >= vocab:
        raise Invalid("the loop's minibatch holds indices outside the vocabulary")
    if any(not params[k].is_floating_point() or not bool(torch.isfinite(params[k]).all()) for k in PARAMS):
        raise Invalid("a parameter is not a finite floating-point tensor")
    shapes = {"C": C.shape, "W1": W1.shape, "b1": (hidden,), "W2": (hidden, vocab), "b2": (vocab,),
              "bngain": (1, hidden), "bnbias": (1, hidden)}
    return shapes


def _autograd(params: dict, Xb, Yb, shapes: dict, dtype):
    """Autograd's gradient of the lecture's loss at these parameters and batch (in each parameter's own shape)."""
    import torch

    from grader.course import mlp

    leaves = {k: params[k].detach().clone().to(dtype).requires_grad_(True) for k in PARAMS}
    with torch.enable_grad():
        fwd = mlp.forward({k: leaves[k].reshape(shapes[k]) for k in PARAMS}, Xb.long(), Yb.long())
        fwd["logits"].retain_grad()
        fwd["loss"].backward()
    return {k: leaves[k].grad.detach() for k in PARAMS}, float(fwd["logits"].grad.abs().max())


@dataclass
class Steps:
    """One case's answers, by step."""

    params: list[dict]      # params[k]: before step k (k = 0 .. complete)
    grads: list[dict]       # grads[k]: the hand-computed gradients of step k (tensors only)
    notes: list[dict]       # notes[k][P]: the worker's note for grad k of P
    batches: list[tuple]
    lrs: list[float | None]
    complete: int
    partial: bool


def _steps(answers: dict, notes: dict, max_steps: int) -> Steps:
    info = answers.get("steps")
    complete = int(info[0]) if info is not None and info.numel() == 2 else 0
    partial = bool(info[1]) if info is not None and info.numel() == 2 else False
    complete = max(0, min(complete, max_steps))
    count = complete + (1 if partial else 0)
    params = [{k: answers[f"param{s}.{k}"] for k in PARAMS if f"param{s}.{k}" in answers}
              for s in range(complete + 1)]
    grads = [{k: answers[f"grad{s}.{k}"] for k in PARAMS if f"grad{s}.{k}" in answers} for s in range(count)]
    step_notes = [{k: notes.get(f"grad{s}.{k}") for k in PARAMS} for s in range(count)]
    batches = [(answers.get(f"Xb{s}"), answers.get(f"Yb{s}")) for s in range(count)]
    lrs = []
    for s in range(count):
        lr = answers.get(f"lr{s}")
        lrs.append(float(lr) if lr is not None and lr.numel() == 1 else None)
    return Steps(params, grads, step_notes, batches, lrs, complete, partial)


def _facts(meta: dict) -> dict:
    return meta.get("lecture") if isinstance(meta.get("lecture"), dict) else {}


def _first_error(facts: dict) -> str | None:
    for err in facts.get("errors", []) or []:
        if isinstance(err, dict):
            return f"{_where(err.get('cell', 0), err.get('line', 0))} {err.get('what', 'raised an error')}"
    return None


class TrainScorer:
    """The training-loop exercise's checks (`train`'s) for a lecture notebook's loop, case by case."""

    def __init__(self, plan: TrainPlan, config, cases, ex):
        from grader.scoring.score import ExerciseScorer

        self.plan = plan
        self.config = config
        self.cases = cases
        self.base = ExerciseScorer(ex, config, cases)
        self.ex = ex
        self.loop_name = f"exercise {ex.lecture.number}'s loop"

    def _result(self, case, check: str, status: str, message: str, **extra):
        from grader.report import CaseResult

        return CaseResult(case=case.spec.name, visibility="hidden" if case.spec.hidden else "public",
                          passed=status == "passed", status=status, message=message[:500], **extra)

    def _missing(self, var: str, facts: dict, step: int) -> str:
        for skip in self.plan.skips:
            if var in skip.names:
                return (f"{var} is only computed in {_where(skip.cell, skip.line)}, which the grader does not run "
                        f"({skip.reason}): compute it by hand")
        if step >= 0 and facts.get("partial_error"):
            error = str(facts["partial_error"])
            cause = next((s for s in self.plan.skips for name in s.names if f"name '{name}' is not defined" in error),
                         None)
            if cause is not None:  # e.g. `dhpreact = hpreact.grad` was not run, so what needs it raised
                return (f"{var} was not computed: in step {step + 1}, {error} ({_where(cause.cell, cause.line)}, "
                        f"which sets it, {cause.reason}, is not run: compute it by hand)")
            return f"{var} was not computed: in step {step + 1}, {error}"
        return (f"the loop defines no {var} (and {self.plan.grads_name} is not a list of the 7 gradients "
                "in the order of parameters)")

    def _update_message(self) -> str:
        return (f"the update ({_where(self.plan.cell, self.plan.update_line)}: {self.plan.update_text}) uses "
                "p.grad, autograd's gradient, which the grader does not compute: update with your own "
                "gradients (p.data += -lr * grad)")

    def case_results(self, case, run) -> dict:
        import torch

        from grader.scoring.score import HIDDEN_MESSAGES, BadAnswer, decode_answers

        frame = run.results.get(case.spec.name) if run is not None else None
        checks = self.ex.checks
        if frame is None:
            err = (run.error if run is not None else None) or {"status": "crashed",
                                                               "message": "no answer came back for this case"}
            status = err["status"] if err["status"] in HIDDEN_MESSAGES else "error"
            message = f"{self.loop_name} {err['message']}" if status in ("timeout", "crashed") else err["message"]
            return {c: self._result(case, c, status, message) for c in checks}
        meta, blob = frame
        facts = _facts(meta)
        if isinstance(meta.get("error"), dict):
            message = str(meta["error"].get("message", "the loop could not be run"))[:500]
            return {c: self._result(case, c, "error", message) for c in checks}
        K = self.config.train.steps
        keys = {"steps"} | {f"{kind}{s}" for kind in ("Xb", "Yb", "lr") for s in range(K)}
        keys |= {f"{kind}{s}.{p}" for kind in ("param", "grad") for s in range(K + 1) for p in PARAMS}
        try:
            max_numel = 16 * max(t.numel() for t in case.inputs.values()) + 4096
            answers = decode_answers(blob, keys, max_numel)
        except BadAnswer as err:
            return {c: self._result(case, c, "wrong_type", f"the answers were rejected: {err}") for c in checks}
        notes = meta.get("notes") if isinstance(meta.get("notes"), dict) else {}
        steps = _steps(answers, notes, K)
        error = _first_error(facts) or "the loop ran no step"
        dtype = case.inputs["C"].dtype
        vocab = case.inputs["C"].shape[0]
        count = len(steps.grads)
        if count == 0:
            return {c: self._result(case, c, "error", f"{self.loop_name} did not complete a step: {error}")
                    for c in checks}
        try:
            shapes = _canonical(steps.params[0], *steps.batches[0], vocab)
            refs = []
            for s in range(count):
                params = steps.params[s] if s < len(steps.params) else steps.params[-1]
                _canonical(params, *steps.batches[s], vocab)
                refs.append(_autograd(params, *steps.batches[s], shapes, dtype))
        except Invalid as err:
            return {c: self._result(case, c, "wrong_shape", f"{self.loop_name}: {err}") for c in checks}

        results = {}
        for name in self.ex.gradient_checks:
            results[name] = self._gradient(case, name, steps, refs, facts)
        results[TRAJECTORY] = self._trajectory(case, steps, shapes, dtype, facts, torch)
        return results

    def _gradient(self, case, name: str, steps: Steps, refs: list, facts: dict):
        from grader.scoring.compare import compare
        from grader.scoring.score import HIDDEN_MESSAGES

        var = "d" + name
        worst = 0.0
        notes = []
        for s, (ref, scale) in enumerate(refs):
            note = steps.notes[s].get(name)
            where = f"step {s + 1}: " if len(refs) > 1 else ""
            if note is None or note.get("status") == "missing":
                partial = s == steps.complete and steps.partial
                return self._result(case, name, "missing", where + self._missing(var, facts, s if partial else -1))
            if note.get("status") != "ok":
                status = note.get("status") if note.get("status") in HIDDEN_MESSAGES else "wrong_type"
                if status == "not_implemented":
                    return self._result(case, name, status, f"{var} is still None: not attempted yet")
                return self._result(case, name, status, where + str(note.get("message", status)))
            got = steps.grads[s].get(name)
            if got is None:
                return self._result(case, name, "crashed", "the answer was announced but not sent")
            verdict = compare(got, ref[name], scale=scale, rtol=self.config.tolerance)
            if not verdict.passed:
                return self._result(case, name, verdict.status, f"{where}{verdict.message}", exact=verdict.exact,
                                    max_abs_diff=verdict.max_abs_diff, rel_err=verdict.rel_err,
                                    got_shape=verdict.got_shape, expected_shape=list(ref[name].shape))
            worst = max(worst, verdict.rel_err or 0.0)
            if verdict.note:
                notes.append(verdict.note)
        n = len(refs)
        return self._result(case, name, "passed", f"matched autograd at {'each of the ' if n > 1 else ''}{n} "
                                                  f"step{'s' if n > 1 else ''} of your loop", rel_err=worst,
                            expected_shape=list(refs[0][0][name].shape), note=notes[0] if notes else None)

    def _trajectory(self, case, steps: Steps, shapes: dict, dtype, facts: dict, torch):
        from grader.scoring.compare import compare

        if steps.complete == 0:
            return self._result(case, TRAJECTORY, "error",
                                f"{self.loop_name} did not complete a step: {_first_error(facts) or 'no update'}")
        ref = {k: steps.params[0][k].detach().clone().to(dtype) for k in PARAMS}
        worst = 0.0
        for s in range(steps.complete):
            lr = steps.lrs[s]
            if lr is None or not lr > 0 or lr != lr or lr == float("inf"):
                lr = self.config.train.lr
            grads, _ = _autograd(ref, *steps.batches[s], shapes, dtype)
            ref = {k: ref[k] - lr * grads[k] for k in PARAMS}
            after = steps.params[s + 1]
            for k in PARAMS:
                got = after.get(k)
                if got is None:
                    return self._result(case, TRAJECTORY, "missing", f"the parameters after step {s + 1} were not sent")
                verdict = compare(got, ref[k], scale=float(ref[k].abs().max()), rtol=self.config.tolerance)
                if not verdict.passed:
                    if self.plan.update == "autograd":
                        return self._result(case, TRAJECTORY, "wrong_values", self._update_message())
                    return self._result(case, TRAJECTORY, verdict.status,
                                        f"after SGD step {s + 1} (lr {lr:g}), {k} left the autograd trajectory "
                                        f"({verdict.message})", max_abs_diff=verdict.max_abs_diff,
                                        rel_err=verdict.rel_err)
                worst = max(worst, verdict.rel_err or 0.0)
        stopped = "" if steps.complete == self.config.train.steps else " (your loop stopped there)"
        return self._result(case, TRAJECTORY, "passed",
                            f"followed autograd for {steps.complete} SGD steps{stopped}", rel_err=worst)

    def score(self, run, nb_name: str):
        per_case = [self.case_results(case, run) for case in self.cases]
        checks = [self.base.check(c, [pc[c] for pc in per_case]) for c in self.ex.checks]
        failed = [c for c in checks if c.status != "passed"]
        statuses = {r.status for pc in per_case for name, r in pc.items() if name != TRAJECTORY}
        if not failed:
            status, message = "passed", f"all {len(checks)} checks passed"
        elif statuses == {"not_implemented"}:
            status = "failed"
            message = (f"not attempted: the gradients in cell {self.plan.cell} are still None"
                       + (f" and {self._update_message()}" if self.plan.update == "autograd" else ""))
        else:
            status = "failed" if all(c.status == "failed" for c in checks) else "partial"
            first = next((c for c in failed if c.name != TRAJECTORY), failed[0])
            message = (f"{len(failed)} of {len(checks)} checks failed: the SGD trajectory" if first.name == TRAJECTORY
                       else f"{len(failed)} of {len(checks)} checks failed; first to fix: d{first.name}")
        if run is not None and run.error and not run.results:
            status = run.error["status"] if run.error["status"] in ("timeout", "crashed") else "error"
            message = f"{self.loop_name}: {run.error['message']}"
        result = self.base._result(status, message, checks, run)
        result.file = nb_name
        cells = self.plan.cells
        result.function = f"cell {cells[0]}" if len(cells) == 1 else f"cells {', '.join(map(str, cells))}"
        return result


def findings(plan: TrainPlan | None, ex=None) -> list:
    """Integrity findings: gradients the loop reads from autograd (`dembcat = embcat.grad`), which are not run."""
    from grader.report import IntegrityFinding

    ex = ex or lecture_sections.training_loop()
    if plan is None or ex is None:
        return []
    lines = plan.source.splitlines()
    return [IntegrityFinding(exercise=ex.id, file=f"cell {s.cell}", line=s.line, pattern=".grad",
                             message=f"exercise {ex.lecture.number} reads autograd's gradient ({lines[s.line - 1].strip()[:80]})")
            for s in plan.skips if s.reason.startswith("reads autograd") and any(n.startswith("d") for n in s.names)]


def score(plan: TrainPlan | None, config, cases, run, nb_name: str, ex=None):
    """The ExerciseResult of the training-loop exercise (`ex`, by default the registered one) of a lecture notebook."""
    from grader.scoring.score import score_exercise

    ex = ex or lecture_sections.training_loop()
    if plan is None:
        result = score_exercise(ex.id, config, cases, None)
        message = f"exercise {ex.lecture.number} is not in the notebook ({ex.lecture.not_found})"
        result.message, result.file, result.function = message, nb_name, "-"
        for check in result.checks:
            check.message = message
        return result
    return TrainScorer(plan, config, cases, ex).score(run, nb_name)

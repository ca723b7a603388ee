"""Scoring a lecture notebook: its sections' answers graded like the exercises' files, in its own words.

The worker ran each section planned by `grader.submission.lecture.plan` and sent back its `d...`
variables with facts (which statement raised, which names exist, which cmp line named what).
`score` grades them with the exercises' checks (`grader.scoring.score`) and rewrites what the
student reads for this notebook: missing answers by their cell and line, autograd reads,
names taken from the student's cmp lines.
"""

from grader.course.mlp import LECTURE_SHAPE
from grader.course.registry import EXERCISES
from grader.course.spec import LectureSection, NotInLecture
from grader.sandbox.inside.statements import near_matches
from grader.submission.lecture import sections as lecture_sections
from grader.submission.lecture.plan import LecturePlan, Section


def lecture_cases(cases) -> list:
    """The cases the lecture's cells can run on: the public `lecture` case and hidden cases of its shape."""
    def lecture_shaped(c):
        return all(getattr(c.spec, k) == v for k, v in LECTURE_SHAPE.items())

    public = [c for c in cases if not c.spec.hidden and c.spec.name == "lecture"]
    public = public or [c for c in cases if not c.spec.hidden and lecture_shaped(c)]
    return public + [c for c in cases if c.spec.hidden and lecture_shaped(c)]


def _where(cell: int, line: int) -> str:
    return f"cell {cell}, line {line}"


def missing_message(var: str, sec: Section, facts: dict) -> str:
    number = sec.number
    uses = [u for u in sec.autograd if var in u.names]
    if uses:
        u = uses[-1]
        if var in u.direct:
            return (f"{var} reads autograd's gradient ({u.text}, {_where(u.cell, u.line)}): the grader's tensors "
                    "carry no .grad, so compute it by hand")
        return (f"{var} is computed from autograd's gradient ({u.text}, {_where(u.cell, u.line)}), "
                "not by hand, so it was not graded as your work")
    for err in facts.get("errors", []):
        if var in err.get("names", []):
            return f"{var} was not computed: {_where(err['cell'], err['line'])} {err['what']}"
    for late in facts.get("late", []):
        if var in late.get("names", []):
            return (f"{var} was not computed: the exercise ran out of time before {_where(late['cell'], late['line'])} "
                    "(an earlier statement ran too long)")
    skipped = [s for s in sec.skipped if var in s.names]
    if skipped:
        s = skipped[-1]
        return (f"{var} is only computed in {_where(s.cell, s.line)}, which the grader does not run "
                f"({s.reason})")
    answers = {"d" + name for name in sec.expected}
    near = near_matches(var, [name for name in facts.get("defined", []) if name not in answers])
    if near:
        return f"{var} is not defined by exercise {number}'s cells; found {' and '.join(near)}: a typo?"
    if sec.broken:
        return f"{var} is not defined by exercise {number}'s cells ({sec.broken[0][1]})"
    extra = ""
    if var in sec.elsewhere:
        extra = " (each exercise runs on its own: a value from another exercise's cells does not count)"
    return f"{var} is not defined by exercise {number}'s cells{extra}"


def _final_autograd(var: str, sec: Section) -> bool:
    """The answer's final value comes from autograd's `.grad` (directly or through what it feeds)."""
    return any(var in use.names for use in sec.autograd)


def enrich_run(run, sec: Section) -> None:
    """Before scoring: messages for missing and None answers, written for this notebook."""
    for meta, _ in run.results.values():
        facts = meta.get("lecture") if isinstance(meta.get("lecture"), dict) else {}
        notes = meta.setdefault("notes", {})
        if not isinstance(notes, dict):
            continue
        for name in sec.expected:
            var = "d" + name
            note = notes.get(name)
            if _final_autograd(var, sec):  # even if an earlier line computed it by hand: the final value counts
                notes[name] = {"status": "not_allowed", "message": missing_message(var, sec, facts)}
            elif note is None:
                notes[name] = {"status": "missing", "message": missing_message(var, sec, facts)}
            elif note.get("status") == "not_implemented":
                notes[name] = {"status": "not_implemented", "message": f"{var} is still None: not attempted yet"}


def annotate_result(result, sec: Section, run, nb_name: str) -> list:
    """After scoring: notes on passing answers, autograd reads, cell names. Returns integrity findings."""
    from grader.report import IntegrityFinding

    result.file = nb_name
    cells = sec.cell_numbers
    result.function = f"cell {cells[0]}" if len(cells) == 1 else f"cells {', '.join(map(str, cells))}"
    zero = set()
    changed = set()
    aliases: dict[str, tuple[str, str]] = {}
    raised: dict[str, dict] = {}   # answer -> the first statement that raised while changing it
    public = {case.case for check in result.checks for case in check.cases if case.visibility == "public"}
    for case_name, (meta, _) in run.results.items():
        facts = meta.get("lecture") if isinstance(meta.get("lecture"), dict) else {}
        if case_name not in public:
            facts = {k: v for k, v in facts.items() if k in ("zero_filled", "changed")}  # nothing of a hidden case's text
        zero |= set(facts.get("zero_filled", []))
        changed |= set(facts.get("changed", []))
        found = facts.get("aliases") if isinstance(facts.get("aliases"), dict) else {}
        for name, pair in found.items():
            if isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair):
                aliases.setdefault(name, (pair[0][:60], pair[1]))
        for err in facts.get("errors", []) if isinstance(facts.get("errors"), list) else []:
            if isinstance(err, dict):
                for var in err.get("names", []) if isinstance(err.get("names"), list) else []:
                    raised.setdefault(var, err)
    flagged = {}
    for use in sec.autograd:
        for var in use.names:
            flagged.setdefault(var, use)
    for check in result.checks:
        var = "d" + check.name
        for case in check.cases:
            if check.name in zero and case.passed:
                case.note = (f"{var} is not defined; it is exactly zero (subtracting the max does not change "
                             "the softmax), so leaving it out is right")
            if var in flagged and not case.passed:
                case.status = "not_allowed"
            if check.name in aliases and case.passed:
                alt, why = aliases[check.name]
                case.note = (f"read from {alt}: your cmp line compares it with {check.name}" if why == "cmp" else
                             f"read from {alt}, taken for {var} (the name is close and nothing else matches)")
        if check.name in zero and check.status == "passed":
            check.hint = check.hint or "not defined, and zero is the right answer"
        err = raised.get(var)
        if err is not None and check.status != "passed" and var not in flagged:
            # The value was left half-computed by a statement that raised: that error is the cause.
            text = (f"{var} is not finished: {_where(err.get('cell', 0), err.get('line', 0))} "
                    f"{str(err.get('what', 'raised'))[:200]}, so that line's change to {var} never happened")
            check.message, check.hint = text, None
            for case in check.cases:
                if not case.passed and case.status in ("wrong_values", "wrong_shape", "not_finite"):
                    case.message, case.hint = (text if case.visibility == "public" else case.message), None
    findings = []
    for use in sec.autograd:
        findings.append(IntegrityFinding(exercise=sec.ex_id, file=f"cell {use.cell}", line=use.line,
                                         pattern=".grad",
                                         message=f"exercise {sec.number} reads autograd's gradient ({use.text})"))
    if sec.autograd:
        first = sec.autograd[0]
        result.message = (f"uses autograd's gradient ({first.text}, {_where(first.cell, first.line)}); "
                          + result.message)
    if result.status in ("timeout", "crashed"):
        result.message = result.message.replace(EXERCISES[sec.ex_id].function, f"exercise {sec.number}'s cells", 1)
    if result.checks and all(c.status == "failed" for c in result.checks) and all(
            case.status == "missing" for c in result.checks for case in c.cases):
        result.message = (f"not attempted: exercise {sec.number}'s cells define none of its gradients "
                          f"({', '.join('d' + c.name for c in result.checks[:3])}{', ...' if len(result.checks) > 3 else ''})")
    if changed:
        result.message += f" (note: these cells reassign forward variables: {', '.join(sorted(changed)[:6])})"
    return findings


def _run_notes(run, sec: Section, cases) -> list[str]:
    """What went wrong while the cells ran on the first public case (never a hidden one), for the report."""
    public = [c.spec.name for c in cases if not c.spec.hidden]
    frame = next((run.results[name] for name in public if name in run.results), None)
    facts = frame[0].get("lecture") if frame and isinstance(frame[0].get("lecture"), dict) else {}
    notes = [f"exercise {sec.number}: {_where(e['cell'], e['line'])} {e['what']}"
             for e in facts.get("errors", [])[:5] if isinstance(e, dict)]
    found = facts.get("forward_map") if isinstance(facts.get("forward_map"), dict) else {}
    if found and sec.forward_cell:
        shown = ", ".join(f"{k} as {v}" for k, v in sorted(found.items())[:8] if isinstance(v, str))
        notes.append(f"exercise {sec.number}: your forward pass (cell {sec.forward_cell['cell']}) was run on the "
                     f"grader's batch to read your names: {shown}")
    late = facts.get("late", [])
    if late:
        notes.append(f"exercise {sec.number}: {len(late)} statement(s) not run: the exercise ran out of time")
    return notes

def _cells_label(cells: list[int]) -> str:
    return f"cell {cells[0]}" if len(cells) == 1 else f"cells {', '.join(map(str, cells))}"


def not_in_format(ex, nb_name: str):
    """The result of an exercise that the lecture's notebook does not hold (NotInLecture, or no field)."""
    from grader.report import ExerciseResult

    reason = getattr(ex.lecture, "reason", None) or NotInLecture().reason
    return ExerciseResult(id=ex.id, title=ex.title, file=nb_name, function="-", score=0.0, max_score=0.0,
                          status="not_submitted", message=f"not in this format: {reason}", checks=[])


def score(plan: LecturePlan, enabled: list[str], config, cases, outcome, nb_name: str, static=()):
    """ExerciseResults for a lecture notebook, plus integrity findings (`static`: scan_plan's)."""
    from grader.scoring import lecture_train
    from grader.scoring.score import score_exercise, score_not_allowed

    results, findings = [], []
    cells_of = plan.exercise_cells()
    for ex_id in enabled:
        ex = EXERCISES[ex_id]
        section = ex.lecture
        if not isinstance(section, LectureSection):
            results.append(not_in_format(ex, nb_name))
            continue
        blocked = [f.message for f in static if f.exercise == ex_id]
        if blocked and ex_id in cells_of:
            result = score_not_allowed(ex_id, config, cases, blocked, outcome.exercises.get(ex_id))
            result.file, result.function = nb_name, _cells_label(cells_of[ex_id])
            results.append(result)
            continue
        if ex.trajectory is not None:  # exercise 4: graded by grader.scoring.lecture_train
            loop = plan.train if plan.train_id == ex_id else None
            results.append(lecture_train.score(loop, config, cases, outcome.exercises.get(ex_id), nb_name, ex=ex))
            findings += lecture_train.findings(loop, ex=ex)
            continue
        sec = plan.sections.get(ex_id)
        if sec is None:
            result = score_exercise(ex_id, config, cases, None)
            message = f"exercise {section.number} is not in the notebook ({lecture_sections.not_found(ex_id)})"
            result.message, result.file, result.function = message, nb_name, "-"
            for check in result.checks:
                check.message = message
            results.append(result)
            continue
        run = outcome.exercises.get(ex_id)
        if run is not None:
            enrich_run(run, sec)
            plan.notes += _run_notes(run, sec, cases)
        result = score_exercise(ex_id, config, cases, run)
        if run is not None:
            findings += annotate_result(result, sec, run, nb_name)
        results.append(result)
    return results, findings


def no_lecture_case() -> str:
    shape = ", ".join(f"{k}={v}" for k, v in LECTURE_SHAPE.items())
    return ("this is the lecture's notebook, whose cells use the lecture's sizes, but grading.yaml has no "
            f"public case named 'lecture' or with the lecture's shape ({shape})")


def has_lecture_case(config) -> bool:
    return any(c.name == "lecture" or all(getattr(c, k) == v for k, v in LECTURE_SHAPE.items())
               for c in config.cases)

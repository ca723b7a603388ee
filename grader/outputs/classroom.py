"""GitHub Classroom: the runner result its autograding reporter reads (version 1), from a finished Report."""

from grader.outputs.check_text import check_text, num, shown
from grader.outputs.common import check_label
from grader.report import Report
from grader.safe_text import clean_tree


def classroom_results(report: Report) -> dict:
    """The runner result that GitHub Classroom's autograding reporter reads (version 1).

    The workflow passes it base64-encoded as a step output; the reporter sums
    the tests' `score` against `max_score` and fails the job when `status` is
    "fail" or "error".
    """
    tests = []
    for ex in report.exercises:
        per_check_ms = int(round(1000 * ex.seconds / len(ex.checks))) if ex.checks else 0
        for check in ex.checks:
            if check.status == "passed":
                status = "pass"
            elif ex.status in ("error", "timeout", "crashed"):
                status = "error"
            else:
                status = "fail"
            tests.append({
                "name": f"{ex.file}: {check_label(check)}",
                "status": status,
                "score": num(check.score),
                "message": check_text(check, ex, report),
                "test_code": f"{ex.function}(...) -> {check_label(check)}",
                "filename": ex.file,
                "line_no": 0,
                "duration": per_check_ms,
            })
    statuses = {t["status"] for t in tests}
    overall = "pass" if statuses <= {"pass"} else "error" if statuses == {"error"} else "fail"
    return clean_tree({"version": 1, "status": overall, "max_score": num(report.max_score), "tests": tests}, shown)

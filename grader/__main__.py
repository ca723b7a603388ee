from grader.phases import mark

mark("python started")
from grader.cli import run  # noqa: E402

run()

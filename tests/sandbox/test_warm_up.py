"""The fork server's warm-up: driven by the course's exercise specs, and never silently cold."""

import json

from conftest import EXERCISE_IDS
from grader.sandbox.inside.forkserver import _warm_up
from grader.sandbox.warm import write_warm_up


def test_every_exercise_of_the_course_warms_up(tmp_path, config, capfd):
    plan = write_warm_up(tmp_path, config)
    assert [e["id"] for e in json.loads(plan.read_text())["exercises"]] == list(EXERCISE_IDS)
    assert _warm_up(str(plan)) == []
    assert "did not warm up" not in capfd.readouterr().err


def test_an_exercise_that_cannot_warm_up_is_named(tmp_path, config, capfd):
    plan = write_warm_up(tmp_path, config)
    data = json.loads(plan.read_text())
    data["exercises"][1]["tensor_args"].append("not_an_input")  # its stand-in call cannot be made
    plan.write_text(json.dumps(data))
    assert _warm_up(str(plan)) == [data["exercises"][1]["id"]]
    err = capfd.readouterr().err
    assert f"exercise {data['exercises'][1]['id']} did not warm up" in err and "KeyError" in err


def test_no_plan_no_warm_up_and_a_broken_one_says_so(tmp_path, capfd):
    assert _warm_up(None) == []
    (tmp_path / "warm-up.json").write_text("{")
    assert _warm_up(str(tmp_path / "warm-up.json")) == ["*"]
    assert "no warm-up" in capfd.readouterr().err

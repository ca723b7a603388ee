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


def test_servers_start_before_their_warm_up_plan_is_written_and_wait_for_it(tmp_path, config):
    from grader.sandbox.levels import choose_level
    from grader.sandbox.slot import Slot

    slot = Slot(tmp_path / "slot", choose_level(config.isolation), config, warm_up=False)
    try:
        assert slot.proc.poll() is None  # started (importing torch) with no plan yet
        assert not slot.warm_up.exists()
        assert not slot.wait_ready(timeout=8)  # it waits for the plan: never ready, never serving, cold
        assert slot.proc.poll() is None
        slot.write_warm_up()
        assert slot.wait_ready(timeout=120)
    finally:
        slot.close()


def test_open_all_starts_every_server_and_warms_each(tmp_path, config):
    from grader.sandbox.levels import choose_level
    from grader.sandbox.slot import Slot

    slots = Slot.open_all([tmp_path / "a", tmp_path / "b"], choose_level(config.isolation), config)
    try:
        assert all(s.warm_up.exists() and s.wait_ready(timeout=120) for s in slots)
        # One plan, built once, in each slot's own folder: it names that folder, and the stand-in inputs match.
        plans = [json.loads(s.warm_up.read_text()) for s in slots]
        assert [p.pop("inputs") for p in plans] == [str(s.mounts.inputs) for s in slots]
        assert plans[0] == plans[1]
        a, b = (s.mounts.inputs / plans[0]["file"] for s in slots)
        assert a.read_bytes() == b.read_bytes()
    finally:
        for s in slots:
            s.close()

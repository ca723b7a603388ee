"""grading.yaml: validation, points, hidden seeds; errors exit 2 with one line."""

import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from grader.config import ConfigError, load_config


def write(tmp_path, data):
    path = tmp_path / "grading.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def base():
    return yaml.safe_load((ROOT / "grading.yaml").read_text())


def test_repository_config_loads(config):
    assert config.dtype == "float64"
    assert config.tolerance == 1e-8
    totals = {ex: sum(config.check_points(ex).values()) for ex in config.exercises}
    assert totals == pytest.approx({"atomic": 40, "cross_entropy": 15, "batchnorm": 15, "embedding": 10, "train": 20})
    assert config.check_points("train")["trajectory"] == 6
    assert config.check_points("train")["W1"] == pytest.approx(2)
    shapes = {(c.n, c.block, c.n_embd, c.n_hidden, c.vocab) for c in config.cases}
    assert (32, 3, 10, 64, 27) in shapes and any(s[0] == 2 for s in shapes) and len(shapes) >= 3
    assert any(c.repeated_indices for c in config.cases) and any(c.unused_vocab for c in config.cases)


def test_hidden_seeds_come_from_the_secret(config):
    assert config.hidden_specs(None) == []
    a, b = config.hidden_specs("one"), config.hidden_specs("two")
    assert len(a) == len(config.hidden_cases) >= 1
    assert all(s.hidden for s in a)
    assert [s.seed for s in a] == [s.seed for s in config.hidden_specs("one")]
    assert [s.seed for s in a] != [s.seed for s in b]
    assert not {s.seed for s in a} & {c.seed for c in config.cases}


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["exercises"].update({"softmax": {"points": 5}}), "unknown exercise softmax"),
    (lambda d: d["exercises"]["atomic"].update({"points": "forty"}), "exercises.atomic.points"),
    (lambda d: d["exercises"]["atomic"].update({"points": -1}), "exercises.atomic.points"),
    (lambda d: d.update({"timeout": 0}), "timeout"),
    (lambda d: d.update({"dtype": "float16"}), "dtype"),
    (lambda d: d["cases"][0].update({"n": 1}), "cases.0.n"),
    (lambda d: d["cases"][0].update({"colour": "red"}), "cases.0.colour"),
    (lambda d: d["cases"].append(dict(d["cases"][0])), "unique"),
    (lambda d: d["exercises"]["train"].update({"check_points": {"W3": 1}}), "unknown check W3"),
    (lambda d: d["exercises"]["train"].update({"check_points": {"trajectory": 99}}), "more than points"),
])
def test_invalid_config_is_one_clear_line(tmp_path, mutate, expected):
    data = base()
    mutate(data)
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, data))
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_unreadable_configs(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(write(tmp_path, "exercises: [unclosed"))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- a list"))


def test_cli_exits_2_on_bad_config(tmp_path):
    data = base()
    data["exercises"]["softmax"] = {"points": 1}
    path = write(tmp_path, data)
    proc = subprocess.run([sys.executable, "-m", "grader", "grade", str(ROOT / "solutions"), "--config", str(path),
                           "--out", str(tmp_path / "r.json")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unknown exercise softmax" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r.json").exists()

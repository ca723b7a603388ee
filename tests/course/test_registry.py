"""The exercise registry and the loader of a course's own definition files (grading.yaml's `definitions`)."""

import pytest
import yaml

from conftest import ROOT
from grader.config import ConfigError, load_config
from grader.course.registry import BUILT_IN, EXERCISES
from grader.course.spec import Exercise, GradientCheck, NotInLecture, TrajectoryCheck

TANH = '''\
"""A course's own exercise: tanh's backward pass, dx from dout and y = tanh(x)."""

from grader.course.spec import Exercise, GradientCheck


def build(case, generator):
    import torch

    x = torch.randn(case.spec.n, case.spec.n_embd, generator=generator, dtype=case.dtype, requires_grad=True)
    y = torch.tanh(x)
    dout = torch.randn(y.shape, generator=generator, dtype=case.dtype)
    (y * dout).sum().backward()
    return {"dout": dout, "y": y.detach()}, {"x": x.grad}


EXERCISE = Exercise(id="tanh", title="tanh backward", file="tanh.py", function="tanh_backward",
                    tensor_args=("dout", "y"), checks=(GradientCheck("x"),), returns_dict=False, build=build)
'''

TANH_SOLUTION = "def tanh_backward(dout, y):\n    return dout * (1 - y**2)\n"


def course(folder, definition: str | None = TANH, definitions=("tanh_exercise.py",), exercises=None):
    """A course folder: grading.yaml (the repository's policy with its own exercises) and a definition file."""
    folder.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load((ROOT / "grading.yaml").read_text())
    data["definitions"] = list(definitions)
    data["exercises"] = exercises or {"tanh": {"points": 5}}
    if definition is not None:
        (folder / definitions[0]).write_text(definition)
    (folder / "grading.yaml").write_text(yaml.safe_dump(data))
    return folder / "grading.yaml"


def test_the_registry_lists_the_lectures_exercises_in_order():
    assert [ex.id for ex in BUILT_IN] == ["atomic", "cross_entropy", "batchnorm", "embedding", "train"]
    assert all(EXERCISES[ex.id] is ex for ex in BUILT_IN)
    train = EXERCISES["train"]
    assert isinstance(train.trajectory, TrajectoryCheck) and train.trajectory.params == train.gradient_checks
    assert [ex.id for ex in BUILT_IN if ex.cascades] == ["atomic"]


def test_a_course_grades_only_its_own_exercise(tmp_path):
    config = load_config(course(tmp_path / "c"))
    assert list(config.exercises) == ["tanh"] and EXERCISES["tanh"].origin == str(tmp_path / "c" / "tanh_exercise.py")
    assert isinstance(EXERCISES["tanh"].lecture, NotInLecture)  # the default: "not in this format"
    from grader.pipeline import build_cases

    cases = build_cases(config, None)
    assert all(list(c.references) == ["tanh"] and c.gradients == {} for c in cases)
    assert cases[0].grad_scale == float(cases[0].references["tanh"]["x"].abs().max())


def test_an_external_exercise_is_graded_end_to_end(tmp_path):
    from grader.pipeline import grade

    config = load_config(course(tmp_path / "c"))
    right = tmp_path / "right"
    right.mkdir()
    (right / "tanh.py").write_text(TANH_SOLUTION)
    report = grade(right, config, secret="s3cret")
    assert report.score == report.max_score == 5 and report.hidden_cases == "included"
    assert [e.id for e in report.exercises] == ["tanh"]


def test_adding_an_exercise_never_changes_another_exercises_cases(tmp_path):
    from grader.course.cases import build_case

    config = load_config(ROOT / "grading.yaml")
    load_config(course(tmp_path / "c"))
    spec = config.cases[1]
    alone = build_case(spec, config.dtype, config.train, [EXERCISES["train"]])
    together = build_case(spec, config.dtype, config.train, [EXERCISES["tanh"], *config.exercise_specs()])
    for name, tensor in alone.inputs.items():
        assert bool((together.inputs[name] == tensor).all()), name
    traj = alone.references["train"]["trajectory"]
    assert all(bool((together.references["train"]["trajectory"][k] == v).all()) for k, v in traj.items())


def test_the_fingerprint_follows_the_definitions_content(tmp_path):
    path = course(tmp_path / "c")
    first = load_config(path).fingerprint()
    (tmp_path / "c" / "tanh_exercise.py").write_text(TANH.replace("randn(y.shape", "rand(y.shape"))
    assert load_config(path).fingerprint() != first


@pytest.mark.parametrize("definition, definitions, expected", [
    (None, ("missing.py",), r"exercise definition file not found: .*missing\.py"),
    ("EXERCISE = (\n", ("tanh_exercise.py",), r"tanh_exercise\.py line 1: SyntaxError"),
    ("import math\n\nraise RuntimeError('no')\n", ("tanh_exercise.py",), r"tanh_exercise\.py line 3: RuntimeError: no"),
    ("X = 1\n", ("tanh_exercise.py",), r"tanh_exercise\.py: defines no EXERCISE"),
    ("EXERCISE = {'id': 'tanh'}\n", ("tanh_exercise.py",), r"tanh_exercise\.py: EXERCISE is a dict, not an Exercise"),
    (TANH.replace('checks=(GradientCheck("x"),)', 'checks=["x"]'), ("tanh_exercise.py",),
     r"tanh_exercise\.py line 1[67]: TypeError: exercise 'tanh': checks must be a tuple"),
    (TANH.replace('id="tanh"', 'id="atomic"'), ("tanh_exercise.py",),
     r"tanh_exercise\.py: exercise id 'atomic' is already the lecture's"),
    (TANH, ("tanh_exercise.py", "tanh_exercise.py"), r"exercise id 'tanh' is also defined in"),
    ("", ("notes.txt",), r"notes\.txt: an exercise definition is a Python file"),
    (TANH.replace("returns_dict=False, build=build", "returns_dict=False"), ("tanh_exercise.py",),
     r"tanh_exercise\.py: exercise 'tanh' has no build="),
])
def test_a_bad_definition_is_a_config_error_naming_the_file(tmp_path, definition, definitions, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(course(tmp_path / "c", definition, definitions))
    assert EXERCISES["atomic"] is BUILT_IN[0]  # nothing else is lost: the lecture's exercises stay as they are
    load_config(ROOT / "grading.yaml")  # and the course's own policy still loads


def test_grading_yaml_may_name_only_registered_exercises(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown exercise nope \(known: atomic, cross_entropy"):
        load_config(course(tmp_path / "c", exercises={"nope": {"points": 1}}))


@pytest.mark.parametrize("change, expected", [
    ({"id": "Bad Id"}, "exercise id 'Bad Id' must be lower-case"),
    ({"file": "dir/x.py"}, "must be a module name ending in .py"),
    ({"function": "class"}, "is not a Python identifier"),
    ({"tensor_args": ("a", "a")}, "distinct identifiers"),
    ({"checks": ()}, "at least one"),
    ({"checks": (3,)}, "checks must be GradientCheck"),
    ({"checks": (GradientCheck("x"), GradientCheck("x"))}, "two checks have the same name"),
    ({"checks": (GradientCheck("x"), GradientCheck("y"))}, "returns one tensor has exactly one GradientCheck"),
    ({"build": 42}, "build must be a function"),
    ({"lecture": 3}, "lecture must be LectureSection"),
    ({"private_inputs": ("z",)}, "private_inputs must be tensor_args"),
])
def test_a_malformed_exercise_says_what_is_wrong(change, expected):
    fields = dict(id="t", title="t", file="t.py", function="f", tensor_args=("a",), checks=(GradientCheck("x"),),
                  returns_dict=False, build="m:f")
    with pytest.raises(TypeError, match=expected):
        Exercise(**{**fields, **change})


def test_a_plan_carries_check_kinds_not_ids(config):
    plan = EXERCISES["train"].plan(config)
    assert plan["checks"][-1] == {"kind": "trajectory", "name": "trajectory", "params": list(EXERCISES["train"].gradient_checks),
                                  "steps": config.train.steps, "lr": config.train.lr}
    assert {c["kind"] for c in plan["checks"][:-1]} == {"gradient"}


def test_a_config_unpickled_elsewhere_registers_its_exercises_again(tmp_path):
    """Batch grading on Dask sends the config to other processes: the course's exercises go with it."""
    import pickle

    config = load_config(course(tmp_path / "c"))
    blob = pickle.dumps(config)
    del EXERCISES["tanh"]
    again = pickle.loads(blob)
    assert again.fingerprint() == config.fingerprint() and EXERCISES["tanh"].origin.endswith("tanh_exercise.py")


@pytest.mark.parametrize("change, expected", [
    (("y = torch.tanh(x)", "y = torch.tanh(x) / 0 + undefined_name"),
     r"exercise tanh \(.*tanh_exercise\.py\) line 10: its build failed on case lecture: NameError"),
    (('return {"dout": dout, "y": y.detach()}, {"x": x.grad}', 'return {"dout": dout}'),
     r"tanh_exercise\.py\): build must return \(inputs, references\), two dicts"),
    (('return {"dout": dout, "y": y.detach()}, {"x": x.grad}', 'return {"dout": dout}, {"x": x.grad}'),
     r"tanh_exercise\.py\): build made no input y"),
    (('return {"dout": dout, "y": y.detach()}, {"x": x.grad}', 'return {"dout": dout, "y": y.detach()}, {}'),
     r"build made no reference for x"),
    (('return {"dout": dout, "y": y.detach()}, {"x": x.grad}', 'return {"dout": dout, "y": [1.0]}, {"x": x.grad}'),
     r"build's inputs must be tensors \(y are not\)"),
])
def test_a_broken_build_is_a_config_error_naming_the_file(tmp_path, change, expected):
    from grader.pipeline import build_cases

    config = load_config(course(tmp_path / "c", TANH.replace(*change)))
    with pytest.raises(ConfigError, match=expected):
        build_cases(config, None)


def test_two_exercises_may_not_give_one_input_name_two_values(tmp_path):
    from grader.pipeline import build_cases

    other = TANH.replace('id="tanh"', 'id="tanh2"').replace('file="tanh.py"', 'file="tanh2.py"').replace(
        "torch.tanh(x)", "torch.tanh(2 * x)")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "second.py").write_text(other)
    config = load_config(course(tmp_path / "c", TANH, ("tanh_exercise.py", "second.py"),
                                {"tanh": {"points": 1}, "tanh2": {"points": 1}}))
    with pytest.raises(ConfigError, match=r"exercise tanh2 .*its input 'dout' differs from exercise tanh's"):
        build_cases(config, None)

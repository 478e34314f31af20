"""Bad input, tried systematically: every entry point's CLI command with wrong types, values out
of range, unknown names, empty required values, missing paths and runs of the wrong role. Each
must end with exit status 2 and one line naming the bad value, and leave no run it started RUNNING.

Each test stands alone: the tracking store is shared by the module, so a test judges only the
runs it started itself."""
from decimal import Decimal

import pytest
from click.testing import CliRunner
from conftest import LINEAGE_EXPERIMENT, TINY
from hypothesis import given, settings
from hypothesis import strategies as st

from kdtrack import tracking
from kdtrack.cli.main import main
from kdtrack.config import ENTRY_POINTS, field_types

COMMANDS = {"train_teacher": "train-teacher", "distill": "distill", "switch": "switch", "analyze": "analyze",
            "ablate": "ablate", "theory": "theory"}


def invoke(command: str, params: dict[str, str]):
    args = [command] + [item for k, v in params.items() for item in ("-P", f"{k}={v}")]
    return CliRunner().invoke(main, args)


def assert_one_line_error(result, *named: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = [line for line in result.output.splitlines() if line.startswith("kdtrack: error:")]
    assert len(lines) == 1, result.output
    # The error is the last thing written: no traceback and no second line of the message after it.
    assert result.stderr.splitlines()[-1] == lines[0], result.stderr
    for text in named:
        assert text in lines[0], (text, lines[0])


def experiment_ids() -> list[str]:
    return [e.experiment_id for e in tracking.client().search_experiments()]


def runs_in_store() -> set[str]:
    return {run.info.run_id for run in tracking.search_all(experiment_ids(), "")}


def assert_none_left_running(earlier: set[str]) -> None:
    """No run started since `earlier` (the store's run ids then) is still RUNNING."""
    running = tracking.search_all(experiment_ids(), "attributes.status = 'RUNNING'")
    assert not [run.info.run_id for run in running if run.info.run_id not in earlier]


CASES = [
    ("train_teacher", {"lr": "fast"}, ["lr='fast'", "a finite number"]),
    ("train_teacher", {"lr": "-1"}, ["lr=-1.0", "> 0"]),
    ("train_teacher", {"batch_size": "0"}, ["batch_size=0", ">= 1"]),
    ("train_teacher", {"batch_size": "2.5"}, ["batch_size='2.5'", "integer"]),
    ("train_teacher", {"dataset": "imagenet21k"}, ["dataset='imagenet21k'", "mnist5k"]),
    ("train_teacher", {"arch": "transformer"}, ["arch='transformer'", "mlp"]),
    ("train_teacher", {"preset": "nope"}, ["preset='nope'", "mnist_mlp"]),
    ("train_teacher", {"colour": "red"}, ["'colour'", "allowed"]),
    ("train_teacher", {"label_noise": "1.5"}, ["label_noise=1.5", "< 1"]),
    ("train_teacher", {"arch": "cnn", "depth": "5"}, ["depth=5", "28x28", "depth <= 4"]),
    ("distill", {"arch": "cnn", "depth": "5"}, ["depth=5", "depth <= 4"]),
    ("distill", {"teacher_arch": "cnn", "teacher_depth": "6"}, ["teacher_depth=6", "teacher_depth <= 4"]),
    ("train_teacher", {"dataset": "cifar10", "data_dir": "/no/such/dir"}, ["/no/such/dir"]),
    ("train_teacher", {"train_size": "999999"}, ["train_size=999999"]),
    ("train_teacher", {"dataset": "qqp", "arch": "roberta_small", "width": "129"}, ["width=129", "multiple of 64"]),
    ("distill", {"temperature": "0"}, ["temperature=0.0", "> 0"]),
    ("distill", {"distill_weight": "1.5"}, ["distill_weight=1.5", "<= 1"]),
    ("distill", {"same_init": "maybe"}, ["same_init='maybe'", "true or false"]),
    ("distill", {"teacher_run_id": "0123456789abcdef"}, ["'0123456789abcdef'", "does not exist"]),
    ("switch", {"switch_to": "sideways"}, ["switch_to='sideways'", "onehot"]),
    ("switch", {"switch_at": "2.5"}, ["switch_at=2.5"]),
    ("switch", {"extend_to": "1"}, ["extend_to=1"]),
    ("switch", {"from_run_id": "feedfeedfeed"}, ["'feedfeedfeed'", "does not exist"]),
    ("analyze", {}, ["student_run_id", "experiment"]),
    ("analyze", {"experiment": "never-made"}, ["experiment='never-made'", "does not exist"]),
    ("analyze", {"quantile": "0.9"}, ["quantile=0.9", "0.5"]),
    ("ablate", {"knob": "colour"}, ["knob='colour'"]),
    ("ablate", {"knob": "lr", "values": "0.1,x"}, ["lr='x'"]),
    ("ablate", {"direction": "up"}, ["direction='up'", "maximize"]),
    ("theory", {"n": "10", "p": "5"}, ["p=5", "> n"]),
    ("theory", {"seed": "-1"}, ["seed=-1", "0..4294967295"]),
    # issue 16, item 6: each of these used to end in a traceback or a memory error
    ("train_teacher", {"seed": "-1"}, ["seed=-1", "0..4294967295"]),
    ("train_teacher", {"seed": "1e20"}, ["seed='1e20'", "integer"]),
    ("train_teacher", {"train_size": "0"}, ["train_size=0", "no test points", "mnist5k", "1..4999"]),
    ("train_teacher", {"epochs": "1e9"}, ["epochs=1000000000.0", "at most 100000000 steps"]),
    ("train_teacher", {"width": "100000000"}, ["width=100000000", "GiB to train", "this machine has"]),
    ("distill", {"width": "100000000"}, ["width=100000000", "GiB to train"]),
    ("distill", {"teacher_arch": "mlp", "teacher_width": "100000000"}, ["teacher_width=100000000", "GiB"]),
    ("ablate", {"knob": "lr", "values": ",,,"}, ["values=',,,'", "no value"]),
    # issue 20: the confidence-aware KD targets (paper §7)
    ("distill", {"kd_target": "soft"}, ["kd_target='soft'", "confidence_weighted"]),
    ("distill", {"kd_target": "confidence_weighted", "confidence_power": "-1"}, ["confidence_power=-1.0", ">= 0"]),
    ("distill", {"kd_target": "confidence_tempered", "confidence_spread": "inf"},
     ["confidence_spread='inf'", "finite"]),
    ("distill", {"confidence_power": "2"}, ["confidence_power=2.0", "kd_target=confidence_weighted"]),
    ("distill", {"kd_target": "confidence_weighted", "confidence_spread": "1"},
     ["confidence_spread=1.0", "kd_target=confidence_tempered"]),
    ("distill", {"kd_target": "confidence_tempered", "confidence_spread": "1", "distill_weight": "0"},
     ["kd_target=confidence_tempered", "distill_weight=0"]),
    ("switch", {"kd_target": "confidence_weighted", "confidence_power": "-0.5"}, ["confidence_power=-0.5"]),
    ("ablate", {"knob": "confidence_power", "kd_target": "confidence_tempered"},
     ["knob=confidence_power", "kd_target=confidence_weighted"]),
    # issue 32: the KD methods beside plain KD
    ("distill", {"kd_loss": "crd"}, ["kd_loss='crd'", "dist, dkd, kd, ls"]),
    ("distill", {"kd_loss": "dkd", "kd_target": "confidence_weighted", "confidence_power": "1"},
     ["kd_loss=dkd", "kd_target=confidence_weighted", "kd_target=standard"]),
    ("distill", {"dkd_beta": "4"}, ["dkd_beta=4.0", "kd_loss=dkd", "not kd_loss=kd"]),
    ("distill", {"kd_loss": "ls", "dist_gamma": "2"}, ["dist_gamma=2.0", "kd_loss=dist", "not kd_loss=ls"]),
    ("distill", {"kd_loss": "dkd", "dkd_alpha": "-1"}, ["dkd_alpha=-1.0", ">= 0"]),
    ("distill", {"kd_loss": "ls", "distill_weight": "0"}, ["kd_loss=ls", "distill_weight=0"]),
    ("switch", {"kd_loss": "dist", "nproc_per_node": "2"}, ["kd_loss=dist", "nproc_per_node=2", "nproc_per_node=1"]),
    ("ablate", {"knob": "dkd_beta", "values": "1,8"}, ["knob=dkd_beta", "kd_loss=dkd"]),
    # issue 32: an outside pair (kdtrack/pipeline/outside.py; tests/pipeline/test_outside.py has the rest)
    ("analyze", {"teacher": "runs:/0a1b/model"}, ["student=''", "teacher is given"]),
    ("analyze", {"teacher": "mlp:/no/such.pt", "student": "mlp:/no/such.pt", "dataset": "mnist5k"},
     ["teacher='mlp:/no/such.pt'", "no state dict file"]),
]


def test_the_cases_try_every_entry_point_through_its_command():
    """What the parametrized test below covers is a property of CASES, checked here without running it."""
    assert set(COMMANDS) == set(ENTRY_POINTS)
    assert set(COMMANDS.values()) <= set(main.commands)
    assert {entry for entry, _, _ in CASES} == set(ENTRY_POINTS)
    assert all(named for _, _, named in CASES)  # every case says what its error must name


@pytest.mark.parametrize("entry, params, named", CASES, ids=[f"{e}-{'-'.join(p) or 'empty'}" for e, p, _ in CASES])
def test_bad_input_is_one_line_and_starts_nothing(store, entry, params, named):
    base = dict(TINY) if entry in ("train_teacher", "distill", "switch", "ablate") else {}
    earlier = runs_in_store()
    assert_one_line_error(invoke(COMMANDS[entry], {**base, **params}), *named)
    assert_none_left_running(earlier)


def test_runs_of_the_wrong_role_or_experiment_are_refused(lineage):
    earlier = runs_in_store()
    student, teacher = lineage.student, lineage.teacher
    assert_one_line_error(invoke("distill", {**TINY, "teacher_run_id": student}), student, "is a student run")
    assert_one_line_error(invoke("analyze", {"student_run_id": teacher}), teacher, "is a teacher run")
    assert_one_line_error(invoke("switch", {**TINY, "from_run_id": teacher}), teacher, "starts from a student run")
    assert_one_line_error(invoke("analyze", {"student_run_id": student, "experiment": "Default"}),
                          student, f"belongs to experiment '{LINEAGE_EXPERIMENT}'")
    assert_none_left_running(earlier)


NUMERIC = {name: kind for name, kind in field_types(ENTRY_POINTS["distill"]).items() if kind in (int, float)}


@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from(sorted(NUMERIC)), base=st.sampled_from([{}, TINY]),
       raw=st.one_of(st.text(max_size=8), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                     st.integers(-10**6, -1).map(str)))
def test_generated_values_either_parse_or_fail_in_one_line(name, base, raw):
    """Whatever string arrives for a numeric field, the config either takes that value (a blank one
    means the preset's) and is valid, or says which value is wrong in one line: never a traceback.
    (Only config parsing runs: dry by design, so no tracking store.)"""
    from kdtrack.config import DistillConfig, from_params
    from kdtrack.errors import UserError

    try:
        config = from_params(DistillConfig, {**base, name: raw})
    except UserError as error:
        assert "\n" not in str(error) and name in str(error)
    else:
        others = {k: v for k, v in base.items() if k != name}  # a blank value counts as not given
        if not raw.strip():
            expected = getattr(from_params(DistillConfig, others), name)
        else:  # integers never go through a float
            expected = int(Decimal(raw.strip())) if NUMERIC[name] is int else float(raw)
        assert getattr(config, name) == expected, (name, raw)
        assert config.lr > 0 and config.temperature > 0 and 0 <= config.distill_weight <= 1


def test_an_unreachable_store_is_one_line_before_training(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on the discard port
    result = invoke("train-teacher", TINY)
    assert_one_line_error(result, "'http://127.0.0.1:9'", "is unreachable")


def test_unreachable_store_is_one_line_for_runs_and_suite_status(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    for args in (["runs", "--experiment", "x"], ["suite", "status", "table7"]):
        assert_one_line_error(CliRunner().invoke(main, args), "'http://127.0.0.1:9'", "unreachable")


def test_a_parameter_given_twice_is_refused(store):
    earlier = runs_in_store()
    args = ["train-teacher", *[i for k, v in TINY.items() for i in ("-P", f"{k}={v}")], "-P", "seed=1", "-P", "seed=2"]
    assert_one_line_error(CliRunner().invoke(main, args), "-P seed is given twice", "'1', then '2'")
    assert_none_left_running(earlier)


def test_a_deleted_run_is_refused_wherever_a_run_id_is_taken(store):
    """`mlflow runs delete` leaves the run readable by id: it looked like a finished teacher."""
    client = tracking.client()
    experiment = client.create_experiment("deleted-runs")
    ids = {}
    for role in ("teacher", "student"):
        run = client.create_run(experiment, tags={"kdtrack.role": role})
        client.set_terminated(run.info.run_id, "FINISHED")
        client.delete_run(run.info.run_id)
        ids[role] = run.info.run_id
    earlier = runs_in_store()
    for command, param, role in (("distill", "teacher_run_id", "teacher"), ("switch", "from_run_id", "student")):
        result = invoke(command, {**TINY, param: ids[role]})
        assert_one_line_error(result, f"run id {ids[role]!r} was deleted", "mlflow runs restore")
    assert_one_line_error(invoke("analyze", {"student_run_id": ids["student"]}), "was deleted")
    assert_none_left_running(earlier)


QUOTED = ["bob's", 'say "hi"', "back\\slash", "a''b", "x' or '1'='1", "pct%_", "tab\tnew\nline"]


@pytest.mark.parametrize("value", QUOTED)
def test_filters_quote_the_values_they_match(store, value):
    """MLflow's filter grammar takes a value verbatim between quotes (no escapes): each value is
    found exactly, in a real SQLite store, and only it."""
    client = tracking.client()
    experiment = tracking.experiment_id("quoting") or client.create_experiment("quoting")
    for text in (value, value + "x", "other"):
        client.create_run(experiment, tags={"probe": text, "case": value})
    found = tracking.search_all([experiment], f"tags.`probe` = {tracking.quoted(value)} and "
                                f"tags.`case` = {tracking.quoted(value)}")
    assert [run.data.tags["probe"] for run in found] == [value]


def test_a_value_no_filter_can_hold_is_refused(store):
    from kdtrack.errors import UserError

    with pytest.raises(UserError, match="holds both ' and \""):
        tracking.quoted("""both ' and " """)


def test_an_experiment_with_a_quote_in_its_name_is_studied(store):
    """`kdtrack ablate --experiment "bob's"` failed on an invalid filter after the study was made.
    The study run is found again by its (quoted) name: a second worker shares it."""
    from kdtrack.tracking import RunContext

    experiment = tracking.client().create_experiment("bob's")
    with tracking.study_run(experiment, "bob's-mnist_mlp-lr", {}, RunContext()) as first:
        pass
    with tracking.study_run(experiment, "bob's-mnist_mlp-lr", {}, RunContext()) as second:
        pass
    assert first.run_id == second.run_id
    both = invoke("ablate", {**TINY, "knob": "lr", "values": "0.1", "study": """both ' and " """})
    assert_one_line_error(both, "holds both")

"""The entry points' dataclasses: the MLproject generated from them, the paper's presets, and
overrides on top of a preset. Bad values, typed or generated, are tried in test_bad_input.py."""
from dataclasses import fields
from pathlib import Path

import yaml

from kdtrack.config import ENTRY_POINTS, KD_LOSS_WEIGHTS, DistillConfig, SwitchConfig, from_params, key_params
from kdtrack.presets import PRESETS

# The repository's own MLproject, wherever pytest is started from.
MLPROJECT = Path(__file__).resolve().parents[2] / "MLproject"


def test_mlproject_is_generated_from_the_dataclasses():
    from kdtrack.cli.mlproject import render

    assert MLPROJECT.read_text() == render(), "run: .venv/bin/python -m kdtrack.cli.mlproject > MLproject"


def test_mlproject_parameters_mirror_the_dataclasses():
    project = yaml.safe_load(MLPROJECT.read_text())
    for name, cls in ENTRY_POINTS.items():
        declared = project["entry_points"][name]["parameters"]
        assert list(declared) == [f.name for f in fields(cls)]
        for f in fields(cls):
            assert str(declared[f.name]["default"]) in ("", str(f.default))
            assert f"--{f.name} {{{f.name}}}" in project["entry_points"][name]["command"]


def test_presets_equal_table7():
    rf = from_params(DistillConfig, {"preset": "noisy_mnist_rf"})
    mlp = from_params(DistillConfig, {"preset": "mnist_mlp"})
    assert (rf.arch, rf.width, rf.depth, rf.train_size, rf.batch_size, rf.epochs, rf.label_noise, rf.lr,
            rf.distill_weight, rf.temperature, rf.optimizer) == (
        "random_features", 5000, 1, 128, 128, 40, 0.25, 1e-3, 1.0, 4.0, "adam")
    assert (mlp.arch, mlp.width, mlp.depth, mlp.train_size, mlp.batch_size, mlp.epochs, mlp.label_noise, mlp.lr,
            mlp.distill_weight, mlp.temperature, mlp.optimizer) == (
        "mlp", 1000, 2, 128, 32, 20, 0.0, 1e-4, 1.0, 4.0, "adam")
    assert set(PRESETS) >= {"noisy_mnist_rf", "mnist_mlp", "cifar10_cnn"}


def test_overrides_win_over_the_preset():
    config = from_params(DistillConfig, {"preset": "noisy_mnist_rf", "lr": "0.5", "same_init": "false"})
    assert config.lr == 0.5 and config.same_init is False and config.label_noise == 0.25


def test_integers_are_parsed_exactly_never_through_a_float():
    """"9007199254740993" (2**53 + 1) used to come back as ...992; exponent notation is taken
    only where it is exactly an integer."""
    import pytest

    from kdtrack.config import TrainConfig, parse_value
    from kdtrack.errors import UserError

    assert parse_value("log_every", "9007199254740993", int) == 9007199254740993
    assert from_params(TrainConfig, {"log_every": "9007199254740993"}).log_every == 9007199254740993
    assert parse_value("steps", "1e3", int) == 1000 and parse_value("steps", "2.0", int) == 2
    for raw in ("1.5", "1e-3", "1e400", "nan", "inf", "0x10", ""):
        with pytest.raises(UserError, match=r"is not an integer"):
            parse_value("steps", raw, int)


def test_seeds_are_what_numpy_and_sklearn_take():
    import pytest

    from kdtrack.config import AblateConfig, TheoryConfig, TrainConfig
    from kdtrack.errors import UserError

    assert from_params(TrainConfig, {"seed": str(2**32 - 1)}).seed == 2**32 - 1
    for raw in ("-1", str(2**32), "1e20"):
        with pytest.raises(UserError, match=r"seed=.*(out of range|not an integer)"):
            from_params(TrainConfig, {"seed": raw})
    with pytest.raises(UserError, match=r"seed=-1 is out of range; allowed: an integer in 0..4294967295"):
        TheoryConfig(seed=-1)
    with pytest.raises(UserError, match=r"seeds=2 is out of range"):  # its second seed would be 2**32
        AblateConfig(seed=2**32 - 1, seeds=2)


def test_an_empty_grid_is_refused():
    import pytest

    from kdtrack.config import AblateConfig
    from kdtrack.errors import UserError

    with pytest.raises(UserError, match=r"values=',,,' holds no value"):
        from_params(AblateConfig, {"knob": "lr", "values": ",,,"})


def test_the_training_length_is_capped():
    import pytest

    from kdtrack.config import MAX_STEPS, SwitchConfig, TrainConfig
    from kdtrack.errors import UserError
    from kdtrack.training.state import Plan

    with pytest.raises(UserError, match=rf"epochs=1000000000.0 is 4000000000 steps .* at most {MAX_STEPS} steps"):
        Plan.of(from_params(TrainConfig, {"epochs": "1e9", "batch_size": "32"}), 128)
    with pytest.raises(UserError, match=r"steps=100000001 is out of range"):
        from_params(TrainConfig, {"steps": str(MAX_STEPS + 1)})
    with pytest.raises(UserError, match=r"extend_to=100000001 is out of range"):
        from_params(SwitchConfig, {"extend_to": str(MAX_STEPS + 1)})


def test_a_parameter_given_twice_is_refused_by_the_commands_and_the_entry_point_scripts():
    """One parser of KEY=VALUE items serves `kdtrack ... -P` and the scripts' `--KEY VALUE`."""
    import pytest

    from kdtrack.cli.entry import parse_args, parse_params
    from kdtrack.config import TrainConfig
    from kdtrack.errors import UserError

    assert parse_params(["seed=1", " lr=0.1=x", "tokenizer="]) == {"seed": "1", "lr": "0.1=x", "tokenizer": ""}
    with pytest.raises(UserError, match=r"^-P seed is given twice \('1', then '2'\)"):
        parse_params(["seed=1", "seed =2"])
    with pytest.raises(UserError, match=r"^-P 'seed' is not KEY=VALUE$"):
        parse_params(["seed"])
    assert parse_args(TrainConfig, ["--lr", "0.1", "--seed", ""]) == {"lr": "0.1"}
    with pytest.raises(UserError, match=r"--lr is given twice \('0.1', then '0.2'\)"):
        parse_args(TrainConfig, ["--lr", "0.1", "--lr", "0.2"])


def test_the_entry_point_scripts_help_shows_each_fields_help(capsys):
    """argparse %-formats help texts: a field's "5%" must come out as it is."""
    import pytest

    from kdtrack.cli.entry import parse_args
    from kdtrack.config import TrainConfig

    with pytest.raises(SystemExit) as done:
        parse_args(TrainConfig, ["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert done.value.code == 0 and "evaluation every N steps; 0 = within a 5% compute budget (default: 0)" in shown


def test_every_field_declares_its_meaning_and_its_default_is_allowed():
    """The metadata `kdtrack params`, MLproject and the validation read: a help for each field, and
    a rule its own default passes (check_fields lets defaults through without asking)."""
    from kdtrack.config import allowed_values

    for cls in ENTRY_POINTS.values():
        for spec in fields(cls):
            rule = spec.metadata
            assert rule["help"] and not (rule["check"] and not rule["allowed"]), (cls.__name__, spec.name)
            assert rule["check"] is None or rule["check"](spec.default), (cls.__name__, spec.name)
            assert not rule["choices"] or spec.default in rule["choices"] or spec.default == "", spec.name
            assert spec.type == "bool" or allowed_values(spec) or not (rule["check"] or rule["choices"]), spec.name


def test_model_memory_is_estimated_before_anything_is_allocated(monkeypatch):
    import pytest

    from kdtrack.errors import UserError
    from kdtrack.models import build, build_model, check_memory

    check_memory("mlp", (1, 28, 28), 10, 32)  # fits: no error
    monkeypatch.setattr(build, "least_parameters", lambda *args: 0)  # the count on the meta device
    with pytest.raises(UserError, match=r"arch='mlp' with width=100000000 and depth=0 needs \d+\.\d GiB to train "
                                        r".*this machine has \d+\.\d GiB"):
        build_model("mlp", (1, 28, 28), 10, 100_000_000)
    with pytest.raises(UserError, match=r"teacher_arch='cnn' with teacher_width=10000000"):
        check_memory("cnn", (1, 28, 28), 10, 10_000_000, 0, "teacher_")


def test_a_huge_model_is_refused_by_arithmetic_before_anything_is_built(monkeypatch):
    """Issue 30, case 4: a million layers took minutes to build on the meta device before the
    refusal; the bound now refuses it without building a layer."""
    import pytest

    from kdtrack.errors import UserError
    from kdtrack.models import build, check_memory

    # hand-counted: 784 x 1000 + 1000 x 1000 + 1000 x 10 weights, biases left out of the bound
    assert build.least_parameters("mlp", (1, 28, 28), 10, 0, 0) == 784_000 + 1_000_000 + 10_000
    assert build.least_parameters("random_features", (1, 28, 28), 10, 0, 0) == 50_000  # the head only
    assert build.least_parameters("resnet18", (3, 32, 32), 10, 0, 0) == 0  # fixed size: left to the count
    monkeypatch.setattr(build, "_build", lambda *args, **kwargs: pytest.fail("built a layer"))
    for width, depth in ((0, 1_000_000), (10**10, 0)):
        with pytest.raises(UserError, match=r"needs at least [\d.e+]+ GiB to train; this machine has"):
            check_memory("mlp", (1, 28, 28), 10, width, depth)
    with pytest.raises(UserError, match="teacher_width=1000000 .*needs at least"):
        check_memory("resnet56", (3, 32, 32), 10, 1_000_000, 0, "teacher_")


def test_plain_kd_keeps_the_reuse_key_it_had_before_kd_loss():
    """kd_loss=kd (the default) and the methods' weights are not in plain KD's key, which is then
    the one a run stored before those fields had; a method's key holds it and its own weights only."""
    added = {"kd_loss", *(name for names in KD_LOSS_WEIGHTS.values() for name in names)}
    for config in (DistillConfig(), SwitchConfig(), DistillConfig(temperature=2.0)):
        assert not added & set(key_params(config))
    dkd = key_params(DistillConfig(kd_loss="dkd", dkd_beta=4.0))
    assert (dkd["kd_loss"], dkd["dkd_alpha"], dkd["dkd_beta"]) == ("dkd", "1.0", "4.0")
    assert not {"dist_beta", "dist_gamma"} & set(dkd)
    assert key_params(DistillConfig(kd_loss="ls"))["kd_loss"] == "ls"
    assert not (added - {"kd_loss"}) & set(key_params(DistillConfig(kd_loss="ls")))

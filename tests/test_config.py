from dataclasses import fields

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from kdtrack.config import ENTRY_POINTS, DistillConfig, TrainConfig, from_params
from kdtrack.errors import UserError
from kdtrack.presets import PRESETS

def test_mlproject_is_generated_from_the_dataclasses():
    from kdtrack.mlproject import render

    assert open("MLproject").read() == render(), "run: .venv/bin/python -m kdtrack.mlproject > MLproject"


def test_mlproject_parameters_mirror_the_dataclasses():
    project = yaml.safe_load(open("MLproject"))
    for name, cls in ENTRY_POINTS.items():
        declared = project["entry_points"][name]["parameters"]
        assert list(declared) == [f.name for f in fields(cls)]
        for f in fields(cls):
            assert str(declared[f.name]["default"]) in ("", str(f.default))
            assert f"--{f.name} {{{f.name}}}" in project["entry_points"][name]["command"]


def test_presets_equal_table7():
    rf, mlp = from_params(DistillConfig, {"preset": "noisy_mnist_rf"}), from_params(DistillConfig, {"preset": "mnist_mlp"})
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


@pytest.mark.parametrize("params, named", [
    ({"dataset": "imagenet21k"}, "dataset='imagenet21k'"),
    ({"arch": "transformer"}, "arch='transformer'"),
    ({"preset": "nope"}, "preset='nope'"),
    ({"lr": "-1"}, "lr=-1.0"),
    ({"lr": "abc"}, "lr='abc'"),
    ({"temperature": "0"}, "temperature=0.0"),
    ({"distill_weight": "1.5"}, "distill_weight=1.5"),
    ({"batch_size": "2.5"}, "batch_size='2.5'"),
    ({"same_init": "maybe"}, "same_init='maybe'"),
    ({"colour": "red"}, "'colour'"),
])
def test_bad_values_are_one_line_errors_naming_the_value(params, named):
    with pytest.raises(UserError) as error:
        from_params(DistillConfig, params)
    assert named in str(error.value) and "\n" not in str(error.value)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["lr", "temperature", "distill_weight", "label_noise", "batch_size", "epochs"]),
       st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=8)))
def test_any_value_either_builds_a_valid_config_or_fails_cleanly(name, raw):
    try:
        config = from_params(DistillConfig, {name: raw})
    except UserError as error:
        assert name in str(error) and "\n" not in str(error)
    else:
        assert config.lr > 0 and config.temperature > 0 and 0 <= config.distill_weight <= 1

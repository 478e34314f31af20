"""The entry points' dataclasses: the MLproject generated from them, the paper's presets, and
overrides on top of a preset. Bad values, typed or generated, are tried in test_bad_input.py."""
from dataclasses import fields
from pathlib import Path

import yaml

from kdtrack.config import ENTRY_POINTS, DistillConfig, from_params
from kdtrack.presets import PRESETS

# The repository's own MLproject, wherever pytest is started from.
MLPROJECT = Path(__file__).resolve().parents[1] / "MLproject"


def test_mlproject_is_generated_from_the_dataclasses():
    from kdtrack.mlproject import render

    assert MLPROJECT.read_text() == render(), "run: .venv/bin/python -m kdtrack.mlproject > MLproject"


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

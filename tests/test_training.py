import dataclasses

import pytest
import torch

from kdtrack.config import TrainConfig
from kdtrack.data import load_dataset
from kdtrack.models import build_model
from kdtrack.schedules import constant_weights, learning_rate
from kdtrack.training import NonFiniteLoss, Plan, fit, predict


def test_schedule_closed_forms():
    assert learning_rate(0, 100, 1.0, 10, "cosine") == pytest.approx(0.1)
    assert learning_rate(10, 100, 1.0, 10, "cosine") == pytest.approx(1.0)
    assert learning_rate(55, 100, 1.0, 10, "cosine") == pytest.approx(0.5)
    assert learning_rate(80, 100, 1.0, 0, "step", 0.1, (0.5, 0.75)) == pytest.approx(0.01)
    assert learning_rate(50, 100, 2.0, 0, "linear") == pytest.approx(1.0)


def test_the_loop_fits_a_tiny_training_set_without_tracking():
    data = load_dataset("mnist5k", "", False, 32, 0.0, seed=0)
    config = TrainConfig(train_size=32, width=64, epochs=30, batch_size=32, lr=1e-3)
    torch.manual_seed(0)
    model = build_model("mlp", data.input_shape, 10, 64)
    fit(model, data, config, constant_weights(Plan.of(config, 32).total_steps, 0.0))
    assert (predict(model, data.x_train).argmax(1) == data.y_train).float().mean() == 1.0


def test_a_non_finite_loss_stops_with_its_step():
    data = load_dataset("mnist5k", "", False, 32, 0.0, seed=0)
    broken = dataclasses.replace(data, x_train=torch.full_like(data.x_train, float("nan")))
    config = TrainConfig(train_size=32, width=8, epochs=1, batch_size=16)
    with pytest.raises(NonFiniteLoss, match="step 1"):
        fit(build_model("mlp", data.input_shape, 10, 8), broken, config, constant_weights(2, 0.0))

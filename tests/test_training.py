import copy
import dataclasses

import pytest
import torch

from kdtrack.config import TrainConfig
from kdtrack.data import load_dataset
from kdtrack.models import build_model
from kdtrack.schedules import constant_weights, learning_rate
from kdtrack.training import NonFiniteLoss, Plan, fit, predict

from datafixtures import write_tinyimagenet


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


def test_compile_trains_the_same_model():
    """`compile=true` wraps the forward pass in torch.compile; the weights it trains (and saves)
    are the eager model's, equal up to kernel rounding."""
    data = load_dataset("mnist5k", "", False, 32, 0.0, seed=0)
    trained = []
    for compiled in (False, True):
        config = TrainConfig(train_size=32, width=16, epochs=3, batch_size=16, lr=1e-3, compile=compiled)
        torch.manual_seed(0)
        model = build_model("mlp", data.input_shape, 10, 16)
        fit(model, data, config, constant_weights(Plan.of(config, 32).total_steps, 0.0))
        trained.append(model.state_dict())
    assert trained[0].keys() == trained[1].keys()  # no `_orig_mod.` prefixes in what is saved
    for name in trained[0]:
        torch.testing.assert_close(trained[0][name], trained[1][name], rtol=1e-4, atol=1e-5)


def test_a_non_finite_loss_stops_with_its_step():
    data = load_dataset("mnist5k", "", False, 32, 0.0, seed=0)
    broken = dataclasses.replace(data, x_train=torch.full_like(data.x_train, float("nan")))
    config = TrainConfig(train_size=32, width=8, epochs=1, batch_size=16)
    with pytest.raises(NonFiniteLoss, match="step 1"):
        fit(build_model("mlp", data.input_shape, 10, 8), broken, config, constant_weights(2, 0.0))


class Recorder:
    """A RunLog that keeps copies of the checkpoints."""

    def __init__(self):
        self.states = {}

    def metrics(self, values, step): ...
    def snapshot(self, step, logits): ...
    def observe(self, step, model): ...

    def checkpoint(self, step, state, keep):
        self.states[step] = copy.deepcopy(state)


@pytest.mark.parametrize("kind", ["tensors", "folders"])
def test_augmented_distillation_resumes_bit_identically(kind, tmp_path):
    """Crops and flips are drawn from a generator the checkpoint carries (tensors on the device)
    or from a seed per image (folder data read by DataLoader workers); the teacher runs on the
    augmented batch. A run resumed at step 4 ends with the weights of an uninterrupted one."""
    torch.manual_seed(0)
    if kind == "folders":
        write_tinyimagenet(tmp_path, per_class=16)
        data = load_dataset("tinyimagenet", str(tmp_path), False, 48, 0.0, seed=0, image_size=16, workers=2)
    else:
        data = load_dataset("mnist5k", "", False, 48, 0.0, seed=0)
    config = TrainConfig(train_size=48, arch="cnn", width=4, depth=1, epochs=2, batch_size=16, lr=1e-2,
                         augment=True, eval_every=2)
    teacher = build_model("cnn", data.input_shape, data.num_classes, 4, 1).eval()
    logits = {"train": predict(teacher, data.x_train), "test": predict(teacher, data.x_test)}
    weights = constant_weights(Plan.of(config, 48).total_steps, 1.0)

    def run(resume=None):
        torch.manual_seed(1)
        model, log = build_model("cnn", data.input_shape, data.num_classes, 4, 1), Recorder()
        fit(model, data, config, weights, logits, 4.0, log=log, resume=resume, teacher=teacher)
        return model, log

    whole, log = run()
    resumed, _ = run(resume=log.states[4])  # mid-epoch: 3 steps per epoch
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    plain = dataclasses.replace(config, augment=False)
    torch.manual_seed(1)
    unaugmented = build_model("cnn", data.input_shape, data.num_classes, 4, 1)
    fit(unaugmented, data, plain, weights, logits, 4.0, teacher=teacher)
    assert not torch.equal(unaugmented[0].weight, whole[0].weight)

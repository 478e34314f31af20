import copy
import dataclasses

import pytest
import torch
from datafixtures import write_tinyimagenet

from kdtrack.config import DistillConfig, TrainConfig
from kdtrack.data import load_dataset
from kdtrack.models import build_model
from kdtrack.presets import PRESETS
from kdtrack.schedules import constant_weights, learning_rate
from kdtrack.training.loop import NonFiniteLoss, Teacher, fit, predict
from kdtrack.training.state import Plan, TrainState


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
        fit(model, data, config, weights, Teacher(logits, teacher, 4.0), log=log, resume=resume)
        return model, log

    whole, log = run()
    resumed, _ = run(resume=TrainState.from_dict(log.states[4]))  # mid-epoch: 3 steps per epoch
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    plain = dataclasses.replace(config, augment=False)
    torch.manual_seed(1)
    unaugmented = build_model("cnn", data.input_shape, data.num_classes, 4, 1)
    fit(unaugmented, data, plain, weights, Teacher(logits, teacher, 4.0))
    assert not torch.equal(unaugmented[0].weight, whole[0].weight)


def test_plan_names_the_steps_that_log_evaluate_snapshot_and_keep_checkpoints():
    """100 points in batches of 10 for 4 epochs: 40 steps, logged every epoch (10 steps)."""
    config = TrainConfig(train_size=100, batch_size=10, epochs=4, eval_every=20, snapshot_every=15,
                         checkpoint_every=0)
    plan = Plan.of(config, 100, final_step=45, snapshot_at=(7,))
    assert (plan.steps_per_epoch, plan.total_steps, plan.final_step) == (10, 40, 45)
    assert [s for s in range(1, 46) if plan.evaluates(s)] == [20, 40, 45]
    assert [s for s in range(1, 46) if plan.logs(s)] == [10, 20, 30, 40, 45]
    assert [s for s in range(1, 46) if plan.snapshots(s)] == [7, 15, 30, 45]
    assert [s for s in range(1, 46) if plan.keeps_checkpoint(s, 0)] == [10, 20, 30]  # SWITCH_POINTS
    assert [s for s in range(1, 46) if plan.keeps_checkpoint(s, 25)] == [10, 20, 25, 30]
    rates = plan.rates(config)
    assert [rates(s) for s in range(40, 45)] == [rates(39)] * 5  # past the schedule: its last rate
    assert all(plan.observes(s) for s in range(1, 46))  # eigen_every=0 below 150 steps: every step
    every_7 = Plan.of(dataclasses.replace(config, eigen_every=7), 100, final_step=45)
    assert [s for s in range(1, 46) if every_7.observes(s)] == [7, 14, 21, 28, 35, 42, 45]  # and the last


@pytest.mark.parametrize("preset", ["noisy_mnist_rf", "mnist_mlp", "cifar10_cnn"])
def test_eigen_probes_default_to_about_a_hundred_points(preset):
    """Table 7's presets (the ones with eigen=true): the probed steps with eigen_every=0, step 0
    included. noisy_mnist_rf trains 40 steps (128 points in one batch, 40 epochs): every step, 41
    points, all there are."""
    config = DistillConfig(**PRESETS[preset])
    plan = Plan.of(config, config.train_size)
    points = 1 + sum(plan.observes(s) for s in range(1, plan.final_step + 1))
    assert points == {"noisy_mnist_rf": 41, "mnist_mlp": 81, "cifar10_cnn": 100}[preset]


def test_a_train_state_round_trips_through_a_checkpoint_file(tmp_path):
    """What the loop checkpoints reads back as the same TrainState, through torch.save and a
    weights_only load; the tracking layer's extra "probes" key is ignored."""
    data = load_dataset("mnist5k", "", False, 32, 0.0, seed=0)
    config = TrainConfig(train_size=32, width=8, epochs=2, batch_size=16, log_every=2, eval_every=2,
                         checkpoint_every=1)
    log = Recorder()
    fit(build_model("mlp", data.input_shape, 10, 8), data, config, constant_weights(4, 0.0), log=log)
    written = log.states[1]  # mid-way between log steps: running sums over one step
    assert list(written) == ["step", "model", "optimizer", "order_rng", "augment_rng", "torch_rng", "order",
                             "running", "seen"]
    state = TrainState.from_dict(written)
    assert (state.step, state.seen, sorted(state.running)) == (1, 1, ["batch_acc", "ce", "loss"])
    torch.save({**state.as_dict(), "probes": {"eigen/trajectory.parquet": [{"v1": 0.5}]}}, tmp_path / "state.pt")
    loaded = TrainState.from_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert_same(loaded.as_dict(), written)
    old = {k: v for k, v in written.items() if k != "augment_rng"}  # written before augmentation drew from it
    assert TrainState.from_dict(old).augment_rng is None
    assert_same(TrainState.from_dict(old).as_dict(), old)


def assert_same(a, b):
    """Equal values, tensors bit for bit, through nested dicts and lists."""
    assert type(a) is type(b)
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b

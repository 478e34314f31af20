"""The one training loop. Teacher, student and loss switching differ only in the distillation
weight handed in per step. Tracking is an optional `RunLog`; tests pass none."""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Collection, Protocol, Sequence

import torch
from torch import nn

from kdtrack.config import TrainConfig
from kdtrack.data import FolderImages, Splits
from kdtrack.data.augment import augment
from kdtrack.data.splits import stratified_subset
from kdtrack.interrupts import stop_requests
from kdtrack.losses import combined_loss
from kdtrack.schedules import learning_rates

# Full-set evaluation (both splits, forward only) is budgeted at this fraction of the training
# compute when `eval_every` is 0; a training step costs about 3 forward passes of its batch.
EVAL_BUDGET = 0.05
# Fractions of training at which every run keeps a checkpoint, so that `switch` can start there.
SWITCH_POINTS = (0.25, 0.5, 0.75)


class NonFiniteLoss(RuntimeError):
    def __init__(self, step: int, terms: dict[str, float]):
        self.step = step
        super().__init__(f"non-finite loss at step {step}: " + ", ".join(f"{k}={v}" for k, v in terms.items()))


class RunLog(Protocol):
    """What the loop reports; kdtrack.tracking implements it on MLflow."""

    def metrics(self, values: dict[str, float], step: int) -> None: ...
    def snapshot(self, step: int, logits: dict[str, torch.Tensor]) -> None: ...
    def checkpoint(self, step: int, state: dict, keep: bool) -> None: ...
    def observe(self, step: int, model: nn.Module) -> None: ...  # e.g. eigen-trajectories


@dataclass(frozen=True)
class Plan:
    """Step counts derived from a config: how long, how often to log, evaluate and checkpoint."""

    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    log_every: int
    eval_every: int

    @classmethod
    def of(cls, config: TrainConfig, train_points: int, eval_points: int = 0) -> "Plan":
        per_epoch = math.ceil(fit_size(train_points, config.fit_fraction) / config.batch_size)
        total = config.steps or max(1, math.ceil(config.epochs * per_epoch))
        warmup = round(config.warmup * (1 if config.steps else per_epoch))
        log_every = config.log_every or per_epoch
        eval_every = config.eval_every
        if not eval_every:  # the smallest multiple of log_every within EVAL_BUDGET
            steps_per_eval = eval_points / (3 * config.batch_size * EVAL_BUDGET)
            eval_every = log_every * max(1, math.ceil(steps_per_eval / log_every))
        return cls(per_epoch, total, min(warmup, total), log_every, eval_every)

    def keeps_checkpoint(self, step: int, every: int) -> bool:
        """Steps whose checkpoint stays as `checkpoints/step_<N>.pt`: every `every` steps, and
        the SWITCH_POINTS fractions of nominal training."""
        return bool(every) and step % every == 0 or step in {round(f * self.total_steps) for f in SWITCH_POINTS}


def fit_size(train_points: int, fraction: float) -> int:
    return max(1, round(train_points * fraction))


def fit_indices(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """The training points the loop draws batches from: all, or a seeded stratified fraction
    (a teacher that sees only part of the set cannot interpolate the rest, paper §5.2)."""
    if fraction >= 1:
        return torch.arange(len(labels), device=labels.device)
    chosen, _ = stratified_subset(labels.cpu().numpy(), fit_size(len(labels), fraction), seed)
    return torch.as_tensor(chosen, device=labels.device)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def place(model: nn.Module, device: torch.device) -> nn.Module:
    """On `device`; on CUDA in channels_last, the layout its convolutions are fastest in."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


def on_device(x: torch.Tensor) -> torch.Tensor:
    """Image batches in channels_last on CUDA, to match `place`d models."""
    return x.contiguous(memory_format=torch.channels_last) if x.is_cuda and x.dim() == 4 else x


def autocast(device: torch.device):
    """bf16 autocast for training forward passes on CUDA; float32 elsewhere. Predictions that
    become confidences stay float32: bf16 logits would blur phi by ~0.05."""
    return torch.autocast("cuda", torch.bfloat16) if device.type == "cuda" else nullcontext()


@torch.no_grad()
def predict(model: nn.Module, inputs, batch: int = 1024) -> torch.Tensor:
    """Logits of `inputs` (a tensor, or FolderImages read by the DataLoader), in batches."""
    was_training = model.training
    model.eval()
    if isinstance(inputs, FolderImages):
        order = list(range(len(inputs)))
        chunks = inputs.batches([order[i:i + batch] for i in range(0, len(order), batch)], train=False)
    else:
        chunks = (inputs[i:i + batch] for i in range(0, len(inputs), batch))
    logits = torch.cat([model(on_device(x)).float() for x in chunks])
    model.train(was_training)
    return logits


def train_inputs(data: Splits, order: torch.Tensor, first: int, per_epoch: int, config: TrainConfig,
                 generator: torch.Generator, epoch: int):
    """(indices, inputs) of an epoch's batches from position `first` on, augmented when
    `config.augment`: on the device for tensors, by DataLoader workers for files on disk."""
    size = config.batch_size
    batches = [order[p * size:(p + 1) * size] for p in range(first, per_epoch)]
    if isinstance(data.x_train, FolderImages):
        # Each image's crop is drawn from (this seed, its index): a resumed epoch repeats it.
        loaded = data.x_train.batches([b.tolist() for b in batches], config.augment, config.seed * 100_003 + epoch)
        yield from zip(batches, map(on_device, loaded))
        return
    for batch in batches:
        x = data.x_train[batch]
        yield batch, on_device(augment(x, generator) if config.augment else x)


def predict_splits(model: nn.Module, data: Splits) -> dict[str, torch.Tensor]:
    """Logits on the whole train and test sets, keyed by split."""
    return {"train": predict(model, data.x_train), "test": predict(model, data.x_test)}


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    trainable = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(trainable, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(trainable, lr=config.lr, momentum=config.momentum,
                           nesterov=config.nesterov and config.momentum > 0,
                           weight_decay=config.weight_decay)


def agreement_and_kl(logits: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-1 agreement with the teacher and mean KL(teacher || student) at temperature 1."""
    log_t, log_s = teacher.log_softmax(1), logits.log_softmax(1)
    return (logits.argmax(1) == teacher.argmax(1)).float().mean(), (log_t.exp() * (log_t - log_s)).sum(1).mean()


def evaluate(logits: dict[str, torch.Tensor], data: Splits,
             teacher_logits: dict[str, torch.Tensor] | None) -> dict[str, float]:
    """Full-set accuracy per split (train against the labels trained on), and for students top-1
    agreement with the teacher and mean KL(teacher || student)."""
    labels = {"train": data.y_train, "test": data.y_test}
    out = {}
    for split, split_logits in logits.items():
        out[f"{split}/acc"] = (split_logits.argmax(1) == labels[split]).float().mean().item()
        if teacher_logits is not None:
            agreement, kl = agreement_and_kl(split_logits, teacher_logits[split])
            out[f"{split}/agreement"], out[f"{split}/kl"] = agreement.item(), kl.item()
    if data.is_noisy.any():
        out["train/acc_clean_labels"] = (logits["train"].argmax(1) == data.y_train_clean).float().mean().item()
    return out


def fit(model: nn.Module, data: Splits, config: TrainConfig, distill_weights: Sequence[float],
        teacher_logits: dict[str, torch.Tensor] | None = None, temperature: float = 1.0,
        log: RunLog | None = None, resume: dict | None = None, snapshot_at: Collection[int] = (),
        teacher: nn.Module | None = None) -> nn.Module:
    """Train `model` in place for `len(distill_weights)` steps and return it.

    The learning-rate schedule spans the config's nominal length; steps past it (a `switch`
    run's `extend_to`) keep its last rate. `resume` is a checkpoint written by this loop: training
    continues after its step with the same batch order, optimizer state and running sums.
    Confidence snapshots are taken every `config.snapshot_every` steps and at `snapshot_at`.
    `teacher_logits` are the teacher's logits on the (fixed, unaugmented) train and test sets,
    computed once: the teacher is frozen, so recomputing them per batch would be wasted work;
    with `config.augment` the inputs differ per batch and `teacher` itself is run on them.
    """
    plan = Plan.of(config, len(data.y_train), len(data.y_train) + len(data.y_test))
    total = len(distill_weights)
    rates = learning_rates(plan.total_steps, config.lr, plan.warmup_steps, config.schedule,
                           config.decay_factor,
                           tuple(float(m) for m in config.decay_milestones.split(",") if m.strip()))
    rates += rates[-1:] * (total - plan.total_steps)
    optimizer = make_optimizer(model, config)
    order_rng = torch.Generator().manual_seed(config.seed)
    augment_rng = torch.Generator().manual_seed(config.seed + 1)
    pool = fit_indices(data.y_train, config.fit_fraction, config.seed)
    running: dict[str, torch.Tensor] = {}
    seen, start, order, stream = 0, 0, None, None
    device = data.y_train.device
    forward = torch.compile(model) if config.compile else model
    if teacher is not None and not config.augment:
        teacher = None  # the precomputed logits are the teacher's on these very inputs
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        order_rng.set_state(resume["order_rng"])
        augment_rng.set_state(resume.get("augment_rng", augment_rng.get_state()))
        torch.set_rng_state(resume["torch_rng"])
        start, order, running, seen = resume["step"], resume["order"], resume["running"], resume["seen"]
        order = order.to(data.y_train.device)
        if log is not None and start in snapshot_at:  # the state a switch starts from
            log.snapshot(start, predict_splits(model, data))
    if log is not None and start == 0:
        log.observe(0, model)
    model.train()
    with stop_requests() if log is not None else nullcontext([]) as stop:
        for step in range(start, total):
            position = step % plan.steps_per_epoch
            if position == 0:
                order = pool[torch.randperm(len(pool), generator=order_rng).to(pool.device)]
            if position == 0 or stream is None:
                stream = train_inputs(data, order, position, plan.steps_per_epoch, config, augment_rng,
                                      step // plan.steps_per_epoch)
            batch, inputs = next(stream)
            for group in optimizer.param_groups:
                group["lr"] = rates[step]

            with autocast(device):
                logits = forward(inputs).float()
            targets = teacher_logits["train"][batch] if teacher_logits is not None else None
            if teacher is not None:
                with torch.inference_mode(), autocast(device):
                    targets = teacher(inputs)
                targets = targets.float().clone()  # a normal tensor, usable by autograd
            terms = combined_loss(logits, data.y_train[batch], targets, distill_weights[step], temperature)
            if not torch.isfinite(terms["loss"]):
                raise NonFiniteLoss(step + 1, {k: v.item() for k, v in terms.items()})
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            done = step + 1
            if log is None:
                continue

            # Running means over the batches since the last log step: free, unlike a full pass.
            with torch.no_grad():
                terms["batch_acc"] = (logits.argmax(1) == data.y_train[batch]).float().mean()
                if targets is not None:
                    terms["batch_agreement"], terms["batch_kl"] = agreement_and_kl(logits, targets)
            for name, value in terms.items():
                running[name] = running.get(name, 0.0) + value.detach()
            seen += 1
            evaluate_now = done % plan.eval_every == 0 or done == total
            snapshot_now = bool(config.snapshot_every) and done % config.snapshot_every == 0 or done in snapshot_at
            # One forward pass over both sets serves the evaluation and the snapshot of this step.
            logits_now = predict_splits(model, data) if evaluate_now or snapshot_now else None
            if done % plan.log_every == 0 or evaluate_now:
                values = {f"train/{k}": (v / seen).item() for k, v in running.items()}
                if evaluate_now:
                    values.update(evaluate(logits_now, data, teacher_logits))
                values.update({"lr": rates[step], "distill_weight": float(distill_weights[step]),
                               "epoch": done / plan.steps_per_epoch})
                log.metrics(values, done)
                log.observe(done, model)
                running, seen = {}, 0
            if snapshot_now:
                log.snapshot(done, logits_now)
            keep = plan.keeps_checkpoint(done, config.checkpoint_every)
            if keep or stop or evaluate_now and done < total:  # a finished run needs none
                log.checkpoint(done, {
                    "step": done, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "order_rng": order_rng.get_state(), "augment_rng": augment_rng.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "order": order.cpu(), "running": running, "seen": seen}, keep)
            if stop:
                raise KeyboardInterrupt(f"stopped by signal {stop[0]} after step {done}; checkpoint saved")
    return model

"""The one training loop. Teacher, student and (later) loss switching differ only in the
distillation weight handed in per step. Tracking is an optional `RunLog`; tests pass none."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, Sequence

import torch
from torch import nn

from kdtrack.config import TrainConfig
from kdtrack.data import Splits
from kdtrack.losses import combined_loss
from kdtrack.schedules import learning_rates


class NonFiniteLoss(RuntimeError):
    def __init__(self, step: int, terms: dict[str, float]):
        self.step = step
        super().__init__(f"non-finite loss at step {step}: " + ", ".join(f"{k}={v}" for k, v in terms.items()))


class RunLog(Protocol):
    """What the loop reports; kdtrack.tracking implements it on MLflow."""

    def metrics(self, values: dict[str, float], step: int) -> None: ...
    def snapshot(self, step: int, logits: dict[str, torch.Tensor]) -> None: ...
    def checkpoint(self, step: int, state: dict) -> None: ...


@dataclass(frozen=True)
class Plan:
    """Step counts derived from a config: how long, how often to log."""

    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    log_every: int

    @classmethod
    def of(cls, config: TrainConfig, train_points: int) -> "Plan":
        per_epoch = math.ceil(train_points / config.batch_size)
        total = config.steps or max(1, math.ceil(config.epochs * per_epoch))
        warmup = round(config.warmup * (1 if config.steps else per_epoch))
        return cls(per_epoch, total, min(warmup, total), config.log_every or per_epoch)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def predict(model: nn.Module, inputs: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    was_training = model.training
    model.eval()
    logits = torch.cat([model(inputs[i:i + batch]) for i in range(0, len(inputs), batch)])
    model.train(was_training)
    return logits


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


def evaluate(logits: dict[str, torch.Tensor], data: Splits,
             teacher_logits: dict[str, torch.Tensor] | None) -> dict[str, float]:
    """Accuracy per split (train against the labels trained on), and for students top-1
    agreement with the teacher and mean KL(teacher || student)."""
    labels = {"train": data.y_train, "test": data.y_test}
    out = {}
    for split, split_logits in logits.items():
        out[f"{split}/acc"] = (split_logits.argmax(1) == labels[split]).float().mean().item()
        if teacher_logits is not None:
            teacher = teacher_logits[split]
            out[f"{split}/agreement"] = (split_logits.argmax(1) == teacher.argmax(1)).float().mean().item()
            log_t, log_s = teacher.log_softmax(1), split_logits.log_softmax(1)
            out[f"{split}/kl"] = (log_t.exp() * (log_t - log_s)).sum(1).mean().item()
    if data.is_noisy.any():
        out["train/acc_clean_labels"] = (logits["train"].argmax(1) == data.y_train_clean).float().mean().item()
    return out


def fit(model: nn.Module, data: Splits, config: TrainConfig, distill_weights: Sequence[float],
        teacher_logits: dict[str, torch.Tensor] | None = None, temperature: float = 1.0,
        log: RunLog | None = None) -> nn.Module:
    """Train `model` in place for `Plan.of(config).total_steps` steps and return it.

    `teacher_logits` are the teacher's logits on the (fixed, unaugmented) train and test sets,
    computed once: the teacher is frozen, so recomputing them per batch would be wasted work.
    """
    plan = Plan.of(config, len(data.y_train))
    assert len(distill_weights) == plan.total_steps, "one distillation weight per step"
    rates = learning_rates(plan.total_steps, config.lr, plan.warmup_steps, config.schedule,
                           config.decay_factor,
                           tuple(float(m) for m in config.decay_milestones.split(",") if m.strip()))
    optimizer = make_optimizer(model, config)
    order_rng = torch.Generator().manual_seed(config.seed)
    running: dict[str, float] = {}
    seen = 0
    model.train()
    for step in range(plan.total_steps):
        position = step % plan.steps_per_epoch
        if position == 0:
            order = torch.randperm(len(data.y_train), generator=order_rng).to(data.y_train.device)
        batch = order[position * config.batch_size:(position + 1) * config.batch_size]
        for group in optimizer.param_groups:
            group["lr"] = rates[step]

        logits = model(data.x_train[batch])
        targets = teacher_logits["train"][batch] if teacher_logits is not None else None
        terms = combined_loss(logits, data.y_train[batch], targets, distill_weights[step], temperature)
        if not torch.isfinite(terms["loss"]):
            raise NonFiniteLoss(step + 1, {k: v.item() for k, v in terms.items()})
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()

        for name, value in terms.items():
            running[name] = running.get(name, 0.0) + value.detach()
        seen += 1
        done = step + 1
        if log is None:
            continue
        evaluate_now = done % plan.log_every == 0 or done == plan.total_steps
        snapshot_now = bool(config.snapshot_every) and done % config.snapshot_every == 0
        # One forward pass over both sets serves the metrics and the snapshot of this step.
        logits_now = predict_splits(model, data) if evaluate_now or snapshot_now else None
        if evaluate_now:
            values = {f"train/{k}": (v / seen).item() for k, v in running.items()}
            values.update(evaluate(logits_now, data, teacher_logits))
            values["lr"] = rates[step]
            values["distill_weight"] = float(distill_weights[step])
            values["epoch"] = done / plan.steps_per_epoch
            log.metrics(values, done)
            running, seen = {}, 0
        if snapshot_now:
            log.snapshot(done, logits_now)
        if config.checkpoint_every and done % config.checkpoint_every == 0:
            log.checkpoint(done, {"model": model.state_dict(), "optimizer": optimizer.state_dict()})
    return model

"""Where a run's training stands and where it goes: `TrainState`, all a resumed run needs to
continue bit-identically, and `Plan`, the step counts a config implies and which steps log,
evaluate, snapshot and keep a checkpoint."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Collection

import torch
from torch import nn

from kdtrack.config import MAX_STEPS, TrainConfig
from kdtrack.errors import UserError
from kdtrack.schedules import LearningRates

# Full-set evaluation (both splits, forward only) is budgeted at this fraction of the training
# compute when `eval_every` is 0; a training step costs about 3 forward passes of its batch.
EVAL_BUDGET = 0.05
# Fractions of training at which every run keeps a checkpoint, so that `switch` can start there.
SWITCH_POINTS = (0.25, 0.5, 0.75)
# Probe points (eigen-trajectories) over a run when `eigen_every` is 0: the pair statistic
# interpolates between them, so a curve needs many (Table 7's runs: 41 to 100 of them).
PROBE_POINTS = 100


@dataclass(frozen=True)
class TrainState:
    """Training after `step` steps: all a resumed run needs to continue bit-identically. The
    weights, the optimizer, the three generators (batch order, augmentation, torch's global one),
    this epoch's batch order, and the running sums of the loss terms over the `seen` steps since
    the last log step. Checkpoint files hold `as_dict()`."""

    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict
    order_rng: torch.Tensor
    augment_rng: torch.Tensor | None  # absent from checkpoints written before augmentation drew from it
    torch_rng: torch.Tensor
    order: torch.Tensor
    running: dict[str, torch.Tensor]
    seen: int

    @classmethod
    def capture(cls, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                order_rng: torch.Generator, augment_rng: torch.Generator, order: torch.Tensor,
                running: dict[str, torch.Tensor], seen: int) -> TrainState:
        return cls(step, model.state_dict(), optimizer.state_dict(), order_rng.get_state(),
                   augment_rng.get_state(), torch.get_rng_state(), order.cpu(), running, seen)

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer, order_rng: torch.Generator,
                augment_rng: torch.Generator) -> None:
        """Load the weights, the optimizer and the generators; the loop takes the rest."""
        model.load_state_dict(self.model)
        optimizer.load_state_dict(self.optimizer)
        order_rng.set_state(self.order_rng)
        if self.augment_rng is not None:
            augment_rng.set_state(self.augment_rng)
        torch.set_rng_state(self.torch_rng)

    def as_dict(self) -> dict:
        """The checkpoint dict (plain values, loadable with `torch.load(weights_only=True)`)."""
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.augment_rng is None:
            del state["augment_rng"]
        return state

    @classmethod
    def from_dict(cls, state: dict) -> TrainState:
        """Read a checkpoint dict; keys other than the fields (the tracking layer's "probes") are
        ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{"augment_rng": None, **{k: v for k, v in state.items() if k in names}})


@dataclass(frozen=True)
class Plan:
    """Step counts derived from a config, and which steps log, evaluate, snapshot, run the probes
    and keep a checkpoint. The step methods take `done`, the number of steps trained so far."""

    steps_per_epoch: int
    total_steps: int  # the nominal length, which the learning-rate schedule spans
    warmup_steps: int
    log_every: int
    eval_every: int
    final_step: int  # where this run stops: total_steps, or past it for a `switch` run's extend_to
    snapshot_every: int
    snapshot_at: frozenset[int]
    probe_every: int = 1  # the probes' own cadence (config.eigen_every), apart from logging

    @classmethod
    def of(cls, config: TrainConfig, train_points: int, eval_points: int = 0, final_step: int = 0,
           snapshot_at: Collection[int] = ()) -> Plan:
        """`eval_points`: the points of one full evaluation (both sets), which set its default
        cadence; `final_step`: where the run stops, by default the nominal length."""
        per_epoch = math.ceil(fit_size(train_points, config.fit_fraction) / config.batch_size)
        total = config.steps or max(1, math.ceil(config.epochs * per_epoch))
        if total > MAX_STEPS:  # only epochs can get here: steps is capped by the config
            raise UserError(f"epochs={config.epochs!r} is {total} steps of batch_size={config.batch_size} on "
                            f"{train_points} points; allowed: at most {MAX_STEPS} steps")
        warmup = round(config.warmup * (1 if config.steps else per_epoch))
        log_every = config.log_every or per_epoch
        eval_every = config.eval_every
        if not eval_every:  # the smallest multiple of log_every within EVAL_BUDGET
            steps_per_eval = eval_points / (3 * config.batch_size * EVAL_BUDGET)
            eval_every = log_every * max(1, math.ceil(steps_per_eval / log_every))
        final = final_step or total
        probe_every = config.eigen_every or max(1, round(final / PROBE_POINTS))
        return cls(per_epoch, total, min(warmup, total), log_every, eval_every, final, config.snapshot_every,
                   frozenset(snapshot_at), probe_every)

    def evaluates(self, done: int) -> bool:
        """Full-set evaluation every `eval_every` steps and at the end."""
        return done % self.eval_every == 0 or done == self.final_step

    def logs(self, done: int) -> bool:
        """Running means every `log_every` steps, and with every evaluation."""
        return done % self.log_every == 0 or self.evaluates(done)

    def observes(self, done: int) -> bool:
        """The probes (eigen-trajectories) every `probe_every` steps and at the end."""
        return done % self.probe_every == 0 or done == self.final_step

    def snapshots(self, done: int) -> bool:
        """Confidence snapshots every `snapshot_every` steps (0: never) and at `snapshot_at`."""
        return (bool(self.snapshot_every) and done % self.snapshot_every == 0) or done in self.snapshot_at

    def keeps_checkpoint(self, done: int, every: int, policy: str = "switch") -> bool:
        """Steps whose checkpoint stays as `checkpoints/step_<N>.pt`, where `switch` can start:
        every `every` steps, and the SWITCH_POINTS fractions of nominal training; none with
        `keep_checkpoints=last` (its checkpoints only resume)."""
        if policy == "last":
            return False
        switch_steps = {round(f * self.total_steps) for f in SWITCH_POINTS}
        return (bool(every) and done % every == 0) or done in switch_steps

    def rates(self, config: TrainConfig) -> LearningRates:
        """The rate of each step up to `final_step`: the config's schedule over the nominal
        length, then its last rate."""
        milestones = tuple(float(m) for m in config.decay_milestones.split(",") if m.strip())
        return LearningRates(self.total_steps, config.lr, self.warmup_steps, config.schedule, config.decay_factor,
                             milestones)


def fit_size(train_points: int, fraction: float) -> int:
    return max(1, round(train_points * fraction))

"""Learning-rate and loss-weight schedules: pure functions of the step.

A run's schedules are small frozen values called with the step, never per-step lists: their
memory does not grow with the training length, and `epochs=1e9` is refused by the length cap
(`training.MAX_STEPS`) instead of filling the memory.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


def learning_rate(step: int, total_steps: int, peak: float, warmup_steps: int, schedule: str,
                  decay_factor: float = 0.1, milestones: tuple[float, ...] = (0.5, 0.75)) -> float:
    """Linear warmup to `peak` over `warmup_steps`, then constant, step, cosine or linear decay."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if schedule == "constant":
        return peak
    if schedule == "step":
        return peak * decay_factor ** sum(step >= m * total_steps for m in milestones)
    if schedule == "cosine":
        return peak * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "linear":
        return peak * (1 - progress)
    raise ValueError(f"unknown schedule {schedule!r}")


@dataclass(frozen=True)
class LearningRates:
    """The rate of each 0-based step: `learning_rate` over the nominal `total_steps`; steps past
    it (a `switch` run's extend_to) keep its last rate."""

    total_steps: int
    peak: float
    warmup_steps: int
    schedule: str
    decay_factor: float
    milestones: tuple[float, ...]

    def __call__(self, step: int) -> float:
        return learning_rate(min(step, self.total_steps - 1), self.total_steps, self.peak, self.warmup_steps,
                             self.schedule, self.decay_factor, self.milestones)


@dataclass(frozen=True)
class LossWeights:
    """The distillation weight of each 0-based step of a run of `total_steps` steps. With t the
    1-based step (as logged): `start` while t <= switch_step, `end` once t > switch_step + window,
    linear in between. A plain teacher or student is constant (see `constant_weights`)."""

    total_steps: int
    start: float
    end: float
    switch_step: int
    window: int

    def __call__(self, step: int) -> float:
        t = step + 1
        if t <= self.switch_step:
            return self.start
        if t > self.switch_step + self.window:
            return self.end
        return self.start + (self.end - self.start) * (t - self.switch_step) / self.window


def constant_weights(total_steps: int, distill_weight: float) -> LossWeights:
    """A plain teacher (0) or student (`distill_weight`): the same weight at every step."""
    return LossWeights(total_steps, distill_weight, distill_weight, total_steps, 0)


def switch_weights(total_steps: int, start: float, end: float, switch_step: int, window: int) -> LossWeights:
    """A loss switch from `start` to `end` after `switch_step`, over `window` steps."""
    return LossWeights(total_steps, start, end, switch_step, window)

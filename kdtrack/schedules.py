"""Learning-rate and loss-weight schedules: pure functions of the step, precomputed per run."""
from __future__ import annotations

import math


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


def learning_rates(total_steps: int, peak: float, warmup_steps: int, schedule: str,
                   decay_factor: float, milestones: tuple[float, ...]) -> list[float]:
    rates = [learning_rate(s, total_steps, peak, warmup_steps, schedule, decay_factor, milestones)
             for s in range(total_steps)]
    assert len(rates) == total_steps
    return rates


def constant_weights(total_steps: int, distill_weight: float) -> list[float]:
    """Distillation weight per step for a plain teacher (0) or student (`distill_weight`)."""
    return [distill_weight] * total_steps


def switch_weights(total_steps: int, start: float, end: float, switch_step: int, window: int) -> list[float]:
    """Distillation weight per step of a loss switch: `start` for steps t <= switch_step
    (1-based), `end` for t > switch_step + window, linear in between."""
    def weight(t: int) -> float:
        if t <= switch_step:
            return start
        if t > switch_step + window:
            return end
        return start + (end - start) * (t - switch_step) / window
    return [weight(t) for t in range(1, total_steps + 1)]

"""Training losses as pure functions of logits (paper §2, Eq. 1 and Eq. 2), and the
confidence-aware distillation targets of §7's proposal (not tested in the paper)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F


def onehot_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 1: mean softmax cross-entropy to the one-hot labels, -log p_y(x)."""
    return F.cross_entropy(logits, labels)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      temperature: float) -> torch.Tensor:
    """Eq. 2 at temperature tau: tau^2 * mean_n[ -sum_k p^te_k(x_n / tau) log p^st_k(x_n / tau) ].

    The tau^2 factor (Hinton et al., 2015) keeps the gradient's scale independent of tau: the
    gradient with respect to the student's logits is tau * (p^st_tau - p^te_tau) / N, i.e.
    (p^st_tau - p^te_tau) / tau times the loss scale tau^2, per sample (tests/primitives/test_losses.py).
    """
    log_student = F.log_softmax(student_logits / temperature, dim=-1)
    teacher = F.softmax(teacher_logits / temperature, dim=-1)
    return -(teacher * log_student).sum(-1).mean() * temperature**2


# With data parallelism a process holds only its part of each batch; such a function (the loop's:
# kdtrack.training.distributed.World.gather) maps that part's values to the whole batch's, on every process,
# and says where the part lies in it.
WholeBatch = Callable[[torch.Tensor], tuple[torch.Tensor, slice]]


def confidence_weights(teacher_logits: torch.Tensor, power: float, whole: WholeBatch | None = None) -> torch.Tensor:
    """w_n = c_n^gamma / mean_batch(c^gamma), c_n the teacher's probability on its predicted class
    at temperature 1; the mean weight is 1. Computed as (c_n / max c)^gamma over its mean, which is
    the same ratio but cannot underflow to 0/0 (the largest term is 1); gamma = 0 gives exactly 1.

    The max and the mean are the batch's. Given `whole`, `teacher_logits` are one process's part of
    a batch, and the max and mean are taken over the whole batch's confidences: a part's own mean
    would weight each part to mean 1 and change the loss. Its weights are then those one process
    computes on the whole batch, bit for bit (same values, same order)."""
    confidence = F.softmax(teacher_logits.detach(), dim=-1).amax(-1)
    every, part = whole(confidence) if whole is not None else (confidence, slice(None))
    raised = (every / every.amax()) ** power
    return (raised / raised.mean())[part]


def confidence_weighted_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
                             power: float, whole: WholeBatch | None = None) -> torch.Tensor:
    """tau^2 * mean_n[ w_n * (-sum_k p^te_k(x_n / tau) log p^st_k(x_n / tau)) ], w = `confidence_weights`
    (normalized over the `whole` batch when this is a process's part of it; the mean is this part's,
    which the loop weights by the part's share of the batch).

    The weights are the teacher's, constants to the student, so the gradient with respect to the
    student's logits is w_n * tau * (p^st_tau - p^te_tau) / N: plain KD's, scaled per sample. With
    gamma = 0 every w_n is exactly 1 and the loss and its gradient are bit-identical to
    `distillation_loss` (tests/primitives/test_losses.py).
    """
    log_student = F.log_softmax(student_logits / temperature, dim=-1)
    teacher = F.softmax(teacher_logits / temperature, dim=-1)
    weights = confidence_weights(teacher_logits, power, whole).to(log_student.dtype)
    return (-(teacher * log_student).sum(-1) * weights).mean() * temperature**2


def confidence_tempered_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
                             spread: float, quantiles: torch.Tensor) -> torch.Tensor:
    """mean_n[ tau_n^2 * (-sum_k p^te_k(x_n / tau_n) log p^st_k(x_n / tau_n)) ] with a per-sample
    temperature tau_n = tau * s_n, s_n = 1 + beta * (1 - q_n), q_n in [0, 1] the quantile of the
    teacher's confidence phi on sample n over the training set (`confidence.phi_quantiles`).

    The teacher's least confident point (q = 0) is matched at tau * (1 + beta), its most confident
    (q = 1) at tau. Each sample keeps its own tau_n^2, so the gradient with respect to the student's
    logits is tau_n * (p^st_{tau_n} - p^te_{tau_n}) / N: plain KD's per sample at that sample's
    temperature. Written as logits / tau / s_n and (s_n^2 * CE_n) averaged then times tau^2, so that
    beta = 0 (every s_n exactly 1) is bit-identical to `distillation_loss` (tests/primitives/test_losses.py).
    """
    scale = (1 + spread * (1 - quantiles)).to(student_logits.dtype)
    log_student = F.log_softmax(student_logits / temperature / scale[:, None], dim=-1)
    teacher = F.softmax(teacher_logits / temperature / scale[:, None], dim=-1)
    return (-(teacher * log_student).sum(-1) * scale**2).mean() * temperature**2


@dataclass(frozen=True, eq=False)
class KDTarget:
    """What a batch's KD term matches: the target kind (kdtrack.config.KD_TARGETS), its strength (gamma for
    confidence_weighted, beta for confidence_tempered) and, for confidence_tempered, the batch's
    teacher-confidence quantiles; with data parallelism, `whole` (see `confidence_weights`)."""

    kind: str = "standard"
    strength: float = 0.0
    quantiles: torch.Tensor | None = None
    whole: WholeBatch | None = None

    def loss(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
        if self.kind == "confidence_weighted":
            return confidence_weighted_loss(student_logits, teacher_logits, temperature, self.strength, self.whole)
        if self.kind == "confidence_tempered":
            return confidence_tempered_loss(student_logits, teacher_logits, temperature, self.strength,
                                            self.quantiles)
        return distillation_loss(student_logits, teacher_logits, temperature)


STANDARD = KDTarget()


def combined_loss(logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None,
                  distill_weight: float, temperature: float, target: KDTarget = STANDARD) -> dict[str, torch.Tensor]:
    """`distill_weight * KD + (1 - distill_weight) * CE`, with each term for logging."""
    terms = {"ce": onehot_loss(logits, labels)}
    total = (1 - distill_weight) * terms["ce"]
    if teacher_logits is not None and distill_weight > 0:
        terms["kd"] = target.loss(logits, teacher_logits, temperature)
        total = total + distill_weight * terms["kd"]
    terms["loss"] = total
    return terms

"""Training losses as pure functions of logits (paper §2, Eq. 1 and Eq. 2), the
confidence-aware distillation targets of §7's proposal (not tested in the paper), and the KD
methods later papers compare against (decoupled KD, logit standardization, DIST), in place of
Eq. 2's term."""
from __future__ import annotations

import math
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


def _kl(target_log: torch.Tensor, student_log: torch.Tensor) -> torch.Tensor:
    """sum_k q_k (log q_k - log p_k) over the last axis, from log-probabilities; a class that
    `target_log` gives -inf (probability 0) adds 0, not 0 * (-inf - -inf) = nan."""
    terms = target_log.exp() * (target_log - student_log)
    return torch.where(torch.isneginf(target_log), 0.0, terms).sum(-1)


def decoupled_kd_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                       temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample, the two parts of KD (Zhao et al., CVPR 2022, "Decoupled Knowledge
    Distillation", Eq. 1-3), both at temperature tau, t the sample's (training) label:

    TCKD = KL(b^te || b^st), b = (p_t, 1 - p_t) the target class's mass and the rest's;
    NCKD = KL(p^te_hat || p^st_hat), p_hat_k = p_k / (1 - p_t) over the classes k != t.

    KL(p^te || p^st) = TCKD + (1 - p^te_t) * NCKD (their Eq. 3; tests/primitives/test_kd_methods.py).
    In log space (log(1 - p_t) as a log-sum-exp over the non-target logits), so a confident
    teacher's 1 - p_t underflowing does not make NCKD 0 / 0."""
    scaled_student, scaled_teacher = student_logits / temperature, teacher_logits / temperature
    target = F.one_hot(labels, scaled_student.shape[-1]).bool()

    def binary_and_rest(scaled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rest = scaled.masked_fill(target, -math.inf)
        total = scaled.logsumexp(-1, keepdim=True)
        log_binary = torch.cat([scaled[target][:, None], rest.logsumexp(-1, keepdim=True)], -1) - total
        return log_binary, F.log_softmax(rest, -1)

    student_binary, student_rest = binary_and_rest(scaled_student)
    teacher_binary, teacher_rest = binary_and_rest(scaled_teacher)
    return _kl(teacher_binary, student_binary), _kl(teacher_rest, student_rest)


def decoupled_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      temperature: float, alpha: float, beta: float) -> torch.Tensor:
    """DKD: tau^2 * mean_n[ alpha * TCKD_n + beta * NCKD_n ] (`decoupled_kd_terms`; Zhao et al.,
    Eq. 4, tau^2 as in their code). KD weights NCKD by the teacher's 1 - p_t, which DKD frees.

    Gradient with respect to the student's logits z (derived by hand, checked against autograd in
    tests/primitives/test_kd_methods.py), p = softmax(z / tau), per sample:
    dL/dz_t = tau * alpha * (p^st_t - p^te_t) / N;
    dL/dz_k = tau * [ alpha * p^st_hat_k * (p^te_t - p^st_t) + beta * (p^st_hat_k - p^te_hat_k) ] / N, k != t.
    With alpha = 1 and beta = 1 - p^te_t it is KD's tau * (p^st - p^te) / N."""
    tckd, nckd = decoupled_kd_terms(student_logits, teacher_logits, labels, temperature)
    return (alpha * tckd + beta * nckd).mean() * temperature**2


def standardized(logits: torch.Tensor) -> torch.Tensor:
    """Each row z-scored: (z - mean z) / std z, the standard deviation over the K classes with 1 / K
    (Sun et al.'s definition; their code's 1 / (K - 1) is the same as a temperature sqrt(K / (K - 1))
    times larger here). A variance below the dtype's eps^2 counts as eps^2, so constant logits give
    zeros (uniform probabilities) with a finite gradient."""
    centered = logits - logits.mean(-1, keepdim=True)
    variance = centered.square().mean(-1, keepdim=True)
    return centered * variance.clamp_min(torch.finfo(logits.dtype).eps ** 2).rsqrt()


def standardized_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                         temperature: float) -> torch.Tensor:
    """Logit standardization (Sun et al., CVPR 2024, "Logit Standardization in Knowledge
    Distillation", Eq. 9 and Algorithm 1): `distillation_loss` on `standardized` teacher and
    student logits. The loss no longer asks the student to match the teacher's logit range, only
    their relations; it is invariant to shifting or scaling either side's logits per sample.

    Gradient with respect to the student's logits z, with z_hat = standardized(z), sigma z's
    standard deviation over K classes and d = p^st - p^te at tau on the standardized logits:
    dL/dz = tau / (N * sigma) * (d - z_hat * <d, z_hat> / K) (d sums to 0, so the mean's term
    vanishes). The loss relies on autograd through `standardized`; the test checks this form."""
    return distillation_loss(standardized(student_logits), standardized(teacher_logits), temperature)


def _pearson(first: torch.Tensor, second: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of each pair of rows: cosine similarity of the centered rows, the
    product of norms held at eps or above (DIST's code adds eps instead; this keeps identical
    rows at exactly 1). A constant row correlates 0 with anything."""
    first = first - first.mean(-1, keepdim=True)
    second = second - second.mean(-1, keepdim=True)
    return (first * second).sum(-1) / (first.norm(dim=-1) * second.norm(dim=-1)).clamp_min(eps)


def dist_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
              beta: float, gamma: float) -> torch.Tensor:
    """DIST (Huang et al., NeurIPS 2022, "Knowledge Distillation from A Stronger Teacher", Eq. 8-10):
    Y = softmax(z / tau) of shape (N, K);
    inter = mean_n[1 - rho(Y^st_n, Y^te_n)] (each sample's classes),
    intra = mean_k[1 - rho(Y^st_:k, Y^te_:k)] (each class across the batch),
    L = tau^2 * (beta * inter + gamma * intra), rho the Pearson correlation. Matching relations,
    not values: the student may be more or less confident than its teacher at no cost.

    Gradient with respect to the student's logits, by autograd: for a pair (a, b) of rows with
    centered a_c, b_c, d(1 - rho)/da = -(b_c / |b_c| - rho * a_c / |a_c|) / |a_c|, then through the
    softmax, dL/dz_nk = Y^st_nk (u_nk - sum_j Y^st_nj u_nj) / tau with u = dL/dY^st
    (tests/primitives/test_kd_methods.py checks the inter term's). The intra term correlates the
    whole batch, so a process's part of one does not give its share: nproc_per_node must be 1."""
    student = F.softmax(student_logits / temperature, dim=-1)
    teacher = F.softmax(teacher_logits / temperature, dim=-1)
    inter = (1 - _pearson(student, teacher)).mean()
    intra = (1 - _pearson(student.T, teacher.T)).mean()
    return (beta * inter + gamma * intra) * temperature**2


@dataclass(frozen=True, eq=False)
class KDTarget:
    """What a batch's KD term matches: the target kind (kdtrack.config.KD_TARGETS), its strength (gamma for
    confidence_weighted, beta for confidence_tempered) and, for confidence_tempered, the batch's
    teacher-confidence quantiles; with data parallelism, `whole` (see `confidence_weights`). `method`
    (kdtrack.config.KD_LOSSES) replaces KD itself, with its two `weights` (dkd: alpha, beta; dist:
    beta, gamma); config refuses a method other than kd with a target other than standard."""

    kind: str = "standard"
    strength: float = 0.0
    quantiles: torch.Tensor | None = None
    whole: WholeBatch | None = None
    method: str = "kd"
    weights: tuple[float, float] = (0.0, 0.0)

    def loss(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
             labels: torch.Tensor) -> torch.Tensor:
        if self.method == "dkd":
            return decoupled_kd_loss(student_logits, teacher_logits, labels, temperature, *self.weights)
        if self.method == "ls":
            return standardized_kd_loss(student_logits, teacher_logits, temperature)
        if self.method == "dist":
            return dist_loss(student_logits, teacher_logits, temperature, *self.weights)
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
        terms["kd"] = target.loss(logits, teacher_logits, temperature, labels)
        total = total + distill_weight * terms["kd"]
    terms["loss"] = total
    return terms

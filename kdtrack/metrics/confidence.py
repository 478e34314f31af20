"""Per-sample confidence of the paper's §3, computed from logits in float64.

phi(p_y) = log(p_y / (1 - p_y)) = f_y - logsumexp_{k != y} f_k. The right-hand side stays exact
where the probability has saturated to 1.0 in floating point (margins beyond ~40).
"""
from __future__ import annotations

import polars as pl
import torch


def _as64(logits) -> torch.Tensor:
    return torch.as_tensor(logits).detach().to("cpu", torch.float64)


def phi(logits, classes) -> torch.Tensor:
    """The multi-class margin f_y - logsumexp_{k != y} f_k of class `classes[n]` for each row n."""
    logits = _as64(logits)
    classes = torch.as_tensor(classes, dtype=torch.long).cpu()
    chosen = logits.gather(1, classes[:, None]).squeeze(1)
    others = logits.scatter(1, classes[:, None], float("-inf"))
    return chosen - torch.logsumexp(others, dim=1)


def phi_quantiles(logits) -> torch.Tensor:
    """q_n in [0, 1]: where the phi of row n on its own predicted class ranks among all rows, by
    mid-rank (ties share the mean of their ranks), scaled so that the least confident row has 0
    and the most confident 1; a single row has 1. The confidence_tempered KD target's input."""
    logits = _as64(logits)
    confidence = phi(logits, logits.argmax(1))
    if len(confidence) < 2:
        return torch.ones_like(confidence)
    ordered = confidence.sort().values
    below = torch.searchsorted(ordered, confidence, right=False)
    through = torch.searchsorted(ordered, confidence, right=True)
    return (below + through - 1).to(torch.float64) / 2 / (len(confidence) - 1)


def entropy(logits) -> torch.Tensor:
    log_p = torch.log_softmax(_as64(logits), dim=1)
    return -(log_p.exp() * log_p).sum(1)


def kl_divergence(teacher_logits, student_logits) -> torch.Tensor:
    """KL(p_teacher || p_student) per sample, at temperature 1."""
    log_t = torch.log_softmax(_as64(teacher_logits), dim=1)
    log_s = torch.log_softmax(_as64(student_logits), dim=1)
    return (log_t.exp() * (log_t - log_s)).sum(1)


def teacher_table(logits, labels, is_noisy) -> pl.DataFrame:
    """One row per sample of a one-hot trained model (schema: README, 'What runs record')."""
    labels = torch.as_tensor(labels).cpu()
    pred = _as64(logits).argmax(1)
    return pl.DataFrame({
        "index": torch.arange(len(labels)).numpy(),
        "label": labels.numpy(),
        "is_noisy": torch.as_tensor(is_noisy).cpu().numpy(),
        "pred": pred.numpy(),
        "phi_pred": phi(logits, pred).numpy(),
        "phi_label": phi(logits, labels).numpy(),
    })


def student_table(student_logits, teacher_logits, labels, is_noisy) -> pl.DataFrame:
    """One row per sample comparing a student with its teacher, on the teacher's predicted class
    (phi_teacher, phi_student: the axes of Fig. 1a) and on the ground truth (Fig. 13)."""
    labels = torch.as_tensor(labels).cpu()
    teacher_pred = _as64(teacher_logits).argmax(1)
    return pl.DataFrame({
        "index": torch.arange(len(labels)).numpy(),
        "label": labels.numpy(),
        "is_noisy": torch.as_tensor(is_noisy).cpu().numpy(),
        "pred": _as64(student_logits).argmax(1).numpy(),
        "teacher_pred": teacher_pred.numpy(),
        "phi_teacher": phi(teacher_logits, teacher_pred).numpy(),
        "phi_student": phi(student_logits, teacher_pred).numpy(),
        "phi_teacher_label": phi(teacher_logits, labels).numpy(),
        "phi_student_label": phi(student_logits, labels).numpy(),
        "kl": kl_divergence(teacher_logits, student_logits).numpy(),
        "entropy_teacher": entropy(teacher_logits).numpy(),
        "entropy_student": entropy(student_logits).numpy(),
    })

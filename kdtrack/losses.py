"""Training losses as pure functions of logits (paper §2, Eq. 1 and Eq. 2)."""
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
    (p^st_tau - p^te_tau) / tau times the loss scale tau^2, per sample (tests/test_losses.py).
    """
    log_student = F.log_softmax(student_logits / temperature, dim=-1)
    teacher = F.softmax(teacher_logits / temperature, dim=-1)
    return -(teacher * log_student).sum(-1).mean() * temperature**2


def combined_loss(logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None,
                  distill_weight: float, temperature: float) -> dict[str, torch.Tensor]:
    """`distill_weight * KD + (1 - distill_weight) * CE`, with each term for logging."""
    terms = {"ce": onehot_loss(logits, labels)}
    total = (1 - distill_weight) * terms["ce"]
    if teacher_logits is not None and distill_weight > 0:
        terms["kd"] = distillation_loss(logits, teacher_logits, temperature)
        total = total + distill_weight * terms["kd"]
    terms["loss"] = total
    return terms

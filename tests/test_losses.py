import math

import torch

from kdtrack.losses import combined_loss, distillation_loss, onehot_loss


def test_kd_gradient_is_probability_difference_over_tau_times_tau_squared():
    torch.manual_seed(0)
    student = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(5, 7, dtype=torch.float64)
    tau = 4.0
    distillation_loss(student, teacher, tau).backward()
    p_student, p_teacher = torch.softmax(student / tau, 1), torch.softmax(teacher / tau, 1)
    expected = (p_student - p_teacher) / tau * tau**2 / len(student)  # mean over the batch
    assert torch.allclose(student.grad, expected.detach())


def test_kd_at_temperature_one_on_one_hot_teacher_is_cross_entropy():
    logits = torch.tensor([[1.0, 2.0, 0.5]])
    one_hot_teacher = torch.tensor([[0.0, 1e4, 0.0]])
    assert math.isclose(distillation_loss(logits, one_hot_teacher, 1.0).item(),
                        onehot_loss(logits, torch.tensor([1])).item(), rel_tol=1e-6)


def test_combined_loss_weights_the_terms():
    logits, teacher = torch.randn(4, 3), torch.randn(4, 3)
    labels = torch.tensor([0, 1, 2, 0])
    terms = combined_loss(logits, labels, teacher, 0.3, 2.0)
    assert torch.allclose(terms["loss"], 0.3 * terms["kd"] + 0.7 * terms["ce"])
    assert "kd" not in combined_loss(logits, labels, None, 0.0, 2.0)

import math

import torch

from kdtrack.losses import (
    STANDARD,
    KDTarget,
    combined_loss,
    confidence_tempered_loss,
    confidence_weighted_loss,
    confidence_weights,
    distillation_loss,
    onehot_loss,
)


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


def _batch(seed=0):
    torch.manual_seed(seed)
    return torch.randn(6, 5, dtype=torch.float64, requires_grad=True), torch.randn(6, 5, dtype=torch.float64) * 3


def test_confidence_weights_by_hand():
    # two samples: the teacher's top probabilities are 0.8 and 0.4 (rows of probabilities as logits)
    teacher = torch.log(torch.tensor([[0.8, 0.1, 0.1], [0.4, 0.3, 0.3]], dtype=torch.float64))
    weights = confidence_weights(teacher, 2.0)
    expected = torch.tensor([0.64, 0.16], dtype=torch.float64) / 0.4  # c^2 over mean(c^2) = 0.4
    assert torch.allclose(weights, expected) and math.isclose(weights.mean().item(), 1.0)
    assert torch.equal(confidence_weights(teacher, 0.0), torch.ones(2, dtype=torch.float64))
    # no underflow to 0 / 0 where every c^gamma is below the smallest double
    assert torch.isfinite(confidence_weights(torch.zeros(3, 1000, dtype=torch.float64), 200.0)).all()


def test_confidence_weighted_gradient_is_the_weighted_probability_difference():
    student, teacher = _batch()
    tau, gamma = 3.0, 1.5
    confidence_weighted_loss(student, teacher, tau, gamma).backward()
    c = torch.softmax(teacher, 1).amax(1)
    weights = c**gamma / (c**gamma).mean()
    p_student, p_teacher = torch.softmax(student / tau, 1), torch.softmax(teacher / tau, 1)
    expected = weights[:, None] * tau * (p_student - p_teacher) / len(student)
    assert torch.allclose(student.grad, expected.detach())


def test_a_part_of_a_batch_weighted_over_the_whole_batch_gets_its_share_of_one_process_loss():
    """Data parallelism: each process holds part of the batch, and `whole` (the loop's all-reduce)
    hands it the whole batch's confidences. The parts' weights are the whole batch's, bit for bit,
    and the parts' losses weighted by their shares add up to the whole batch's loss."""
    student, teacher = _batch()
    tau, gamma = 2.0, 2.0
    confidence = torch.softmax(teacher, 1).amax(1)
    parts = [slice(0, 2), slice(2, 6)]  # uneven, as an epoch's last batch may split
    wholes = [lambda _, part=part: (confidence, part) for part in parts]
    weights = [confidence_weights(teacher[part], gamma, whole) for part, whole in zip(parts, wholes)]
    assert torch.equal(torch.cat(weights), confidence_weights(teacher, gamma))
    assert not torch.allclose(confidence_weights(teacher[parts[0]], gamma), weights[0])  # a part's own mean differs
    shares = [confidence_weighted_loss(student[part], teacher[part], tau, gamma, whole) * (part.stop - part.start)
              / len(student) for part, whole in zip(parts, wholes)]
    assert torch.allclose(sum(shares), confidence_weighted_loss(student, teacher, tau, gamma))


def test_confidence_tempered_loss_and_gradient_use_each_samples_temperature():
    student, teacher = _batch(1)
    tau, beta = 2.0, 1.0
    quantiles = torch.tensor([0.0, 0.2, 0.4, 0.6, 0.8, 1.0], dtype=torch.float64)
    loss = confidence_tempered_loss(student, teacher, tau, beta, quantiles)
    loss.backward()
    temperatures = tau * (1 + beta * (1 - quantiles))  # 4.0 (least confident) ... 2.0 (most)
    by_sample = [distillation_loss(student[n:n + 1].detach(), teacher[n:n + 1], temperatures[n].item())
                 for n in range(len(student))]  # plain KD per sample, at tau_n, with its tau_n^2
    assert torch.allclose(loss.detach(), torch.stack(by_sample).mean())
    p_student = torch.softmax(student / temperatures[:, None], 1)
    p_teacher = torch.softmax(teacher / temperatures[:, None], 1)
    expected = temperatures[:, None] * (p_student - p_teacher) / len(student)
    assert torch.allclose(student.grad, expected.detach())


def _loss_and_gradient(target):
    torch.manual_seed(2)
    student = torch.randn(7, 10, requires_grad=True)  # float32, as training uses
    teacher, labels = torch.randn(7, 10) * 4, torch.randint(0, 10, (7,))
    terms = combined_loss(student, labels, teacher, 0.7, 3.0, target)  # tau = 3: 1 / tau is inexact
    terms["loss"].backward()
    return terms["loss"].detach(), student.grad


def test_zero_strength_is_standard_kd_bit_for_bit():
    loss, gradient = _loss_and_gradient(STANDARD)
    quantiles = torch.linspace(0, 1, 7)
    for target in (KDTarget("confidence_weighted", 0.0), KDTarget("confidence_tempered", 0.0, quantiles)):
        other_loss, other_gradient = _loss_and_gradient(target)
        assert torch.equal(other_loss, loss) and torch.equal(other_gradient, gradient)
    assert not torch.equal(_loss_and_gradient(KDTarget("confidence_weighted", 1.0))[0], loss)
    assert not torch.equal(_loss_and_gradient(KDTarget("confidence_tempered", 1.0, quantiles))[0], loss)

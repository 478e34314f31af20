import math

import torch

from kdtrack.metrics.confidence import entropy, kl_divergence, phi, student_table, teacher_table


def test_phi_matches_log_odds_where_probabilities_are_exact():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    p = torch.softmax(logits, 1)
    expected = torch.log(p[:, 0] / (1 - p[:, 0]))
    assert torch.allclose(phi(logits, torch.tensor([0, 0])), expected)
    assert math.isclose(phi(logits, torch.tensor([1, 0]))[1].item(), -math.log(2))


def test_phi_beyond_saturation_is_the_exact_margin():
    # p_0 rounds to 1.0 in float64 here; log(p / (1 - p)) would be inf. The closed form is
    # f_0 - logsumexp(f_1, f_2) = 60 - log(2) and, for the other class, 0 - logsumexp(60, 0).
    logits = torch.tensor([[60.0, 0.0, 0.0]])
    assert torch.softmax(logits.double(), 1)[0, 0].item() == 1.0
    assert phi(logits, torch.tensor([0])).item() == 60 - math.log(2)
    assert math.isclose(phi(logits, torch.tensor([1])).item(), -(60 + math.log1p(math.exp(-60))), rel_tol=1e-12)


def test_float32_logits_are_promoted_before_the_margin():
    logits = torch.tensor([[45.0, 0.0]], dtype=torch.float32)
    assert phi(logits, torch.tensor([0])).dtype == torch.float64
    assert phi(logits, torch.tensor([0])).item() == 45.0


def test_entropy_and_kl_closed_forms():
    uniform = torch.zeros(1, 4)
    assert math.isclose(entropy(uniform).item(), math.log(4))
    assert kl_divergence(uniform, uniform).item() == 0.0
    # p = (3/4, 1/4) against (1/2, 1/2)
    teacher, student = torch.tensor([[math.log(3), 0.0]], dtype=torch.float64), torch.zeros(1, 2)
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert math.isclose(kl_divergence(teacher, student).item(), expected, rel_tol=1e-12)


def test_tables_have_the_documented_schema():
    teacher = torch.tensor([[3.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
    student = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 1.0]])
    labels, noisy = torch.tensor([0, 1, 1]), torch.tensor([False, False, True])
    t = teacher_table(teacher, labels, noisy)
    assert t.columns == ["index", "label", "is_noisy", "pred", "phi_pred", "phi_label"]
    s = student_table(student, teacher, labels, noisy)
    assert s.columns == ["index", "label", "is_noisy", "pred", "teacher_pred", "phi_teacher", "phi_student",
                         "phi_teacher_label", "phi_student_label", "kl", "entropy_teacher", "entropy_student"]
    # Row 2: the teacher predicts class 0 (wrongly); the student is scored on that class too.
    assert s["teacher_pred"].to_list() == [0, 1, 0]
    assert s["phi_teacher"][2] == 2.0 and s["phi_student"][2] == -1.0
    assert s["phi_student_label"][2] == 1.0


def test_phi_quantiles_rank_by_mid_rank_from_zero_to_one():
    from kdtrack.metrics.confidence import phi_quantiles

    # margins on the predicted class: 3, 1, 1, 5 -> ranks 2, 0.5 (a tie of ranks 0 and 1), 0.5, 3 of 0..3
    logits = torch.tensor([[3.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 5.0]])
    assert torch.allclose(phi_quantiles(logits), torch.tensor([2 / 3, 1 / 6, 1 / 6, 1.0], dtype=torch.float64))
    assert phi_quantiles(torch.tensor([[0.0, 2.0]])).tolist() == [1.0]

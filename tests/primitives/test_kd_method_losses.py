"""The KD methods beside Hinton's KD: decoupled KD, logit standardization and DIST, each against a
case computed by hand (with `math` and `statistics`, not the function under test), its gradient
against a closed form, and its reduction to KD where its paper says it reduces."""
import math
import statistics

import torch

from kdtrack.losses import (
    KDTarget,
    combined_loss,
    decoupled_kd_loss,
    decoupled_kd_terms,
    dist_loss,
    distillation_loss,
    standardized,
    standardized_kd_loss,
)


def _batch(seed=0, rows=6, classes=5):
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(rows, classes, dtype=torch.float64, generator=generator).requires_grad_()
    teacher = torch.randn(rows, classes, dtype=torch.float64, generator=generator) * 3
    labels = torch.randint(0, classes, (rows,), generator=generator)
    return student, teacher, labels


def _kl_kd(student, teacher, tau):
    """Per-sample KL(p^te || p^st) at tau, written out."""
    p_teacher = torch.softmax(teacher / tau, 1)
    return (p_teacher * (torch.log_softmax(teacher / tau, 1) - torch.log_softmax(student / tau, 1))).sum(1)


def test_dkd_terms_by_hand():
    # probabilities as logits at tau = 1; the label is class 0
    teacher = torch.log(torch.tensor([[0.7, 0.2, 0.1]], dtype=torch.float64))
    student = torch.log(torch.tensor([[0.5, 0.25, 0.25]], dtype=torch.float64))
    tckd, nckd = decoupled_kd_terms(student, teacher, torch.tensor([0]), 1.0)
    # target mass (0.7, 0.3) against (0.5, 0.5); non-target classes renormalized: (2/3, 1/3) against (1/2, 1/2)
    assert math.isclose(tckd.item(), 0.7 * math.log(0.7 / 0.5) + 0.3 * math.log(0.3 / 0.5), rel_tol=1e-12)
    assert math.isclose(nckd.item(), 2 / 3 * math.log(4 / 3) + 1 / 3 * math.log(2 / 3), rel_tol=1e-12)
    loss = decoupled_kd_loss(student, teacher, torch.tensor([0]), 2.0, 1.0, 8.0)
    halved = decoupled_kd_terms(student, teacher, torch.tensor([0]), 2.0)
    assert math.isclose(loss.item(), 4 * (halved[0] + 8 * halved[1]).item(), rel_tol=1e-12)


def test_kd_is_tckd_plus_teacher_non_target_mass_times_nckd():
    """Zhao et al., Eq. 3: KL(p^te || p^st) = TCKD + (1 - p^te_t) * NCKD, per sample."""
    student, teacher, labels = _batch()
    tau = 3.0
    tckd, nckd = decoupled_kd_terms(student, teacher, labels, tau)
    rest = 1 - torch.softmax(teacher / tau, 1).gather(1, labels[:, None])[:, 0]
    assert torch.allclose(tckd + rest * nckd, _kl_kd(student, teacher, tau))


def test_dkd_with_alpha_one_and_beta_the_non_target_mass_is_kd_with_its_gradient():
    """Per-sample beta = 1 - p^te_t (what KD implicitly uses) gives KD's loss (up to the teacher's
    entropy, a constant) and exactly KD's gradient tau * (p^st - p^te) / N."""
    student, teacher, labels = _batch(1)
    tau = 2.0
    rest = 1 - torch.softmax(teacher / tau, 1).gather(1, labels[:, None])[:, 0]
    tckd, nckd = decoupled_kd_terms(student, teacher, labels, tau)
    (tau**2 * (tckd + rest * nckd).mean()).backward()
    dkd_gradient = student.grad.clone()
    student.grad = None
    distillation_loss(student, teacher, tau).backward()
    assert torch.allclose(dkd_gradient, student.grad)
    entropy = -(torch.softmax(teacher / tau, 1) * torch.log_softmax(teacher / tau, 1)).sum(1).mean()
    kd = distillation_loss(student.detach(), teacher, tau)
    assert torch.allclose(tau**2 * (tckd + rest * nckd).mean().detach(), kd - tau**2 * entropy)


def test_dkd_gradient_closed_form():
    student, teacher, labels = _batch(2)
    tau, alpha, beta = 4.0, 1.5, 8.0
    decoupled_kd_loss(student, teacher, labels, tau, alpha, beta).backward()
    p_student, p_teacher = torch.softmax(student.detach() / tau, 1), torch.softmax(teacher / tau, 1)
    target = torch.nn.functional.one_hot(labels, 5).bool()
    student_t, teacher_t = p_student[target][:, None], p_teacher[target][:, None]
    hat_student, hat_teacher = p_student / (1 - student_t), p_teacher / (1 - teacher_t)
    rest = alpha * hat_student * (teacher_t - student_t) + beta * (hat_student - hat_teacher)
    expected = torch.where(target, alpha * (p_student - p_teacher), rest) * tau / len(student)
    assert torch.allclose(student.grad, expected)


def test_dkd_stays_finite_when_the_teacher_is_certain():
    student, _, labels = _batch(3)
    teacher = torch.nn.functional.one_hot(labels, 5).double() * 1e4  # 1 - p_t underflows to 0
    loss = decoupled_kd_loss(student, teacher, labels, 1.0, 1.0, 8.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()


def test_standardized_logits_have_mean_zero_and_unit_deviation():
    logits = torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]], dtype=torch.float64)
    # (1, 2, 3): mean 2, deviation sqrt(2/3) over the three classes
    expected = torch.tensor([[-1.0, 0.0, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64) / torch.tensor(
        [[math.sqrt(2 / 3)], [1.0]], dtype=torch.float64)
    assert torch.allclose(standardized(logits), expected)


def test_ls_is_kd_on_standardized_logits_and_invariant_to_shift_and_scale():
    student, teacher, _ = _batch(4)
    tau = 2.0
    z_student, z_teacher = standardized(student.detach()), standardized(teacher)
    assert torch.allclose(z_student.mean(1), torch.zeros(6, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(z_student.std(1, correction=0), torch.ones(6, dtype=torch.float64))
    assert torch.allclose(standardized_kd_loss(z_student, z_teacher, tau), distillation_loss(z_student, z_teacher, tau))
    loss = standardized_kd_loss(student.detach(), teacher, tau)
    shift, scale = torch.linspace(-5, 5, 6, dtype=torch.float64)[:, None], torch.linspace(0.1, 7, 6)[:, None]
    moved = standardized_kd_loss(student.detach() * scale + shift, teacher * scale.flip(0) - 2 * shift, tau)
    assert torch.allclose(moved, loss)
    assert not torch.allclose(distillation_loss(student.detach() * scale + shift, teacher, tau),
                              distillation_loss(student.detach(), teacher, tau))  # plain KD is not invariant


def test_ls_gradient_closed_form_and_constant_logits():
    student, teacher, _ = _batch(5)
    tau = 3.0
    standardized_kd_loss(student, teacher, tau).backward()
    z_hat = standardized(student.detach())
    sigma = student.detach().std(1, correction=0, keepdim=True)
    d = torch.softmax(z_hat / tau, 1) - torch.softmax(standardized(teacher) / tau, 1)
    expected = tau / (len(student) * sigma) * (d - z_hat * (d * z_hat).sum(1, keepdim=True) / 5)
    assert torch.allclose(student.grad, expected)
    constant = torch.full((2, 4), 3.0, requires_grad=True)  # float32, as training uses
    standardized_kd_loss(constant, torch.randn(2, 4), 1.0).backward()
    assert torch.isfinite(constant.grad).all()


def test_dist_by_hand():
    tau = 2.0
    student = [[0.1, 0.9, -0.4], [1.2, 0.3, 0.0]]
    teacher = [[2.0, 0.5, -1.0], [0.4, 0.4, 1.5]]

    def softmax(row):
        exps = [math.exp(v / tau) for v in row]
        return [e / sum(exps) for e in exps]

    y_student, y_teacher = [softmax(r) for r in student], [softmax(r) for r in teacher]
    inter = statistics.mean(1 - statistics.correlation(s, t) for s, t in zip(y_student, y_teacher))
    intra = statistics.mean(1 - statistics.correlation(s, t) for s, t in zip(zip(*y_student), zip(*y_teacher)))
    as_tensor = lambda rows: torch.tensor(rows, dtype=torch.float64)  # noqa: E731
    loss = dist_loss(as_tensor(student), as_tensor(teacher), tau, 0.5, 2.0)
    assert math.isclose(loss.item(), tau**2 * (0.5 * inter + 2.0 * intra), rel_tol=1e-9)


def test_dist_is_zero_for_a_student_that_matches_its_teacher():
    _, teacher, _ = _batch(6)
    assert abs(dist_loss(teacher, teacher, 4.0, 1.0, 1.0).item()) < 1e-12
    # relations, not values: a sharper student (the same logits, doubled) still correlates, but not exactly
    assert 0 < dist_loss(2 * teacher, teacher, 4.0, 1.0, 1.0).item() < dist_loss(-teacher, teacher, 4.0, 1.0, 1.0)


def test_dist_inter_gradient_closed_form():
    student, teacher, _ = _batch(7)
    tau = 2.0
    dist_loss(student, teacher, tau, 1.0, 0.0).backward()
    y_student, y_teacher = torch.softmax(student.detach() / tau, 1), torch.softmax(teacher / tau, 1)
    a, b = y_student - y_student.mean(1, keepdim=True), y_teacher - y_teacher.mean(1, keepdim=True)
    a_norm, b_norm = a.norm(dim=1, keepdim=True), b.norm(dim=1, keepdim=True)
    rho = (a * b).sum(1, keepdim=True) / (a_norm * b_norm)
    u = -(b / b_norm - rho * a / a_norm) / a_norm * tau**2 / len(student)  # dL/dY^st
    expected = y_student * (u - (y_student * u).sum(1, keepdim=True)) / tau
    assert torch.allclose(student.grad, expected)


def test_dist_of_one_sample_has_a_finite_gradient():
    student, teacher, _ = _batch(8, rows=1)
    dist_loss(student, teacher, 1.0, 1.0, 1.0).backward()  # a class across one sample: constant, rho = 0
    assert torch.isfinite(student.grad).all()


def test_kd_targets_route_to_their_method():
    student, teacher, labels = _batch(9)
    tau = 4.0
    cases = {KDTarget(method="dkd", weights=(1.0, 8.0)): decoupled_kd_loss(student, teacher, labels, tau, 1.0, 8.0),
             KDTarget(method="ls"): standardized_kd_loss(student, teacher, tau),
             KDTarget(method="dist", weights=(1.0, 2.0)): dist_loss(student, teacher, tau, 1.0, 2.0),
             KDTarget(): distillation_loss(student, teacher, tau)}
    for target, expected in cases.items():
        assert torch.equal(combined_loss(student, labels, teacher, 1.0, tau, target)["kd"], expected)


def test_dkd_and_ls_of_a_batchs_parts_weighted_by_their_shares_are_the_whole_batchs():
    """Data parallelism: each process computes its part's mean and the loop weights it by the
    part's share, which is right for a mean of per-sample terms (DIST's batch-wide term is not:
    config refuses it with nproc_per_node > 1)."""
    student, teacher, labels = _batch(10)
    student = student.detach()
    parts = [slice(0, 2), slice(2, 6)]
    losses = {"dkd": lambda s, t, y: decoupled_kd_loss(s, t, y, 2.0, 1.0, 8.0),
              "ls": lambda s, t, y: standardized_kd_loss(s, t, 2.0)}
    for loss in losses.values():
        shares = [loss(student[p], teacher[p], labels[p]) * (p.stop - p.start) / len(student) for p in parts]
        assert torch.allclose(sum(shares), loss(student, teacher, labels))
    dist_shares = [dist_loss(student[p], teacher[p], 2.0, 0.0, 1.0) * (p.stop - p.start) / len(student) for p in parts]
    assert not torch.allclose(sum(dist_shares), dist_loss(student, teacher, 2.0, 0.0, 1.0))

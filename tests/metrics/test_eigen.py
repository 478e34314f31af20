"""Eigendirections and weight components against hand-computed and closed-form cases."""
import math

import pytest
import torch
from torch import nn

from kdtrack.metrics.eigen import (
    components,
    eigendirections,
    first_layer_probe,
    layer_inputs,
    truncated_to_top,
    weight_matrix,
)
from kdtrack.models import build_model


def test_the_gram_route_equals_the_covariance_route():
    torch.manual_seed(0)
    x = torch.randn(12, 30, dtype=torch.float64)  # p > n: the Gram route
    values, vectors = eigendirections(x)
    full_values, full_vectors = torch.linalg.eigh(x.T @ x)
    assert len(values) == 12
    assert torch.allclose(values, full_values.flip(0)[:12], rtol=1e-9)
    overlap = (vectors.T @ full_vectors.flip(1)[:, :12]).abs()
    assert torch.allclose(overlap, torch.eye(12, dtype=torch.float64), atol=1e-8)  # same up to sign
    assert torch.allclose(vectors.T @ vectors, torch.eye(12, dtype=torch.float64), atol=1e-10)


def test_a_diagonal_case_by_hand():
    x = torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # X^T X = diag(9, 2)
    values, vectors = eigendirections(x)
    assert values.tolist() == [9.0, 2.0]
    w = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # W (p=2 x h=2): rows are input directions
    # v1 = e1: ||W^T e1|| = ||(1, 2)||, v2 = e2: ||(3, 4)|| = 5
    assert torch.allclose(components(w, vectors), torch.tensor([5 ** 0.5, 5.0], dtype=torch.float64))


def test_the_probe_gives_components_and_displacements_by_hand():
    """X^T X = diag(9, 2): v1 = e1, v2 = e2, so ||W^T v_k|| is the norm of the layer's weights on
    input k (column k of nn.Linear's weight), and the displacement that of their change since the
    probe was made."""
    layer = nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 3.0], [2.0, 4.0]]))  # W = weight.T: row k is input k
    eigenvalues, probe = first_layer_probe(layer, torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, 1.0]]))
    assert eigenvalues.to_dicts() == [{"direction": "v1", "eigenvalue": 9.0}, {"direction": "v2", "eigenvalue": 2.0}]
    assert probe(layer) == ({"v1": pytest.approx(5 ** 0.5), "v2": pytest.approx(5.0)}, {"v1": 0.0, "v2": 0.0})
    with torch.no_grad():
        layer.weight.add_(torch.tensor([[0.0, 0.0], [0.0, 2.0]]))  # input 2's weights move by (0, 2)
    trajectory, displacement = probe(layer)
    assert trajectory == {"v1": pytest.approx(5 ** 0.5), "v2": pytest.approx((9 + 36) ** 0.5)}
    assert displacement == {"v1": 0.0, "v2": pytest.approx(2.0)}


def test_weight_matrices_and_inputs_per_architecture():
    x = torch.rand(5, 3, 8, 8)
    cnn = build_model("cnn", (3, 8, 8), 10, width=4, depth=1)
    assert weight_matrix(cnn).shape == (3 * 6 * 6, 4)
    patches = layer_inputs(cnn, x)
    assert patches.shape == (5 * 3 * 3, 108)
    # A patch dotted with the flattened kernel is the convolution's output at that place.
    conv = cnn[0]
    unpadded = nn.functional.conv2d(x, conv.weight)
    first = nn.functional.unfold(x, 6)[0, :, 0] @ weight_matrix(cnn)
    assert torch.allclose(first, unpadded[0, :, 0, 0], atol=1e-5)
    rf = build_model("random_features", (1, 4, 4), 3, width=20)
    assert layer_inputs(rf, x[:, :1, :4, :4]).shape == (5, 20) and weight_matrix(rf).shape == (20, 3)
    mlp = build_model("mlp", (1, 4, 4), 3, width=7)
    assert weight_matrix(mlp).shape == (16, 7)


def test_truncation_to_all_directions_changes_nothing_and_to_none_zeroes():
    torch.manual_seed(0)
    mlp = build_model("mlp", (1, 4, 4), 3, width=7)
    x = torch.randn(40, 1, 4, 4)
    _, vectors = eigendirections(layer_inputs(mlp, x))  # p = 16 < n: all 16 directions
    assert torch.allclose(weight_matrix(truncated_to_top(mlp, vectors, 16)), weight_matrix(mlp), atol=1e-5)
    top1 = weight_matrix(truncated_to_top(mlp, vectors, 1))
    assert torch.linalg.matrix_rank(top1) == 1


def test_bottom_progress_at_half_top_by_hand():
    from kdtrack.metrics.eigenspace import bottom_progress_at_half_top

    # X covers half its way at the second point exactly; Y has not moved yet.
    assert bottom_progress_at_half_top([0, 1, 2], [0, 0, 2]) == 0.0
    # X: 0, .25, .75, 1 -> half is reached halfway between the second and third points;
    # Y's progress there: between .2 and .6 -> .4.
    assert bottom_progress_at_half_top([0, 1, 3, 4], [0, 1, 3, 5]) == pytest.approx(0.4)
    # Decreasing norms are progress too; a direction that never moves has none.
    assert bottom_progress_at_half_top([4, 3, 2, 0], [2, 2, 1, 0]) == pytest.approx(0.5)
    assert math.isnan(bottom_progress_at_half_top([1, 1, 1], [0, 1, 2]))


def test_pairs_and_the_own_scale_statistic():
    import polars as pl

    from kdtrack.metrics.eigenspace import own_scale_summary, own_scale_table, sample_pairs

    pairs = sample_pairs(5, 100, seed=0)
    assert len(pairs) == 10 and all(i < j for i, j in pairs)  # every pair of 5 directions
    teacher = pl.DataFrame({"step": [0, 1, 2], "v1": [0.0, 1, 2], "v2": [0.0, 1, 2], "v3": [0.0, 0, 0]})
    student = pl.DataFrame({"step": [0, 1, 2], "v1": [0.0, 1.5, 2], "v2": [0.0, 0.5, 2], "v3": [0.0, 0, 0]})
    table = own_scale_table(teacher, student, [(1, 2), (1, 3)])
    # teacher: v2 is half way when v1 is (0.5, not below); student: v1 at 3/4 of its way after one
    # step, so half way at 2/3 of that step, where v2 is at 1/4 * 2/3 = 1/6
    assert table["teacher_top_biased"].to_list() == [False, None]  # v3 never moves
    assert table["student_stat"][0] == pytest.approx(1 / 6)
    assert own_scale_summary(table) == {"teacher_top_biased_frac": 0.0, "student_top_biased_frac": 1.0,
                                        "top_biased_pairs": 1.0}

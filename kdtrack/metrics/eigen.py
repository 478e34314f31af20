"""Data eigendirections of a model's first layer and the weights' components along them
(paper §4.1 and §D.3): pure functions of tensors, no tracking.

For direction v_k of the first layer's inputs and the layer's weights as a matrix W (p x h), the
component is ||W^T v_k||_2. Inputs: the flattened images (`mlp`), the random features
(`random_features`, whose trained layer is the head), or random K x K x C patches (`cnn`).
"""
from __future__ import annotations

import polars as pl
import torch
import torch.nn.functional as F
from torch import nn

from kdtrack.models import RandomFeatures

PATCHES = 8192  # random patches drawn for a convolutional first layer
EIGEN_POINTS = 10_000  # training inputs the eigendirections are computed from, at most


def first_layer(model: nn.Module) -> nn.Module:
    """The trained layer that acts on the data (for random features: the head)."""
    if isinstance(model, RandomFeatures):
        return model.head
    return next(m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))


def weight_matrix(model: nn.Module) -> torch.Tensor:
    """The first layer's weights as W (p x h): p inputs, h outputs (a conv kernel flattened
    in (C, K, K) order, the order of `F.unfold`'s patches)."""
    weight = first_layer(model).weight
    return weight.reshape(weight.shape[0], -1).T


@torch.no_grad()
def layer_inputs(model: nn.Module, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The n x p matrix of what the first layer sees on the training inputs `x`."""
    if isinstance(model, RandomFeatures):
        return model.features(x)
    layer = first_layer(model)
    if isinstance(layer, nn.Conv2d):
        patches = F.unfold(x, layer.kernel_size).transpose(1, 2).reshape(-1, weight_matrix(model).shape[0])
        chosen = torch.randperm(len(patches), generator=torch.Generator().manual_seed(seed))[:PATCHES]
        return patches[chosen.to(patches.device)]
    return x.flatten(1)


def eigendirections(inputs: torch.Tensor, k: int = 0, tolerance: float = 1e-9) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (descending) and unit eigenvectors (p x k, as columns) of X^T X for the n x p
    inputs X, uncentered as in Theorem 4.1. With p > n this goes through the n x n Gram matrix
    X X^T = U diag(lambda) U^T, whose nonzero eigenvalues X^T X shares, with v = X^T u / sqrt(lambda):
    an n x n instead of a p x p eigendecomposition. Directions with (relative) eigenvalue below
    `tolerance` are dropped; `k` > 0 keeps only the top k."""
    x = inputs.detach().to("cpu", torch.float64)
    n, p = x.shape
    if p > n:
        values, u = torch.linalg.eigh(x @ x.T)
        values, u = values.flip(0), u.flip(1)
        keep = values > tolerance * values[0]
        values, u = values[keep], u[:, keep]
        vectors = x.T @ u / values.sqrt()
    else:
        values, vectors = torch.linalg.eigh(x.T @ x)
        values, vectors = values.flip(0), vectors.flip(1)
        keep = values > tolerance * values[0]
        values, vectors = values[keep], vectors[:, keep]
    if k:
        values, vectors = values[:k], vectors[:, :k]
    return values, vectors


def first_layer_probe(model: nn.Module, x: torch.Tensor, seed: int = 0, k: int = 0):
    """The eigenvalues of what `model`'s first layer sees on the training inputs `x` (a table:
    direction, eigenvalue; §D.3), and a probe: a model -> (||W^T v_k||, ||(W - W_0)^T v_k||) by
    direction, W_0 being `model`'s first-layer weights now (its initialization, Theorem 4.1's beta(0)).

    Both come from one product V^T W (13 ms for mnist_mlp's 128 directions of a 784 x 1000 layer on
    one core). V^T W - V^T W_0 rounds like V^T (W - W_0) up to float32's 1e-7 of ||V^T W||, far below
    the displacement at the first matched level (a tenth of the teacher's final one)."""
    values, vectors = eigendirections(layer_inputs(model, x, seed), k)
    names = [f"v{i}" for i in range(1, len(values) + 1)]
    vectors = vectors.to(weight_matrix(model).device)
    start = vectors.T.to(weight_matrix(model)) @ weight_matrix(model).detach()  # V^T W_0, on the model's device

    def probe(m: nn.Module) -> tuple[dict, dict]:
        projection = vectors.T.to(weight_matrix(m)) @ weight_matrix(m).detach()
        return tuple(dict(zip(names, p.norm(dim=1).double().cpu().tolist())) for p in (projection, projection - start))

    return pl.DataFrame({"direction": names, "eigenvalue": values.numpy()}), probe


def last_layer(model: nn.Module) -> tuple[int, nn.Linear] | None:
    """(its 1-based number among the weight layers, the layer) of the final linear layer, which
    acts on the last hidden representation (§D.7); None where that representation is not trained
    (random features)."""
    if isinstance(model, RandomFeatures):
        return None
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    return len(layers), layers[-1]


@torch.no_grad()
def hidden_representation(model: nn.Module, x: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    """What the final linear layer sees: the output of everything before it."""
    body = nn.Sequential(*list(model.children())[:-1]).eval()
    return torch.cat([body(x[i:i + batch]) for i in range(0, len(x), batch)])


@torch.no_grad()
def components(weights: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """||W^T v_k||_2 for every column v_k of `vectors`."""
    return (vectors.T.to(weights) @ weights).norm(dim=1).double().cpu()


@torch.no_grad()
def truncated_to_top(model: nn.Module, vectors: torch.Tensor, k: int) -> nn.Module:
    """A copy of `model` whose first-layer weights keep only their components along the top k
    directions: W <- V_k V_k^T W (Fig. 17)."""
    import copy

    clone = copy.deepcopy(model)
    layer = first_layer(clone)
    top = vectors[:, :k].to(layer.weight)
    w = top @ (top.T @ weight_matrix(clone))
    layer.weight.copy_(w.T.reshape(layer.weight.shape))
    return clone

"""Seeded, stratified subsampling and label noise: pure functions on label arrays."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Pool:
    """What a loader reads from disk: a training pool and, where the data set has one, a test set."""

    x_train: Any  # images: float32 (n, channels, height, width) in [0, 1], or FolderImages; text: token ids
    y_train: np.ndarray  # int64
    x_test: Any | None
    y_test: np.ndarray | None
    num_classes: int
    source: str  # where it was read from, recorded as the MLflow dataset source
    extras: dict = field(default_factory=dict)  # what models need from the data (text: vocab_size, pad_id)


@dataclass(frozen=True)
class Splits:
    """One experiment's data; `y_train` carries the label noise. Inputs are tensors on the
    training device, or FolderImages for sets that stay on disk."""

    name: str
    x_train: Any
    y_train: torch.Tensor
    y_train_clean: torch.Tensor
    x_test: Any
    y_test: torch.Tensor
    num_classes: int
    source: str
    extras: dict = field(default_factory=dict)

    @property
    def is_noisy(self) -> torch.Tensor:
        return self.y_train != self.y_train_clean

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to(self, device: torch.device) -> "Splits":
        moved = {k: v.to(device) if hasattr(v, "to") else v for k, v in vars(self).items()}
        return Splits(**moved)


def stratified_subset(labels: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded, class-stratified sample of `size` points, and of the rest."""
    from sklearn.model_selection import train_test_split  # 1.5 s to import: only where data is drawn

    indices = np.arange(len(labels))
    if size == 0 or size >= len(labels):
        return indices, indices[:0]
    chosen, rest = train_test_split(indices, train_size=size, stratify=labels, random_state=seed)
    return np.sort(chosen), np.sort(rest)


def flip_labels(labels: np.ndarray, fraction: float, num_classes: int, seed: int) -> np.ndarray:
    """Flip exactly round(fraction * n) labels, each to a uniformly chosen *other* class."""
    rng = np.random.default_rng(seed)
    noisy = labels.copy()
    count = int(round(fraction * len(labels)))
    flipped = rng.choice(len(labels), size=count, replace=False)
    offsets = rng.integers(1, num_classes, size=count)  # 1..K-1: never the original class
    noisy[flipped] = (labels[flipped] + offsets) % num_classes
    return noisy


def make_splits(name: str, pool: Pool, train_size: int, label_noise: float, seed: int) -> Splits:
    """Subsample the training pool; data sets without a test split (mnist5k) test on the rest."""
    from kdtrack.errors import UserError

    if pool.x_test is None and (train_size == 0 or train_size >= len(pool.y_train)):
        # 0 (all) would leave nothing to test on: such a set tests on the points it does not train on
        raise UserError(f"train_size={train_size} leaves no test points in dataset {name!r}, which tests on the "
                        f"points not trained on; allowed: 1..{len(pool.y_train) - 1}")
    if train_size > len(pool.y_train):
        raise UserError(f"train_size={train_size} is too large for dataset {name!r} "
                        f"({len(pool.y_train)} training points available)")
    train, rest = stratified_subset(pool.y_train, train_size, seed)
    if pool.x_test is None:
        x_test, y_test = pool.x_train[rest], pool.y_train[rest]  # in-memory sets only
    else:
        x_test, y_test = pool.x_test, pool.y_test
    clean = pool.y_train[train]
    noisy = flip_labels(clean, label_noise, pool.num_classes, seed) if label_noise else clean
    tensor = torch.from_numpy
    return Splits(name=name, x_train=_inputs(pool.x_train, train), y_train=tensor(noisy),
                  y_train_clean=tensor(clean), x_test=_inputs(x_test, slice(None)), y_test=tensor(y_test),
                  num_classes=pool.num_classes, source=pool.source, extras=pool.extras)


def _inputs(x, indices):
    """Arrays become tensors; files on disk (FolderImages) stay there, subset."""
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x[indices]))
    return x if isinstance(indices, slice) else x.subset(indices)

"""Seeded, stratified subsampling and label noise: pure functions on label arrays."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import train_test_split


@dataclass(frozen=True)
class Pool:
    """What a loader reads from disk: a training pool and, where the data set has one, a test set."""

    x_train: np.ndarray  # float32, (n, channels, height, width), scaled to [0, 1]
    y_train: np.ndarray  # int64
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    num_classes: int
    source: str  # where it was read from, recorded as the MLflow dataset source


@dataclass(frozen=True)
class Splits:
    """In-memory tensors of one experiment's data; `y_train` carries the label noise."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    y_train_clean: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    source: str

    @property
    def is_noisy(self) -> torch.Tensor:
        return self.y_train != self.y_train_clean

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to(self, device: torch.device) -> "Splits":
        moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in vars(self).items()}
        return Splits(**moved)


def stratified_subset(labels: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded, class-stratified sample of `size` points, and of the rest."""
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

    if train_size > len(pool.y_train) or (pool.x_test is None and train_size >= len(pool.y_train)):
        raise UserError(f"train_size={train_size} is too large for dataset {name!r} "
                        f"({len(pool.y_train)} training points available)")
    train, rest = stratified_subset(pool.y_train, train_size, seed)
    if pool.x_test is None:
        x_test, y_test = pool.x_train[rest], pool.y_train[rest]
    else:
        x_test, y_test = pool.x_test, pool.y_test
    clean = pool.y_train[train]
    noisy = flip_labels(clean, label_noise, pool.num_classes, seed) if label_noise else clean
    tensor = torch.from_numpy
    return Splits(name=name, x_train=tensor(np.ascontiguousarray(pool.x_train[train])),
                  y_train=tensor(noisy), y_train_clean=tensor(clean),
                  x_test=tensor(np.ascontiguousarray(x_test)), y_test=tensor(y_test),
                  num_classes=pool.num_classes, source=pool.source)

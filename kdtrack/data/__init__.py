"""Dataset registry: a name maps to a reader of the on-disk format; adding one is one line here."""
from __future__ import annotations

from pathlib import Path

from kdtrack.data.images import load_cifar10, load_cifar100, load_mnist, load_mnist5k
from kdtrack.data.splits import Splits, make_splits

DATASETS = {
    "mnist5k": load_mnist5k,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
}


def load_dataset(name: str, data_dir: str, download: bool, train_size: int, label_noise: float,
                 seed: int) -> Splits:
    """Read `name` from `data_dir`, subsample `train_size` points and flip `label_noise` of them."""
    pool = DATASETS[name](Path(data_dir), download)
    return make_splits(name, pool, train_size, label_noise, seed)

"""Dataset registry: a name maps to a reader of the on-disk format; adding one is one line here."""
from __future__ import annotations

from pathlib import Path

from kdtrack.data.folders import FolderImages, load_imagenet, load_tinyimagenet
from kdtrack.data.images import load_cifar10, load_cifar100, load_mnist, load_mnist5k
from kdtrack.data.splits import Splits, make_splits
from kdtrack.data.text import TEXT_COLUMNS, text_loader

DATASETS = {
    "mnist5k": load_mnist5k,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "tinyimagenet": load_tinyimagenet,
    "imagenet": load_imagenet,
    **{name: text_loader(name) for name in TEXT_COLUMNS},
}
TEXT_DATASETS = tuple(TEXT_COLUMNS)


def load_dataset(name: str, data_dir: str, download: bool, train_size: int, label_noise: float,
                 seed: int, **options) -> Splits:
    """Read `name` from `data_dir`, subsample `train_size` points and flip `label_noise` of them.
    `options` reach the reader: image_size and workers (folder data), tokenizer and max_length (text)."""
    pool = DATASETS[name](Path(data_dir), download, **options)
    return make_splits(name, pool, train_size, label_noise, seed)


__all__ = ["DATASETS", "TEXT_DATASETS", "FolderImages", "Splits", "load_dataset"]

"""Dataset registry: a name maps to where its reader of the on-disk format lives, imported on first
use (the folder readers need torchvision and PIL, the text ones polars and transformers); adding a
data set is one line here. The names are known without importing any of them.

`Splits` and `FolderImages` are imported from their modules when first asked for:
`from kdtrack.data import Splits` works, and importing this package imports no torch.
"""
from __future__ import annotations

import pkgutil
from importlib import import_module
from pathlib import Path

DATASETS = {  # name -> "module:function" reading it: function(data_dir, download, **options) -> Pool
    "mnist5k": "kdtrack.data.images:load_mnist5k",
    "mnist": "kdtrack.data.images:load_mnist",
    "cifar10": "kdtrack.data.images:load_cifar10",
    "cifar100": "kdtrack.data.images:load_cifar100",
    "tinyimagenet": "kdtrack.data.folders:load_tinyimagenet",
    "imagenet": "kdtrack.data.folders:load_imagenet",
    "mnli": "kdtrack.data.text:load_mnli",
    "qqp": "kdtrack.data.text:load_qqp",
    "agnews": "kdtrack.data.text:load_agnews",
    "imdb": "kdtrack.data.text:load_imdb",
}
TEXT_DATASETS = tuple(name for name, where in DATASETS.items() if where.startswith("kdtrack.data.text:"))
LAZY = {"Splits": "kdtrack.data.splits", "FolderImages": "kdtrack.data.folders"}


def reader(name: str):
    """The function that reads data set `name` from disk (its module is imported now)."""
    return pkgutil.resolve_name(DATASETS[name])


def load_dataset(name: str, data_dir: str, download: bool, train_size: int, label_noise: float,
                 seed: int, **options):
    """Read `name` from `data_dir`, subsample `train_size` points and flip `label_noise` of them.
    `options` reach the reader: image_size and workers (folder data), tokenizer and max_length (text)."""
    from kdtrack.data.splits import make_splits

    pool = reader(name)(Path(data_dir), download, **options)
    return make_splits(name, pool, train_size, label_noise, seed)


def __getattr__(name: str):
    """`kdtrack.data.Splits` and `kdtrack.data.FolderImages`: their module is imported when first asked for."""
    if name not in LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(LAZY[name]), name)


__all__ = ["DATASETS", "TEXT_DATASETS", "FolderImages", "Splits", "load_dataset"]

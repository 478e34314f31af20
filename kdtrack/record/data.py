"""The data a recorder evaluates the models on: a data set of kdtrack's registry, by name, or the
user's own as tensors or DataLoaders, read once so that every snapshot scores the same points."""
from __future__ import annotations

from typing import Mapping

import torch

from kdtrack.data import DATASETS, Splits, load_dataset
from kdtrack.errors import UserError

SPLITS = ("train", "test")
ALLOWED = (f"a data set of kdtrack's registry ({', '.join(DATASETS)}) or "
           "{'train': (inputs, labels), 'test': (inputs, labels)} of tensors or DataLoaders of (inputs, labels)")


def splits_of(data, seed: int, train_size: int = 0, label_noise: float = 0.0, data_dir: str = "data") -> Splits:
    """`data` as Splits: a registry name is read (offline) and subsampled like kdtrack's own runs
    (`train_size`, `label_noise`, `seed`); the user's own splits are taken as they are, with no
    label noise known."""
    if isinstance(data, str):
        if data not in DATASETS:
            raise UserError(f"data={data!r} is not a data set kdtrack knows; allowed: {ALLOWED}")
        return load_dataset(data, data_dir, False, train_size, label_noise, seed)
    if train_size or label_noise:
        raise UserError(f"train_size={train_size!r}, label_noise={label_noise!r} with data of type "
                        f"{type(data).__name__}; allowed: 0 and 0.0, as they subsample a registry data set only")
    if isinstance(data, Splits):
        return data
    if not (isinstance(data, Mapping) and set(data) == set(SPLITS)):
        raise UserError(f"data of type {type(data).__name__} cannot be recorded; allowed: {ALLOWED}")
    (x_train, y_train), (x_test, y_test) = (_tensors(data[split], split) for split in SPLITS)
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    return Splits("own", x_train, y_train, y_train.clone(), x_test, y_test, num_classes, "the user's tensors")


def _tensors(part, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) of one split, from a pair of tensors or from (inputs, labels) batches."""
    if isinstance(part, (tuple, list)) and len(part) == 2 and all(isinstance(t, torch.Tensor) for t in part):
        inputs, labels = part
    else:
        batches = list(part)
        if not all(isinstance(b, (tuple, list)) and len(b) == 2 for b in batches):
            raise UserError(f"data[{split!r}] yields batches that are not (inputs, labels) pairs; allowed: {ALLOWED}")
        inputs, labels = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    if labels.dtype not in (torch.int32, torch.int64) or labels.dim() != 1 or len(labels) != len(inputs):
        raise UserError(f"data[{split!r}] has labels of dtype {labels.dtype} and shape {tuple(labels.shape)} for "
                        f"{len(inputs)} inputs; allowed: one integer class per input")
    return inputs, labels.long()

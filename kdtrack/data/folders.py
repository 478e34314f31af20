"""Image data sets too large for memory, read from class folders: Tiny-ImageNet and ImageNet.

The images stay on disk as a list of files; a DataLoader with worker processes and pinned memory
decodes (and, for training, augments) them per batch. `FolderImages[indices]` reads a few images
(a model's example input) in this process and more (the eigendirections' sample) through workers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from kdtrack.data.splits import Pool
from kdtrack.errors import UserError

if TYPE_CHECKING:
    from torchvision.transforms import v2


@dataclass(frozen=True)
class FolderImages:
    """Image files of one split, decoded to `size` x `size` RGB on demand."""

    paths: tuple[str, ...]
    size: int
    resize: int  # evaluation: resize the short side to this, then center-crop `size`
    random_resized_crop: bool  # training augmentation: ImageNet's (True) or crop-with-padding (False)
    workers: int = 0  # 0 = min(8, CPUs)
    device: torch.device = torch.device("cpu")

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.paths), 3, self.size, self.size)

    def to(self, device) -> "FolderImages":
        return replace(self, device=torch.device(device))

    def subset(self, indices: np.ndarray) -> "FolderImages":
        return replace(self, paths=tuple(self.paths[i] for i in indices))

    def transform(self, train: bool) -> v2.Transform:
        from torchvision.transforms import v2  # torchvision costs 2.5 s of start-up: imported where used

        if train and self.random_resized_crop:
            steps = [v2.RandomResizedCrop(self.size, antialias=True), v2.RandomHorizontalFlip()]
        elif train:  # standard augmentation of He et al. (2016)
            steps = [v2.Resize(self.size, antialias=True), v2.CenterCrop(self.size),
                     v2.RandomCrop(self.size, padding=self.size // 8), v2.RandomHorizontalFlip()]
        else:
            steps = [v2.Resize(self.resize, antialias=True), v2.CenterCrop(self.size)]
        return v2.Compose(steps + [v2.PILToTensor()])

    def loader(self, batches: list[list[int]], train: bool, seed: int = 0) -> torch.utils.data.DataLoader:
        """Batches of uint8 images in the given index lists, decoded by worker processes. A training
        image's crop and flip depend only on (`seed`, its index), not on which worker reads it, so
        an epoch resumed from any batch repeats them exactly."""
        workers = self.workers or min(8, os.cpu_count() or 1)
        return torch.utils.data.DataLoader(
            _Decoded(self.paths, self.transform(train), seed if train else None), batch_sampler=batches,
            num_workers=workers, pin_memory=self.device.type == "cuda",
            multiprocessing_context="fork" if workers else None)

    def batches(self, batches: list[list[int]], train: bool, seed: int = 0):
        """Float [0, 1] batches on `device`, in the order of `batches`."""
        try:
            for images in self.loader(batches, train, seed):
                yield images.to(self.device, non_blocking=True).float().div_(255)
        except UserError as error:  # PyTorch re-raises a worker's error with its traceback prepended
            # That traceback and PyTorch's frames form a cycle that would keep the workers alive
            # until some later garbage collection; cut, the loader shuts them down now.
            error.__traceback__ = None
            last = str(error).strip().splitlines()[-1]
            raise UserError(last.removeprefix(f"{UserError.__module__}.UserError: ")) from None

    def __getitem__(self, index) -> torch.Tensor:
        """Evaluation-transformed images at `index` (a slice or indices), on `device`."""
        chosen = list(range(len(self))[index] if isinstance(index, slice) else torch.as_tensor(index).tolist())
        if len(chosen) > 64:  # enough to pay the workers' start-up (the eigendirections' sample)
            return torch.cat(list(self.batches([chosen[i:i + 256] for i in range(0, len(chosen), 256)], False)))
        decoded = _Decoded(self.paths, self.transform(False))
        images = [decoded[i] for i in chosen]
        return torch.stack(images).to(self.device).float().div_(255)


class _Decoded(torch.utils.data.Dataset):
    """Decoded, transformed images; with a `seed`, the random transform of image i is drawn from
    its own seed (torch's global generator, which torchvision's transforms use, forked around it)."""

    def __init__(self, paths, transform, seed: int | None = None):
        self.paths, self.transform, self.seed = paths, transform, seed

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        if self.seed is None:
            return self.transform(_decode(self.paths[i]))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed << 32) + i)  # < 2**32 images per split
            return self.transform(_decode(self.paths[i]))


def _decode(path: str) -> Image.Image:
    """RGB, also for the grayscale JPEGs Tiny-ImageNet and ImageNet contain. (PIL: torchvision's
    own decoders are deprecated since 0.29.) An unreadable file fails the run with its path."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except OSError as error:
        raise UserError(f"unreadable image {path}: {error}") from None


def load_tinyimagenet(data_dir: Path, download: bool, image_size: int = 0, workers: int = 0, **_) -> Pool:
    """`tiny-imagenet-200/` as published: wnids.txt, train/<wnid>/images/*.JPEG, and
    val/images/*.JPEG labelled by val/val_annotations.txt (the test split has no labels)."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    root = data_dir / "tiny-imagenet-200"
    layout = ("tiny-imagenet-200/wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG and "
              "val/val_annotations.txt")
    annotations = root / "val" / "val_annotations.txt"
    if not (root / "wnids.txt").exists() or not (root / "train").is_dir() or not annotations.exists():
        raise UserError(f"Tiny-ImageNet not found under {root}: expected {layout}")
    wnids = sorted((root / "wnids.txt").read_text().split())
    index = {wnid: k for k, wnid in enumerate(wnids)}
    train = make_dataset(str(root / "train"), index, extensions=IMG_EXTENSIONS, allow_empty=True)
    val_paths, val_labels = [], []
    for line_number, line in enumerate(annotations.read_text().splitlines(), 1):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise UserError(f"malformed {annotations}, line {line_number}: expected "
                            f"'<file>\\t<wnid in wnids.txt>\\t...', got {line[:80]!r}")
        val_paths.append(str(root / "val" / "images" / fields[0]))
        val_labels.append(index[fields[1]])
    missing = [p for p in val_paths if not os.path.exists(p)]
    if not train or missing:
        raise UserError(f"Tiny-ImageNet under {root} is incomplete: "
                        + (f"{missing[0]} is missing" if missing else "no training images") + f"; expected {layout}")
    size = image_size or 64
    return Pool(FolderImages(tuple(p for p, _ in train), size, size, False, workers), np.array([y for _, y in train]),
                FolderImages(tuple(val_paths), size, size, False, workers), np.array(val_labels), len(wnids), str(root))


def load_imagenet(data_dir: Path, download: bool, image_size: int = 0, workers: int = 0, **_) -> Pool:
    """ImageNet as class folders (torchvision's ImageFolder layout): train/<wnid>/*.JPEG and
    val/<wnid>/*.JPEG with the same classes. Evaluation resizes to 256/224 of `image_size`
    (224 by default) and center-crops; training uses random-resized crops and flips."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    root = data_dir / "imagenet"
    layout = "imagenet/train/<class>/*.JPEG and imagenet/val/<class>/*.JPEG (ImageFolder layout)"
    try:
        classes, index = find_classes(str(root / "train"))
        val_classes, _ = find_classes(str(root / "val"))
    except (FileNotFoundError, OSError):
        raise UserError(f"ImageNet not found under {root}: expected {layout}") from None
    if val_classes != classes:
        raise UserError(f"ImageNet under {root}: val/ has {len(val_classes)} class folders and train/ has "
                        f"{len(classes)}; expected the same classes ({layout})")
    size = image_size or 224
    splits = [make_dataset(str(root / s), index, extensions=IMG_EXTENSIONS) for s in ("train", "val")]
    (x_tr, y_tr), (x_te, y_te) = [
        (FolderImages(tuple(p for p, _ in s), size, round(size * 256 / 224), True, workers),
         np.array([y for _, y in s]))
        for s in splits]
    return Pool(x_tr, y_tr, x_te, y_te, len(classes), str(root))

"""Standard image augmentation (He et al. 2016: random crop with zero padding, horizontal flip)
as one gather on the device, for data sets that live there as tensors: no DataLoader, no
per-image Python. The random draws come from a CPU generator that checkpoints carry."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def crop_flip_draws(n: int, padding: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: the crop's top-left corner in the padded image, and whether to flip."""
    shifts = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator)
    flips = torch.randint(0, 2, (n,), generator=generator).bool()
    return shifts, flips


def crop_flip(x: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor, padding: int) -> torch.Tensor:
    """x (n, c, h, w) zero-padded by `padding`, cropped back to h x w at `shifts`, mirrored where `flips`."""
    n, c, h, w = x.shape
    shifts, flips = shifts.to(x.device), flips.to(x.device)
    padded = F.pad(x, (padding,) * 4)
    rows = shifts[:, :1] + torch.arange(h, device=x.device)
    cols = shifts[:, 1:] + torch.arange(w, device=x.device)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    images = torch.arange(n, device=x.device)[:, None, None, None]
    channels = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[images, channels, rows[:, None, :, None], cols[:, None, None, :]]


def augment(x: torch.Tensor, generator: torch.Generator, of: int = 0, at: int = 0) -> torch.Tensor:
    """Padding of 4 pixels per 32 (CIFAR's 4). `x` may be the images `at`, `at + 1`, ... of a batch
    of `of` (a data-parallel rank's part): the draws are the whole batch's, so that each image is
    augmented as in one process."""
    padding = max(1, x.shape[-1] // 8)
    shifts, flips = crop_flip_draws(of or len(x), padding, generator)
    return crop_flip(x, shifts[at:at + len(x)], flips[at:at + len(x)], padding)

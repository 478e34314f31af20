"""Model registry: every architecture of the paper by name, with its default sizes, known without
importing torch (config validation and `kdtrack params` need only these).

`build_model` and the other functions that need torch live in kdtrack.models.build and are
imported on first use: `from kdtrack.models import build_model` works, and importing this package
does not import torch.
"""
from __future__ import annotations

from importlib import import_module

# (width, depth) defaults; None marks a size the architecture does not take (it must stay 0).
SIZES: dict[str, tuple[int | None, int | None]] = {
    "random_features": (5000, 1), "mlp": (1000, 2), "cnn": (100, 3),  # Table 7
    "resnet20": (16, None), "resnet56": (16, None),  # width = channels of the first stage
    "resnet18": (None, None), "resnet50": (None, None), "mobilenet_v2": (None, None),
    "roberta_small": (512, 4), "roberta_medium": (512, 8), "roberta_base": (768, 12),  # hidden, layers
}
ARCHITECTURES = tuple(SIZES)
TEXT_ARCHITECTURES = ("roberta_small", "roberta_medium", "roberta_base")
# Those with BatchNorm layers, known without building them: on several processes their layers become
# SyncBatchNorm, which runs on CUDA only (kdtrack.pipeline.replicas). tests/training/test_distributed.py checks it
# against a build of every architecture.
BATCH_NORM_ARCHITECTURES = ("resnet20", "resnet56", "resnet18", "resnet50", "mobilenet_v2")

# Names this package offers from modules that import torch, by module.
LAZY = {**dict.fromkeys(("build_model", "check_fits", "check_memory", "portable", "_build"), "kdtrack.models.build"),
        "RandomFeatures": "kdtrack.models.table7"}


def __getattr__(name: str):
    """`kdtrack.models.build_model` and the like: their module is imported when first asked for."""
    if name not in LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(LAZY[name]), name)

"""Model registry: every architecture of the paper, built by `build_model` from its name."""
from __future__ import annotations

import math

from torch import nn

from kdtrack.errors import UserError
from kdtrack.models.table7 import RandomFeatures, cnn, mlp

# (width, depth) defaults; None marks a size the architecture does not take (it must stay 0).
SIZES: dict[str, tuple[int | None, int | None]] = {
    "random_features": (5000, 1), "mlp": (1000, 2), "cnn": (100, 3),  # Table 7
    "resnet20": (16, None), "resnet56": (16, None),  # width = channels of the first stage
    "resnet18": (None, None), "resnet50": (None, None), "mobilenet_v2": (None, None),
    "roberta_small": (512, 4), "roberta_medium": (512, 8), "roberta_base": (768, 12),  # hidden, layers
}
ARCHITECTURES = tuple(SIZES)
TEXT_ARCHITECTURES = ("roberta_small", "roberta_medium", "roberta_base")


def check_fits(arch: str, depth: int, input_shape: tuple[int, ...], prefix: str = "") -> None:
    """Refuse sizes an architecture cannot take on these inputs, before any training: each of the
    cnn's blocks halves the image side. (The others pool adaptively or flatten.)"""
    depth = depth or SIZES[arch][1] or 0
    if arch == "cnn" and min(input_shape[1:]) >> depth == 0:
        side = min(input_shape[1:])
        raise UserError(f"{prefix}depth={depth} is too deep for {prefix}arch='cnn' on {side}x{side} images (each block "
                        f"halves the side); allowed: {prefix}depth <= {side.bit_length() - 1}")


def portable(model: nn.Module) -> nn.Module:
    """The module logged as the run's model (exported by MLflow): random features draw their
    projection again from the seed instead of storing it."""
    return model.portable() if isinstance(model, RandomFeatures) else model


def build_model(arch: str, input_shape: tuple[int, ...], num_classes: int, width: int = 0, depth: int = 0,
                vocab_size: int = 0, pad_id: int = 1, pretrained: str = "", seed: int = 0) -> nn.Module:
    """A freshly initialized model (or `pretrained`'s weights, text only); width/depth 0 take the
    defaults above. Text models take `vocab_size` and `pad_id` from the tokenizer; random features
    draw their fixed projection from `seed` (the rest from torch's global generator)."""
    check_fits(arch, depth, input_shape)
    default_width, default_depth = SIZES[arch]
    width, depth = width or default_width or 0, depth or default_depth or 0
    if arch == "random_features":
        return RandomFeatures(math.prod(input_shape), num_classes, width, seed)
    if arch == "mlp":
        return mlp(math.prod(input_shape), num_classes, width, depth)
    if arch == "cnn":
        return cnn(input_shape, num_classes, width, depth)
    from kdtrack.models import resnet

    if arch in ("resnet20", "resnet56"):
        return resnet.CifarPreActResNet(int(arch[6:]), num_classes, width, input_shape[0])
    if arch in ("resnet18", "resnet50"):
        return resnet.torchvision_resnet(int(arch[6:]), input_shape, num_classes)
    if arch == "mobilenet_v2":
        return resnet.mobilenet_v2(input_shape, num_classes)
    from kdtrack.models.roberta import SequenceClassifier

    return SequenceClassifier(num_classes, input_shape[0], vocab_size, pad_id, width, depth, pretrained)

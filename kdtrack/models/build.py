"""Building the registry's architectures (kdtrack.models): `build_model` from a name, and the checks
that refuse a model before it is built (`check_fits`, `check_memory`)."""
from __future__ import annotations

import math
import os

import torch
from torch import nn

from kdtrack.errors import UserError
from kdtrack.models import SIZES
from kdtrack.models.table7 import RandomFeatures, cnn, mlp


def check_fits(arch: str, depth: int, input_shape: tuple[int, ...], prefix: str = "", width: int = 0,
               num_classes: int = 0, **extras) -> None:
    """Refuse sizes an architecture cannot take on these inputs, before any training: each of the
    cnn's blocks halves the image side (the others pool adaptively or flatten); and, given
    `num_classes`, a model too large to train in this machine's memory (`check_memory`)."""
    blocks = depth or SIZES[arch][1] or 0
    if arch == "cnn" and min(input_shape[1:]) >> blocks == 0:
        side = min(input_shape[1:])
        raise UserError(f"{prefix}depth={blocks} is too deep for {prefix}arch='cnn' on {side}x{side} images "
                        f"(each block halves the side); allowed: {prefix}depth <= {side.bit_length() - 1}")
    if num_classes:
        check_memory(arch, input_shape, num_classes, width, depth, prefix, **extras)


def least_parameters(arch: str, input_shape: tuple[int, ...], num_classes: int, width: int, depth: int) -> int:
    """A lower bound on the trainable weights, by arithmetic alone: `check_memory` refuses a model
    that exceeds memory even by this count before building anything (a million layers took minutes
    to build on the meta device). 0 for architectures of fixed size."""
    default_width, default_depth = SIZES[arch]
    if default_width is None:
        return 0
    w, d, inputs = width or default_width, depth or default_depth or 1, math.prod(input_shape)
    if default_depth is None:  # a ResNet whose first stage has w channels: one 3x3 conv of them
        return 9 * w * w
    if arch == "random_features":  # only the head trains
        return w * num_classes
    if arch == "cnn":
        return 36 * w * (input_shape[0] + (d - 1) * w)
    if arch == "mlp":
        return w * (inputs + (d - 1) * w + num_classes)
    return d * 12 * w * w  # a transformer block: attention 4 w^2 and feed-forward 8 w^2


# Training holds the weights, their gradients and up to two optimizer moments (Adam's): 4 copies.
TRAINING_COPIES = 4


def memory_bytes() -> int:
    """What training can use: the GPU's memory where training runs on one, else the machine's."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(arch: str, input_shape: tuple[int, ...], num_classes: int, width: int = 0, depth: int = 0,
                 prefix: str = "", **extras) -> None:
    """Refuse a model whose training would not fit in memory, before building it: the model is
    built on PyTorch's meta device, which allocates nothing, and its tensors counted. (A
    pretrained text model is as large as its checkpoint: not checked.)"""
    least = TRAINING_COPIES * 4 * least_parameters(arch, input_shape, num_classes, width, depth)
    if least > memory_bytes():
        raise UserError(f"{prefix}arch={arch!r} with {prefix}width={width} and {prefix}depth={depth} needs at least "
                        f"{least / 2**30:.3g} GiB to train; this machine has {memory_bytes() / 2**30:.1f} GiB; "
                        f"allowed: a smaller {prefix}width or {prefix}depth")
    with torch.random.fork_rng(devices=[]), torch.device("meta"):  # the real build draws the same numbers
        model = _build(arch, input_shape, num_classes, width, depth, **extras)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    needed, available = TRAINING_COPIES * weights + buffers, memory_bytes()
    if needed > available:
        raise UserError(f"{prefix}arch={arch!r} with {prefix}width={width} and {prefix}depth={depth} needs "
                        f"{needed / 2**30:.1f} GiB to train ({weights / 2**30:.1f} GiB of weights, x{TRAINING_COPIES} "
                        f"for gradients and optimizer moments, and {buffers / 2**30:.1f} GiB of buffers); this "
                        f"machine has {available / 2**30:.1f} GiB; allowed: a smaller {prefix}width or {prefix}depth")


def portable(model: nn.Module) -> nn.Module:
    """The module logged as the run's model (exported by MLflow): random features draw their
    projection again from the seed instead of storing it."""
    return model.portable() if isinstance(model, RandomFeatures) else model


def build_model(arch: str, input_shape: tuple[int, ...], num_classes: int, width: int = 0, depth: int = 0,
                vocab_size: int = 0, pad_id: int = 1, pretrained: str = "", seed: int = 0) -> nn.Module:
    """A freshly initialized model (or `pretrained`'s weights, text only); width/depth 0 take the
    defaults above. Text models take `vocab_size` and `pad_id` from the tokenizer; random features
    draw their fixed projection from `seed` (the rest from torch's global generator)."""
    check_fits(arch, depth, input_shape, width=width, num_classes=0 if pretrained else num_classes,
               vocab_size=vocab_size, pad_id=pad_id, seed=seed)
    return _build(arch, input_shape, num_classes, width, depth, vocab_size, pad_id, pretrained, seed)


def _build(arch: str, input_shape: tuple[int, ...], num_classes: int, width: int = 0, depth: int = 0,
           vocab_size: int = 0, pad_id: int = 1, pretrained: str = "", seed: int = 0) -> nn.Module:
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

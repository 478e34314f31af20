"""The small architectures of Table 7 (Appendix D), used to verify the eigenspace theory."""
from __future__ import annotations

import math

import torch
from torch import nn


class RandomFeatures(nn.Module):
    """`width` fixed ReLU random features of the flattened input, and a trained linear head.

    The projection is a buffer, not a parameter: it is saved and shared through `same_init` but
    never trained, so the model is linear in what it learns (the setting of Theorem 4.1).
    """

    def __init__(self, input_dim: int, num_classes: int, width: int):
        super().__init__()
        self.register_buffer("projection", torch.randn(width, input_dim) / math.sqrt(input_dim))
        self.register_buffer("offset", torch.randn(width) * 0.1)
        self.head = nn.Linear(width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x.flatten(1) @ self.projection.T + self.offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def mlp(input_dim: int, num_classes: int, width: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    for layer in range(depth):
        layers += [nn.Linear(input_dim if layer == 0 else width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, num_classes))


def cnn(input_shape: tuple[int, ...], num_classes: int, width: int, depth: int) -> nn.Sequential:
    """`depth` blocks of conv 6x6 ('same' padding) -> ReLU -> max-pool 2x2, then a linear head."""
    layers: list[nn.Module] = []
    channels = input_shape[0]
    for _ in range(depth):
        layers += [nn.Conv2d(channels, width, kernel_size=6, padding="same"), nn.ReLU(), nn.MaxPool2d(2)]
        channels = width
    body = nn.Sequential(*layers, nn.Flatten())
    with torch.no_grad():
        flat = body(torch.zeros(1, *input_shape)).shape[1]
    return nn.Sequential(*body, nn.Linear(flat, num_classes))

"""The image architectures of Table 2: CIFAR pre-activation ResNets (ResNet-v2, He et al. 2016)
and torchvision's ResNet-18/50 and MobileNet-v2, with stems for 32x32 and 64x64 inputs."""
from __future__ import annotations

import torchvision
from torch import nn

SMALL_INPUT = 64  # up to this side length, the ImageNet stem's 4x downsampling is removed


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus the identity (a 1x1 projection where the shape changes)."""

    def __init__(self, channels_in: int, channels_out: int, stride: int):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(channels_in), nn.BatchNorm2d(channels_out)
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or channels_in != channels_out:
            self.shortcut = nn.Conv2d(channels_in, channels_out, 1, stride, bias=False)

    def forward(self, x):
        out = self.bn1(x).relu()
        identity = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        return self.conv2(self.bn2(out).relu()) + identity


class CifarPreActResNet(nn.Module):
    """ResNet-`depth` for CIFAR: a 3x3 stem, three stages of (depth - 2) / 6 blocks with
    `width`, 2x and 4x channels (16, 32, 64 in the paper), then BN-ReLU, global pooling, linear."""

    def __init__(self, depth: int, num_classes: int, width: int = 16, in_channels: int = 3):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2, got {depth}")
        blocks = (depth - 2) // 6
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)]
        channels = width
        for stage in range(3):
            out = width * 2 ** stage
            for block in range(blocks):
                layers.append(PreActBlock(channels, out, 2 if stage and not block else 1))
                channels = out
        layers += [nn.BatchNorm2d(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


def torchvision_resnet(depth: int, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """torchvision's ResNet-18/50; for small inputs the 7x7/2 stem and max-pool become a 3x3/1 conv."""
    model = {18: torchvision.models.resnet18, 50: torchvision.models.resnet50}[depth](num_classes=num_classes)
    if input_shape[-1] <= SMALL_INPUT:
        model.conv1 = nn.Conv2d(input_shape[0], 64, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    return model


def mobilenet_v2(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """torchvision's MobileNet-v2 (width 1.0); for small inputs the stem's stride 2 becomes 1."""
    model = torchvision.models.mobilenet_v2(num_classes=num_classes, width_mult=1.0)
    if input_shape[-1] <= SMALL_INPUT:
        model.features[0][0].stride = (1, 1)
    return model

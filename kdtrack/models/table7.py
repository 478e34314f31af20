"""The small architectures of Table 7 (Appendix D), used to verify the eigenspace theory."""
from __future__ import annotations

import hashlib
import math

import torch
from torch import nn

from kdtrack.errors import UserError


def _signed(value: int) -> int:
    """A 64-bit pattern as the int64 torch holds it."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def _shift_right(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical shift of int64 bit patterns (torch's `>>` is arithmetic: it copies the sign bit)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def _mix(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finalizer on int64 tensors (multiplication wraps around, as in C)."""
    x = (x ^ _shift_right(x, 30)) * _signed(0xBF58476D1CE4E5B9)
    x = (x ^ _shift_right(x, 27)) * _signed(0x94D049BB133111EB)
    return x ^ _shift_right(x, 31)


def seeded_normal(seed: int, stream: int, shape: tuple[int, ...], device=None) -> torch.Tensor:
    """Standard normal float32 numbers that depend on (seed, stream, position) only: SplitMix64
    of a counter gives two 32-bit uniforms, and Box-Muller (in float64) two normals from them.
    Made of torch ops alone, so an exported graph (`Regenerating`) computes them too, and no
    torch RNG's state or version enters."""
    count = math.prod(shape)
    pairs = (count + 1) // 2
    key = _signed((seed * 0x9E3779B97F4A7C15 + stream * 0xD1B54A32D192ED03 + 1) * 0xBF58476D1CE4E5B9)
    bits = _mix(torch.arange(pairs, dtype=torch.int64, device=device) * _signed(0x9E3779B97F4A7C15) + key)
    scale = 2.0 ** -32  # uniforms in (0, 1): the logarithm stays finite
    radius = torch.sqrt(-2 * torch.log((_shift_right(bits, 32).double() + 0.5) * scale))
    angle = (2 * math.pi * scale) * ((bits & 0xFFFFFFFF).double() + 0.5)
    return torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)])[:count].float().reshape(shape)


def random_layer(seed: int, input_dim: int, width: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed projection (width x input_dim, variance 1 / input_dim) and offsets of `seed`."""
    projection = seeded_normal(seed, 0, (width, input_dim), device) / math.sqrt(input_dim)
    return projection, seeded_normal(seed, 1, (width,), device) * 0.1


def digest(*tensors: torch.Tensor) -> torch.Tensor:
    """SHA-256 of the tensors' bytes, as 32 uint8 values (a state-dict entry)."""
    hasher = hashlib.sha256()
    for tensor in tensors:
        hasher.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return torch.frombuffer(bytearray(hasher.digest()), dtype=torch.uint8)


class RandomFeatures(nn.Module):
    """`width` fixed ReLU random features of the flattened input, and a trained linear head.

    The projection is a buffer, not a parameter: never trained, so the model is linear in what it
    learns (the setting of Theorem 4.1). It is drawn from `seed` alone and left out of the state
    dict (784 x 5000 floats are 16 MB, 99% of the model, in every checkpoint), which holds its
    SHA-256 instead: a state whose digest differs from the rebuilt projection's is refused.
    """

    def __init__(self, input_dim: int, num_classes: int, width: int, seed: int = 0):
        super().__init__()
        self.seed = seed
        projection, offset = random_layer(seed, input_dim, width)
        self.register_buffer("projection", projection, persistent=False)
        self.register_buffer("offset", offset, persistent=False)
        # Built on the meta device to size it (models.check_memory), it has no bytes to hash.
        hashed = torch.zeros(32, dtype=torch.uint8) if projection.is_meta else digest(projection, offset)
        self.register_buffer("features_digest", hashed)
        self.head = nn.Linear(width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x.flatten(1) @ self.projection.T + self.offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if prefix + "projection" in state_dict:  # written before it was rebuilt from the seed: take it as it is
            self.projection = state_dict.pop(prefix + "projection").to(self.projection)
            self.offset = state_dict.pop(prefix + "offset").to(self.offset)
            self.features_digest = digest(self.projection, self.offset).to(self.features_digest.device)
            state_dict[prefix + "features_digest"] = self.features_digest
        saved = state_dict.get(prefix + "features_digest")
        if saved is not None and not torch.equal(saved.cpu(), self.features_digest.cpu()):
            raise UserError(f"random-features weights do not match their projection: it was rebuilt from seed "
                            f"{self.seed} with digest {bytes(self.features_digest.tolist()).hex()[:16]}..., the "
                            f"weights were trained on {bytes(saved.tolist()).hex()[:16]}... (another seed or "
                            "generator); retrain with force=true")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def portable(self) -> nn.Module:
        """This model for `torch.export` (the logged model): the projection recomputed from the
        seed at each call instead of stored in the exported file."""
        return Regenerating(self)


class Regenerating(nn.Module):
    """A RandomFeatures model that draws its projection again at each call (1.5-3 s for
    784 x 5000 on 2 loaded cores): an exported graph then holds the head's weights only."""

    def __init__(self, model: RandomFeatures):
        super().__init__()
        self.seed, self.input_dim, self.width = model.seed, model.projection.shape[1], model.projection.shape[0]
        self.head = model.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        projection, offset = random_layer(self.seed, self.input_dim, self.width, x.device)
        return self.head(torch.relu(x.flatten(1) @ projection.T + offset))


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

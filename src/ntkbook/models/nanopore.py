"""Networks of the nanopore chapter (Flax, no batch statistics).

:class:`ScaleogramResNet` (residual blocks with group normalisation) for images of any number
of channels, :class:`EventCNN1D` for resampled raw events and :class:`FeatureMLP` for feature
tables. Each ends in a ``Dense`` named ``head`` (the layer that head fine-tuning trains).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn

__all__ = ["ScaleogramResNet", "EventCNN1D", "FeatureMLP"]


class _ResidualBlock(nn.Module):
    features: int
    stride: int

    @nn.compact
    def __call__(self, x):
        groups = min(8, self.features)
        y = nn.Conv(self.features, (3, 3), (self.stride, self.stride))(x)
        y = nn.relu(nn.GroupNorm(num_groups=groups)(y))
        y = nn.Conv(self.features, (3, 3))(y)
        y = nn.GroupNorm(num_groups=groups)(y)
        if x.shape[-1] != self.features or self.stride != 1:
            x = nn.Conv(self.features, (1, 1), (self.stride, self.stride))(x)
        return nn.relu(x + y)


class ScaleogramResNet(nn.Module):
    """Small ResNet: ``conv3×3 → [residual block]×len(widths) (stride 2 after the first) →
    global average pool → Dense(n_classes)``. Inputs ``(N, H, W)`` or ``(N, H, W, C)``."""

    widths: Sequence[int] = (16, 32, 64)
    n_classes: int = 42

    @nn.compact
    def __call__(self, x):
        if x.ndim == 3:
            x = x[..., None]
        x = nn.relu(nn.Conv(self.widths[0], (3, 3))(x))
        for i, width in enumerate(self.widths):
            x = _ResidualBlock(width, 1 if i == 0 else 2)(x)
        return nn.Dense(self.n_classes, name="head")(x.mean(axis=(1, 2)))


class EventCNN1D(nn.Module):
    """``[Conv1D(k=7) → relu → max-pool 2]×len(widths) → global average pool → Dense``."""

    widths: Sequence[int] = (16, 32, 64)
    n_classes: int = 42

    @nn.compact
    def __call__(self, x):
        if x.ndim == 2:
            x = x[..., None]
        for width in self.widths:
            x = nn.relu(nn.Conv(width, (7,))(x))
            x = nn.max_pool(x, (2,), (2,))
        return nn.Dense(self.n_classes, name="head")(x.mean(axis=1))


class FeatureMLP(nn.Module):
    """``[Dense → relu]×len(hidden) → Dense(n_classes)`` on standardised features."""

    hidden: Sequence[int] = (128, 128)
    n_classes: int = 42

    @nn.compact
    def __call__(self, x):
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.n_classes, name="head")(x)

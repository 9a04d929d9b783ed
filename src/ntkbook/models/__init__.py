"""Flax models used by the chapters."""

from ntkbook.models.cnn import CNN
from ntkbook.models.mlp import MLP, ResidualMLP, activation

__all__ = ["MLP", "ResidualMLP", "CNN", "activation"]

"""Flax models used by the chapters."""

from ntkbook.models.autoencoder import AutoEncoder
from ntkbook.models.cnn import CNN
from ntkbook.models.gnn import GCN, node_function
from ntkbook.models.mlp import MLP, ResidualMLP, activation
from ntkbook.models.nanopore import EventCNN1D, FeatureMLP, ScaleogramResNet
from ntkbook.models.transformer import Transformer

__all__ = [
    "MLP",
    "ResidualMLP",
    "CNN",
    "Transformer",
    "AutoEncoder",
    "GCN",
    "node_function",
    "activation",
    "ScaleogramResNet",
    "EventCNN1D",
    "FeatureMLP",
]

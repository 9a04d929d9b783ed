"""Offline datasets and data selection."""

from ntkbook.data.datasets import (
    DATASETS,
    Dataset,
    GraphDataset,
    RegressionDataset,
    load_auto_mpg,
    load_dataset,
    load_karate_club,
    sequence_mode_task,
)
from ntkbook.data.selection import random_select, rnd_select

__all__ = [
    "Dataset",
    "load_dataset",
    "DATASETS",
    "RegressionDataset",
    "GraphDataset",
    "load_auto_mpg",
    "load_karate_club",
    "sequence_mode_task",
    "rnd_select",
    "random_select",
]

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
from ntkbook.data.selection import (
    RNDSelection,
    class_coverage,
    fit_and_test,
    mean_squared_norm,
    norm_matched_select,
    random_select,
    rnd_select,
)

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
    "RNDSelection",
    "random_select",
    "norm_matched_select",
    "mean_squared_norm",
    "class_coverage",
    "fit_and_test",
]

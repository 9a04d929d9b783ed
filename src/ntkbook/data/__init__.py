"""Offline datasets and data selection."""

from ntkbook.data.datasets import DATASETS, Dataset, load_dataset

__all__ = ["Dataset", "load_dataset", "DATASETS"]

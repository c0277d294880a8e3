"""Datasets: the registry of named sets, loaders, splits and the live Materials Project."""

from __future__ import annotations

from gapforge.data.loaders import fingerprint, labelled_table, load_dataset, load_formulas, load_metal_labels
from gapforge.data.registry import REGISTRY, find_data_file, resolve
from gapforge.data.splits import Split, split_dataset

__all__ = [
    "REGISTRY",
    "Split",
    "find_data_file",
    "fingerprint",
    "labelled_table",
    "load_dataset",
    "load_formulas",
    "load_metal_labels",
    "resolve",
    "split_dataset",
]

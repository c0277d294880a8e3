"""Seeded train/validation/test splits (60/20/20 as in the paper)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Split:
    """Three disjoint parts of one table."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame

    def sizes(self) -> dict[str, int]:
        """Row counts of each part."""
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def split_indices(
    n: int, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2), seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded permutation of ``range(n)`` cut into train/val/test index arrays."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    perm = np.random.default_rng(seed).permutation(n)
    n_train = round(fractions[0] * n)
    n_val = round(fractions[1] * n)
    return perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :]


def split_dataset(
    df: pd.DataFrame, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2), seed: int = 0
) -> Split:
    """Split a table into seeded train/validation/test parts."""
    tr, va, te = split_indices(len(df), fractions, seed)
    return Split(df.iloc[tr].reset_index(drop=True), df.iloc[va].reset_index(drop=True),
                 df.iloc[te].reset_index(drop=True))  # fmt: skip

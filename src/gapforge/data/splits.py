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


#: matbench's own splitter seed (``KFold(n_splits=5, shuffle=True, random_state=18012019)``).
MATBENCH_SEED = 18012019


def matbench_folds(
    n: int, n_splits: int = 5, seed: int = MATBENCH_SEED
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The matbench folds over ``n`` rows in file order: ``[(train_idx, test_idx), ...]``."""
    from sklearn.model_selection import KFold

    return list(KFold(n_splits=n_splits, shuffle=True, random_state=seed).split(np.arange(n)))


def leakage_guard(extra: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """Rows of an extra training source whose formula is not in the test part.

    A benchmark that adds OQMD/AFLOW (or any other) rows to a fold's training data must
    not let the test fold's compositions in through them. Formulas are compared as
    reduced formulas (the ``formula`` column of both labelled tables), so ``Li2F2`` in
    an extra source and ``LiF`` in the test fold count as the same composition.
    """
    from gapforge import columns as C
    from gapforge.errors import FormulaError
    from gapforge.formula import normalize_formula

    def key(f: str) -> str:
        try:
            return normalize_formula(f)
        except FormulaError:  # fractional compositions keep their (already reduced) text
            return f

    banned = {key(f) for f in test[C.FORMULA]}
    keep = np.array([key(f) not in banned for f in extra[C.FORMULA]], dtype=bool)
    return extra[keep].reset_index(drop=True)

"""The screen's filters, each a vectorised function returning a boolean flag per formula.

* :func:`in_window` - predicted band gap inside ``[gap_min, gap_max]`` (eV);
* :func:`is_simple` - the paper's simplicity rule: fewer than ``max_atoms``
  atoms and fewer than ``max_elements`` elements in the reduced formula;
* :func:`smact_valid` - SMACT charge neutrality + electronegativity balance
  (vectorised, equal to :func:`smact.screening.smact_validity`);
* :func:`is_novel` - the reduced formula is not among the known formulas.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence

import numpy as np

from gapforge.encoding import n_atoms, n_elements_of
from gapforge.screening.validity import SmactChecker, SmactConfig


def in_window(band_gap_mean: np.ndarray, gap_min: float, gap_max: float | None = None) -> np.ndarray:
    """``gap_min <= gap <= gap_max`` (eV); NaN predictions are outside.

    Args:
        band_gap_mean: ``(N,)`` predicted band gaps (eV).
        gap_min: lowest gap kept.
        gap_max: highest gap kept (``None``: no upper bound).
    """
    from gapforge.window import GapWindow

    return GapWindow(gap_min, gap_max).contains(band_gap_mean)


def is_simple(counts: np.ndarray, max_atoms: int = 8, max_elements: int = 4) -> np.ndarray:
    """The paper's simplicity rule on reduced counts ``(N, E)``.

    A formula is simple when it has *fewer than* ``max_atoms`` atoms per
    reduced formula unit and *fewer than* ``max_elements`` distinct elements
    (Xin et al.: < 8 atoms, < 4 elements). An all-zero row (unreadable
    formula) is not simple.
    """
    counts = np.asarray(counts)
    atoms = n_atoms(counts)
    return (atoms > 0) & (atoms < max_atoms) & (n_elements_of(counts) < max_elements)


@functools.cache
def _checker(elements: tuple[str, ...], config: SmactConfig) -> SmactChecker:
    return SmactChecker(elements, config)


def smact_valid(counts: np.ndarray, elements: Sequence[str], config: SmactConfig | None = None) -> np.ndarray:
    """SMACT validity of reduced counts ``(N, E)`` over ``elements`` (``(N,)`` bool)."""
    return _checker(tuple(elements), config or SmactConfig()).check_counts(counts)


def is_novel(reduced_formulas: Sequence[str], known: Collection[str]) -> np.ndarray:
    """``True`` where the (pymatgen reduced) formula is not in ``known``; empty strings are not novel."""
    import pandas as pd

    s = pd.Series(list(reduced_formulas), dtype=object)
    return (~s.isin(set(known)) & (s != "")).to_numpy()


def known_formulas() -> frozenset[str]:
    """Reduced formulas of every known composition: :func:`gapforge.data.known.known_formulas`.

    The union of ``mp-e-form``, ``mp-gap``, ``mp-bandgap`` and ``mp-formulas``;
    needs the data (``GAPFORGE_DATA_PATH``); cached per process.
    """
    from gapforge.data.known import known_formulas as _known

    return _known()


__all__ = ["in_window", "is_novel", "is_simple", "known_formulas", "smact_valid"]

"""The target band-gap window: one type for the campaign objective, the screen, the ranking and the report.

A window is ``[gap_min, gap_max]`` eV, or open above (``gap_max = None``: a
wide-gap search, "gap >= gap_min"). Predictions come as a normal predictive
distribution (mean, std); :meth:`GapWindow.probability` is the probability
that the gap lies inside the window under it, the quantity candidates are
ranked by (column :data:`gapforge.columns.P_IN_WINDOW`).

Example:
    >>> w = GapWindow(2.0, 3.0)
    >>> str(w), w.closed, w.centre
    ('2.00–3.00 eV', True, 2.5)
    >>> round(float(w.probability(2.5, 0.5)), 3)
    0.683
    >>> str(GapWindow(6.0)), GapWindow(6.0).contains([5.9, 6.0, 9.0]).tolist()
    ('≥ 6.00 eV', [False, True, True])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import ndtr

from gapforge.errors import InputError

#: Smallest standard deviation (eV) used in :meth:`GapWindow.probability`: a zero or
#: missing spread is read as this (a near-certain prediction), never as a division by zero.
MIN_STD = 1e-6


@dataclass(frozen=True)
class GapWindow:
    """A band-gap window in eV.

    Attributes:
        gap_min: lower edge (eV, >= 0).
        gap_max: upper edge (eV, > ``gap_min``), or ``None`` for an open window.

    Raises:
        InputError: a negative or non-finite edge, or ``gap_max <= gap_min``.
    """

    gap_min: float
    gap_max: float | None = None

    def __post_init__(self) -> None:
        lo = self.gap_min
        if isinstance(lo, bool) or not isinstance(lo, int | float) or not math.isfinite(lo) or lo < 0:
            raise InputError("gap_min must be a band gap >= 0 eV", value=lo)
        object.__setattr__(self, "gap_min", float(lo))
        hi = self.gap_max
        if hi is not None:
            if isinstance(hi, bool) or not isinstance(hi, int | float) or not math.isfinite(hi):
                raise InputError("gap_max must be a finite band gap (eV) or left out", value=hi)
            if not hi > lo:
                raise InputError(f"gap_max must be above gap_min ({lo} eV)", value=hi)
            object.__setattr__(self, "gap_max", float(hi))

    # -- views ------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """``True`` for ``[gap_min, gap_max]``, ``False`` for an open window (``>= gap_min``)."""
        return self.gap_max is not None

    @property
    def open(self) -> bool:
        """``True`` for an open window (``>= gap_min``)."""
        return self.gap_max is None

    @property
    def upper(self) -> float:
        """``gap_max``, or ``inf`` for an open window."""
        return math.inf if self.gap_max is None else self.gap_max

    @property
    def centre(self) -> float:
        """Middle of a closed window; ``gap_min`` for an open one (eV)."""
        return self.gap_min if self.gap_max is None else 0.5 * (self.gap_min + self.gap_max)

    @property
    def bounds(self) -> tuple[float, float]:
        """``(gap_min, gap_max)`` with ``inf`` for an open window."""
        return self.gap_min, self.upper

    def __str__(self) -> str:
        if self.gap_max is None:
            return f"≥ {self.gap_min:.2f} eV"
        return f"{self.gap_min:.2f}–{self.gap_max:.2f} eV"

    # -- maths ------------------------------------------------------------------------------
    def contains(self, gap: Any) -> np.ndarray:
        """``gap_min <= gap <= gap_max`` per value (any shape); NaN is outside."""
        g = np.asarray(gap, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            ok = g >= self.gap_min
            if self.gap_max is not None:
                ok &= g <= self.gap_max
        return ok & np.isfinite(g)

    def probability(self, mean: Any, std: Any) -> np.ndarray:
        """P(gap in window) under a normal predictive distribution ``N(mean, std**2)``.

        A missing (NaN) or zero ``std`` is read as :data:`MIN_STD`; a NaN ``mean`` gives 0.
        Band gaps cannot be negative, but the normal is not truncated at 0: the
        probability is that of the window, as a model with this mean and spread states it.

        Args:
            mean: predicted gaps (eV), any shape.
            std: their standard deviations (eV), broadcastable to ``mean``.

        Returns:
            Probabilities in [0, 1], the broadcast shape of ``mean`` and ``std``.
        """
        m = np.asarray(mean, dtype=np.float64)
        s = np.asarray(std, dtype=np.float64)
        s = np.where(np.isfinite(s) & (s > MIN_STD), s, MIN_STD)
        p = 1.0 - ndtr((self.gap_min - m) / s)
        if self.gap_max is not None:
            p = p - (1.0 - ndtr((self.gap_max - m) / s))
        return np.where(np.isfinite(m), np.clip(p, 0.0, 1.0), 0.0)

    def distance(self, gap: Any) -> np.ndarray:
        """Distance (eV) of each gap to the window; 0 inside."""
        g = np.asarray(gap, dtype=np.float64)
        d = np.clip(self.gap_min - g, 0.0, None)
        if self.gap_max is not None:
            d = d + np.clip(g - self.gap_max, 0.0, None)
        return d

    # -- records ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, float | None]:
        """``{"gap_min": ..., "gap_max": ...}`` (JSON-ready; ``gap_max`` None when open)."""
        return {"gap_min": self.gap_min, "gap_max": self.gap_max}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GapWindow:
        """From ``{"gap_min": ..., "gap_max": ...}`` (``gap_max`` optional)."""
        if "gap_min" not in data or data["gap_min"] is None:
            raise InputError("a gap window needs gap_min (eV)")
        return cls(data["gap_min"], data.get("gap_max"))


__all__ = ["MIN_STD", "GapWindow"]

"""Recalibration of predictive distributions on validation data (Kuleshov et al. 2018).

A model's predictive CDF ``F_i`` is calibrated when the levels ``u_i = F_i(y_i)`` of the
observed gaps (the probability integral transform, PIT) are uniform on [0, 1]: then every
central interval ``[F^-1(a), F^-1(1 - a)]`` holds a share ``1 - 2a`` of the outcomes, and
every window probability ``F(hi) - F(lo)`` is a frequency. The gated Roost's mixture is
not: its non-metal part is read as a Normal while Roost's residuals are Laplace-like, and
the gate's misclassified rows put whole gaps in the tails (validation quantiles of the
standardised errors 0.55 and 2.43 where a Normal's are 0.99 and 2.00).

Kuleshov, Fenner and Ermon ("Accurate Uncertainties for Deep Learning Using Calibrated
Regression", ICML 2018) fit a monotone map ``R`` from predicted levels to observed
frequencies on held-out data, ``R(u) = share of validation rows with u_j <= u``, by
isotonic regression; the recalibrated CDF is ``R(F(x))`` and its quantile function
``F^-1(R^-1(q))``. Where the CDF jumps (a metal's atom at 0 eV) the PIT is randomised
inside the jump, ``u = F(y-) + V (F(y) - F(y-))`` with ``V ~ U(0, 1)``, so a calibrated
model's PIT is still uniform.

:class:`CdfRecalibration` is the fitted map (its knots are saved with the model);
:class:`gapforge.models.metal_gate.GapDistribution` applies it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gapforge.errors import ModelError

#: Knots kept of the fitted map (a few kB in ``model.json``).
N_KNOTS = 201


@dataclass(frozen=True)
class CdfRecalibration:
    """A monotone map of predicted CDF levels to observed frequencies.

    Attributes:
        levels: ``(K,)`` strictly increasing predicted levels from 0 to 1.
        freqs: ``(K,)`` strictly increasing observed frequencies from 0 to 1 (``R(levels)``).
        n_fit: number of validation rows it was fitted on.
    """

    levels: np.ndarray
    freqs: np.ndarray
    n_fit: int = 0

    def __post_init__(self) -> None:
        x = np.asarray(self.levels, dtype=np.float64)
        y = np.asarray(self.freqs, dtype=np.float64)
        if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
            raise ModelError("a CDF recalibration needs two equally long 1-d knot arrays")
        if not (np.all(np.diff(x) > 0) and np.all(np.diff(y) > 0)):
            raise ModelError("CDF recalibration knots must be strictly increasing")
        if not (x[0] == 0 and x[-1] == 1 and y[0] == 0 and y[-1] == 1):
            raise ModelError("CDF recalibration knots must run from (0, 0) to (1, 1)")
        object.__setattr__(self, "levels", x)
        object.__setattr__(self, "freqs", y)

    def __call__(self, u: Any) -> np.ndarray:
        """``R(u)``: the calibrated level of predicted level(s) ``u``."""
        return np.interp(np.asarray(u, dtype=np.float64), self.levels, self.freqs)

    def inverse(self, q: Any) -> np.ndarray:
        """``R^-1(q)``: the predicted level whose calibrated level is ``q``."""
        return np.interp(np.asarray(q, dtype=np.float64), self.freqs, self.levels)

    @classmethod
    def identity(cls) -> CdfRecalibration:
        """The map that changes nothing."""
        return cls(np.array([0.0, 1.0]), np.array([0.0, 1.0]))

    @classmethod
    def fit(cls, pit: Any, n_knots: int = N_KNOTS) -> CdfRecalibration:
        """Fit ``R`` by isotonic regression of the empirical CDF of ``pit`` on ``pit``.

        Args:
            pit: ``(N,)`` predicted CDF levels of the observed values (NaN rows are skipped).
            n_knots: knots kept (at evenly spaced quantiles of ``pit``, plus 0 and 1).

        Raises:
            ModelError: fewer than 10 finite levels.
        """
        from sklearn.isotonic import IsotonicRegression

        u = np.asarray(pit, dtype=np.float64)
        u = np.sort(np.clip(u[np.isfinite(u)], 0.0, 1.0))
        if len(u) < 10:
            raise ModelError(f"CDF recalibration needs at least 10 validation rows, got {len(u)}")
        ecdf = np.arange(1, len(u) + 1) / len(u)
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        iso.fit(np.r_[0.0, u, 1.0], np.r_[0.0, ecdf, 1.0])
        inner = np.quantile(u, np.linspace(0, 1, max(2, n_knots - 2)))
        x = np.unique(np.r_[0.0, inner, 1.0])
        y = iso.predict(x)
        y[0], y[-1] = 0.0, 1.0
        # strictly increasing both ways (flat steps of the isotonic fit get a tiny slope) so
        # that the map and its inverse are functions
        ramp = np.linspace(0.0, 1e-9 * len(x), len(x))
        y = np.maximum.accumulate(y) + ramp
        y = (y - y[0]) / (y[-1] - y[0])
        keep = np.r_[True, (np.diff(x) > 0) & (np.diff(y) > 0)]
        return cls(x[keep], y[keep], n_fit=len(u))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready knots."""
        return {"levels": self.levels.tolist(), "freqs": self.freqs.tolist(), "n_fit": self.n_fit}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CdfRecalibration:
        """From :meth:`to_dict`'s output."""
        try:
            return cls(np.asarray(data["levels"]), np.asarray(data["freqs"]), int(data.get("n_fit", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"malformed CDF recalibration in a model card ({exc})") from exc


def central_coverage(lo: np.ndarray, hi: np.ndarray, y: np.ndarray) -> float:
    """Share of finite rows with ``lo <= y <= hi``."""
    lo, hi, y = (np.asarray(a, dtype=np.float64) for a in (lo, hi, y))
    ok = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(y)
    return float(((lo[ok] <= y[ok]) & (y[ok] <= hi[ok])).mean()) if ok.any() else float("nan")


__all__ = ["N_KNOTS", "CdfRecalibration", "central_coverage"]

"""The metal gate: combine P(metal) with a non-metal gap regressor into one prediction.

A composition-only model cannot know which polymorph a formula stands for, and about
half of the Materials Project's entries are metals (PBE gap exactly 0 eV). A regressor
trained on every row then predicts small positive gaps for metals and shrinks the
gaps of insulators towards 0. The gate models the gap as a two-component mixture:

* with probability ``p`` (the classifier's P(metal)) the gap is exactly 0 eV;
* with probability ``1 - p`` it is the non-metal regressor's distribution, taken as
  Normal(``mu``, ``s``) with ``s = std_scale * sigma`` (``std_scale`` is fitted on
  validation data, see :func:`fit_std_scale`).

From that mixture::

    mean     = (1 - p) * mu
    variance = (1 - p) * s**2 + p * (1 - p) * mu**2
    median   = 0                                        if p >= 0.5
             = max(0, mu + s * Phi^-1((0.5 - p) / (1 - p)))   otherwise

The point estimate reported as ``band_gap_mean`` is the mixture's **median** by
default (:class:`GatePoint`): it minimises the expected absolute error (the metric of
matbench) and puts a likely metal at exactly 0 eV, where the mixture mean would leave
``(1 - p) * mu`` > 0. The reported std is always the mixture's standard deviation, so a
confident metal has a small std and an uncertain one a std of the size of ``mu``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

#: coverage targets of +-1 and +-2 standard deviations of a Normal distribution
COVERAGE_TARGETS = (0.6827, 0.9545)


class GatePoint(StrEnum):
    """Which statistic of the mixture is reported as the point prediction."""

    MEDIAN = "median"
    MEAN = "mean"


@dataclass(frozen=True)
class GatedGap:
    """Mixture predictions, arrays ``(N,)`` in eV (``p_metal`` in 0-1).

    Attributes:
        point: the reported prediction (median or mean of the mixture).
        mean: the mixture mean ``(1 - p) * mu``.
        std: the mixture standard deviation.
        p_metal: P(metal).
    """

    point: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    p_metal: np.ndarray


def combine(
    p_metal: np.ndarray,
    gap_mean: np.ndarray,
    gap_std: np.ndarray,
    *,
    std_scale: float = 1.0,
    point: GatePoint | str = GatePoint.MEDIAN,
) -> GatedGap:
    """Combine P(metal) and the non-metal gap distribution (module docstring).

    Args:
        p_metal: ``(N,)`` probabilities of being a metal.
        gap_mean: ``(N,)`` non-metal regressor means ``mu`` (eV).
        gap_std: ``(N,)`` non-metal regressor stds ``sigma`` (eV).
        std_scale: calibration factor applied to ``sigma``.
        point: ``median`` (default) or ``mean`` of the mixture as the point prediction.
    """
    from scipy.stats import norm

    p = np.clip(np.asarray(p_metal, dtype=np.float64), 0.0, 1.0)
    mu = np.clip(np.asarray(gap_mean, dtype=np.float64), 0.0, None)
    s = np.asarray(gap_std, dtype=np.float64) * float(std_scale)
    q = 1.0 - p
    mean = q * mu
    std = np.sqrt(q * s**2 + p * q * mu**2)
    if GatePoint(point) is GatePoint.MEAN:
        value = mean
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            level = np.where(p < 0.5, (0.5 - p) / np.where(q > 0, q, 1.0), 0.5)
        value = np.where(p >= 0.5, 0.0, np.clip(mu + s * norm.ppf(level), 0.0, None))
        value = np.where(np.isnan(p) | np.isnan(mu), np.nan, value)
    return GatedGap(point=value, mean=mean, std=std, p_metal=p)


def coverage(err: np.ndarray, std: np.ndarray) -> tuple[float, float]:
    """Shares of ``|err| <= std`` and ``|err| <= 2 std`` (finite rows only)."""
    err = np.abs(np.asarray(err, dtype=np.float64))
    std = np.asarray(std, dtype=np.float64)
    ok = np.isfinite(err) & np.isfinite(std)
    if not ok.any():
        return float("nan"), float("nan")
    return float((err[ok] <= std[ok]).mean()), float((err[ok] <= 2 * std[ok]).mean())


def fit_std_scale(
    err_fn: object, grid: np.ndarray | None = None, targets: tuple[float, float] = COVERAGE_TARGETS
) -> float:
    """The std factor whose +-1/+-2 std coverage on validation data is closest to ``targets``.

    Args:
        err_fn: callable ``scale -> (errors (N,), stds (N,))`` that re-predicts the
            validation rows with that factor (the gate's std is not linear in it).
        grid: candidate factors (default: 121 values from 0.25 to 4, log-spaced).
        targets: wanted shares inside +-1 and +-2 std.

    Returns:
        The factor minimising the squared distance of both shares to their targets.
    """
    grid = np.geomspace(0.25, 4.0, 121) if grid is None else np.asarray(grid, dtype=np.float64)
    best, best_loss = 1.0, np.inf
    for k in grid:
        err, std = err_fn(float(k))  # type: ignore[operator]
        c1, c2 = coverage(err, std)
        loss = (c1 - targets[0]) ** 2 + (c2 - targets[1]) ** 2
        if loss < best_loss:
            best, best_loss = float(k), loss
    return best


__all__ = ["COVERAGE_TARGETS", "GatePoint", "GatedGap", "combine", "coverage", "fit_std_scale"]

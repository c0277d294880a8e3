"""Regression metrics and parity plots for band-gap models.

:func:`regression_metrics` gives the paper's R², MAE and RMSE (eV) plus, when
standard deviations are given, simple calibration figures of the predicted
uncertainty (share of errors inside 1 and 2 sigma, Spearman rank correlation
between |error| and sigma).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gapforge.errors import InputError
from gapforge.io import atomic_path


@dataclass(frozen=True)
class RegressionMetrics:
    """Accuracy of band-gap predictions (errors in eV).

    Attributes:
        n: number of rows scored (rows with a prediction and a label).
        n_missing: rows left out because the model could not predict them.
        r2: coefficient of determination.
        mae: mean absolute error (eV).
        rmse: root mean squared error (eV).
        within_1sigma: share of |error| <= std (NaN without std; ~0.68 if Gaussian and calibrated).
        within_2sigma: share of |error| <= 2 std (NaN without std).
        spearman_err_std: Spearman rank correlation of |error| and std (NaN without std).
    """

    n: int
    n_missing: int
    r2: float
    mae: float
    rmse: float
    within_1sigma: float = float("nan")
    within_2sigma: float = float("nan")
    spearman_err_std: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, units in the keys, floats rounded to 5 digits."""
        d = asdict(self)
        out: dict[str, Any] = {}
        for k, v in d.items():
            key = f"{k}_eV" if k in ("mae", "rmse") else k
            out[key] = v if isinstance(v, int) else (None if not np.isfinite(v) else round(float(v), 5))
        return out


def regression_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, y_std: np.ndarray | None = None
) -> RegressionMetrics:
    """Score predictions ``y_pred (N,)`` against labels ``y_true (N,)`` (eV).

    Rows where the prediction is NaN are counted in ``n_missing`` and left out.

    Raises:
        InputError: shapes differ or nothing is left to score.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape:
        raise InputError(f"{len(y_true)} labels but {len(y_pred)} predictions")
    ok = np.isfinite(y_true) & np.isfinite(y_pred)
    if not ok.any():
        raise InputError("no row has both a label and a prediction")
    t, p = y_true[ok], y_pred[ok]
    err = p - t
    ss_res = float((err**2).sum())
    ss_tot = float(((t - t.mean()) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    kw: dict[str, float] = {}
    if y_std is not None:
        s = np.asarray(y_std, dtype=np.float64)[ok]
        if np.isfinite(s).all():
            from scipy.stats import spearmanr

            a = np.abs(err)
            kw["within_1sigma"] = float((a <= s).mean())
            kw["within_2sigma"] = float((a <= 2 * s).mean())
            kw["spearman_err_std"] = float(spearmanr(a, s).statistic) if len(a) > 2 else float("nan")
    return RegressionMetrics(
        n=int(ok.sum()),
        n_missing=int((~ok).sum()),
        r2=r2,
        mae=float(np.abs(err).mean()),
        rmse=float(np.sqrt((err**2).mean())),
        **kw,
    )


def parity_plot(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    path: str | Path,
    *,
    y_std: np.ndarray | None = None,
    title: str = "",
    metrics: RegressionMetrics | None = None,
) -> Path:
    """Write a parity plot (predicted vs DFT band gap, eV) as PNG, atomically.

    Points are coloured by predicted std when given; the diagonal and the
    R²/MAE/RMSE figures are drawn on the plot.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    ok = np.isfinite(y_true) & np.isfinite(y_pred)
    metrics = metrics or regression_metrics(y_true, y_pred, y_std)
    fig, ax = plt.subplots(figsize=(5.2, 4.6), dpi=120)
    hi = float(max(y_true[ok].max(), y_pred[ok].max(), 1.0)) * 1.05
    ax.plot([0, hi], [0, hi], color="0.4", lw=1, ls="--", zorder=1)
    if y_std is not None and np.isfinite(np.asarray(y_std)[ok]).all():
        sc = ax.scatter(
            y_true[ok], y_pred[ok], c=np.asarray(y_std)[ok], s=6, alpha=0.6, cmap="viridis", zorder=2
        )
        fig.colorbar(sc, ax=ax, label="predicted std (eV)")
    else:
        ax.scatter(y_true[ok], y_pred[ok], s=6, alpha=0.5, zorder=2)
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.set_aspect("equal")
    ax.set_xlabel("DFT (PBE) band gap (eV)")
    ax.set_ylabel("predicted band gap (eV)")
    ax.set_title(title or "parity")
    ax.text(
        0.03,
        0.97,
        f"n = {metrics.n}\nR² = {metrics.r2:.3f}\nMAE = {metrics.mae:.3f} eV\nRMSE = {metrics.rmse:.3f} eV",
        transform=ax.transAxes,
        va="top",
        fontsize=9,
        bbox={"boxstyle": "round", "fc": "white", "ec": "0.7"},
    )
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


__all__ = ["RegressionMetrics", "parity_plot", "regression_metrics"]

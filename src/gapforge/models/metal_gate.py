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

:class:`GapDistribution` is the same mixture as a distribution object, with a gap that
cannot be negative (the Normal's mass below 0 eV joins the atom at 0 eV) and, once fitted
on validation data, a CDF recalibration (:class:`gapforge.models.calibration.CdfRecalibration`):
its CDF, quantiles, central intervals and window probabilities are the calibrated ones, and
a model that holds a recalibration reports its median and σ-equivalent from it.

The point estimate reported as ``band_gap_mean`` is the mixture's **median** by
default (:class:`GatePoint`): it minimises the expected absolute error (the metric of
matbench) and puts a likely metal at exactly 0 eV, where the mixture mean would leave
``(1 - p) * mu`` > 0. The reported std is always the mixture's standard deviation, so a
confident metal has a small std and an uncertain one a std of the size of ``mu``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Self

import numpy as np

if TYPE_CHECKING:
    from gapforge.models.calibration import CdfRecalibration
    from gapforge.window import GapWindow

#: smallest non-metal std (eV) the distribution uses (a zero spread is read as near-certain)
MIN_SIGMA = 1e-6

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


@dataclass(frozen=True)
class GapDistribution:
    """The gated predictive distribution of band gaps, one per formula (eV).

    ``P(gap = 0) = p + (1 - p) Phi(-mu / sigma)`` (metal, or the non-metal Normal's
    mass below 0 eV); above 0 eV the density is ``(1 - p) N(mu, sigma)``. With a
    ``recalibration`` ``R`` every level is mapped through it: ``cdf(x) = R(F(x))``,
    ``ppf(q) = F^-1(R^-1(q))`` (Kuleshov et al. 2018).

    Attributes:
        p_metal: ``(N,)`` P(metal).
        mu: ``(N,)`` non-metal gap mean (eV).
        sigma: ``(N,)`` non-metal gap std (eV, ``std_scale`` already applied).
        recalibration: the fitted CDF map, or ``None`` (the raw mixture).
        reasons: ``(N,)`` why a row has no prediction ("" where it has one), or ``None``.

    Example:
        >>> d = GapDistribution(np.array([0.9, 0.0]), np.array([1.0, 3.0]), np.array([0.5, 0.5]))
        >>> d.median().round(2).tolist()
        [0.0, 3.0]
    """

    p_metal: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    recalibration: CdfRecalibration | None = None
    reasons: np.ndarray | None = None

    def __post_init__(self) -> None:
        p = np.clip(np.asarray(self.p_metal, dtype=np.float64), 0.0, 1.0)
        mu = np.clip(np.asarray(self.mu, dtype=np.float64), 0.0, None)
        s = np.asarray(self.sigma, dtype=np.float64)
        s = np.where(np.isfinite(s) & (s > MIN_SIGMA), s, np.where(np.isnan(s), np.nan, MIN_SIGMA))
        object.__setattr__(self, "p_metal", p)
        object.__setattr__(self, "mu", mu)
        object.__setattr__(self, "sigma", s)
        if self.reasons is None:
            object.__setattr__(self, "reasons", np.where(np.isnan(mu) | np.isnan(p), "no prediction", ""))

    def __len__(self) -> int:
        return len(self.p_metal)

    def __getitem__(self, rows: Any) -> GapDistribution:
        """The distribution of some rows (an index array, slice or boolean mask)."""
        reasons = np.asarray(self.reasons)[rows]
        return GapDistribution(
            self.p_metal[rows], self.mu[rows], self.sigma[rows], self.recalibration, reasons
        )

    # -- the raw mixture -------------------------------------------------------------------
    def raw_cdf(self, x: Any) -> np.ndarray:
        """``F(x)`` of the mixture before recalibration (``x`` broadcast against the rows)."""
        from scipy.special import ndtr

        x = np.asarray(x, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            f = self.p_metal + (1.0 - self.p_metal) * ndtr((x - self.mu) / self.sigma)
        return np.where(x < 0, 0.0, f)

    def raw_ppf(self, u: Any) -> np.ndarray:
        """``F^-1(u)``: the smallest gap with ``F(gap) >= u`` (0 eV inside the atom)."""
        from scipy.special import ndtri

        u = np.asarray(u, dtype=np.float64)
        q = 1.0 - self.p_metal
        with np.errstate(divide="ignore", invalid="ignore"):
            level = np.clip((u - self.p_metal) / np.where(q > 0, q, 1.0), 0.0, 1.0)
            x = self.mu + self.sigma * ndtri(level)
        x = np.where((u <= self.raw_cdf(0.0)) | (q <= 0), 0.0, np.clip(x, 0.0, None))
        return np.where(np.isnan(self.mu) | np.isnan(self.p_metal), np.nan, x)

    def pit(self, y: Any, *, seed: int = 0) -> np.ndarray:
        """Randomised PIT of observed gaps ``y`` (uniform inside the atom at 0 eV).

        Uses the raw mixture (the recalibration is fitted on these levels).
        """
        y = np.asarray(y, dtype=np.float64)
        v = np.random.default_rng(seed).uniform(size=np.broadcast(y, self.mu).shape)
        at_zero = self.raw_cdf(0.0)
        return np.where(y <= 0, v * at_zero, self.raw_cdf(y))

    # -- the (re)calibrated distribution ---------------------------------------------------
    def with_recalibration(self, recalibration: CdfRecalibration | None) -> GapDistribution:
        """The same rows with another recalibration."""
        return GapDistribution(self.p_metal, self.mu, self.sigma, recalibration, self.reasons)

    def cdf(self, x: Any) -> np.ndarray:
        """``P(gap <= x)`` (recalibrated when a recalibration is set)."""
        f = self.raw_cdf(x)
        return f if self.recalibration is None else self.recalibration(f)

    def ppf(self, q: Any) -> np.ndarray:
        """The ``q`` quantile of the gap (eV)."""
        q = np.asarray(q, dtype=np.float64)
        u = q if self.recalibration is None else self.recalibration.inverse(q)
        return self.raw_ppf(u)

    def median(self) -> np.ndarray:
        """The median gap (eV): 0 for a likely metal."""
        return self.ppf(0.5)

    def interval(self, k: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Central interval of a Normal's ``±k σ`` probability (k = 1: 68.27 %, k = 2: 95.45 %)."""
        from scipy.special import ndtr

        return self.ppf(ndtr(-k)), self.ppf(ndtr(k))

    def sigma_equivalent(self) -> np.ndarray:
        """Half the width of the central 68.27 % interval (eV): the std a Normal with it would have."""
        lo, hi = self.interval(1.0)
        return 0.5 * (hi - lo)

    def mixture_std(self) -> np.ndarray:
        """The mixture's standard deviation ``sqrt((1 - p) sigma^2 + p (1 - p) mu^2)`` (module docstring)."""
        q = 1.0 - self.p_metal
        return np.sqrt(q * self.sigma**2 + self.p_metal * q * self.mu**2)

    def reported_std(self) -> np.ndarray:
        """The std a model reports: the σ-equivalent once recalibrated, else the mixture std.

        A recalibrated distribution is not Normal (an atom at 0 eV, Laplace-like tails), so
        its spread is reported as the half-width of its calibrated 68.27 % interval.
        """
        return self.mixture_std() if self.recalibration is None else self.sigma_equivalent()

    def to_table(self, formulas: Any, *, p_metal: bool = True) -> Any:
        """The prediction table every gated model returns (Roost's and the experimental head's).

        Columns: ``formula``, ``band_gap_mean`` (the median), ``band_gap_std``
        (:meth:`reported_std`), [``p_metal``,] ``reason``.
        """
        import pandas as pd

        from gapforge import columns as C

        table = {
            C.FORMULA: pd.Series([str(f) for f in formulas], dtype=object),
            C.BAND_GAP_MEAN: self.median(),
            C.BAND_GAP_STD: self.reported_std(),
        }
        if p_metal:
            table[C.P_METAL] = self.p_metal
        table[C.REASON] = pd.Series(self.reasons, dtype=object).astype(str)
        return pd.DataFrame(table)

    def window_probability(self, window: GapWindow) -> np.ndarray:
        """``P(gap_min <= gap <= gap_max)`` (the atom at 0 eV counts when ``gap_min`` is 0)."""
        hi = np.ones(len(self)) if window.gap_max is None else self.cdf(window.gap_max)
        lo = np.zeros(len(self)) if window.gap_min <= 0 else self.cdf(window.gap_min)
        p = np.clip(hi - lo, 0.0, 1.0)
        return np.where(np.isnan(self.mu) | np.isnan(self.p_metal), 0.0, p)


class _MagpieBooster:
    """A scikit-learn histogram gradient-boosting model on Magpie descriptors, attachable to a Roost model.

    Shared by :class:`MagpieMetalClassifier` and :class:`MagpieGapRegressor`: the settings,
    the featurisation, the early-stopping booster settings and the skops file (featurizer +
    booster under :attr:`role`).

    Args:
        max_iter: cap on the boosting iterations (early stopping on 10 % of the rows).
        learning_rate: boosting learning rate.
        max_leaf_nodes: leaves per tree.
        min_samples_leaf: smallest leaf.
        seed: random seed.
    """

    #: key of the booster in the saved file, and the attribute ``<role>_`` that holds it
    role = "booster"
    #: what error messages call it
    label = "Magpie booster"
    default_max_iter = 300

    def __init__(
        self,
        max_iter: int | None = None,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 63,
        min_samples_leaf: int = 20,
        seed: int = 0,
    ) -> None:
        self.max_iter = self.default_max_iter if max_iter is None else max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.seed = seed

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments (JSON-ready)."""
        return {
            "max_iter": self.max_iter,
            "learning_rate": self.learning_rate,
            "max_leaf_nodes": self.max_leaf_nodes,
            "min_samples_leaf": self.min_samples_leaf,
            "seed": self.seed,
        }

    def _booster_kwargs(self) -> dict[str, Any]:
        return {
            "max_iter": self.max_iter,
            "learning_rate": self.learning_rate,
            "max_leaf_nodes": self.max_leaf_nodes,
            "min_samples_leaf": self.min_samples_leaf,
            "early_stopping": True,
            "validation_fraction": 0.1,
            "n_iter_no_change": 15,
            "random_state": self.seed,
        }

    def _training_rows(self, formulas: Any, band_gaps: Any) -> tuple[np.ndarray, np.ndarray]:
        """Magpie rows and gaps of the readable formulas with a finite gap (fits the featurizer)."""
        from gapforge.models.featurize import MagpieFeaturizer

        self.featurizer_ = MagpieFeaturizer().fit(None)
        fm = self.featurizer_.featurize([str(f) for f in formulas])
        y = np.asarray(band_gaps, dtype=np.float64)
        ok = fm.valid & np.isfinite(y)
        return fm.X[ok], y[ok]

    def _predict_valid(self, formulas: Any, predict: Any) -> np.ndarray:
        """``(N,)`` ``predict(X)`` on the readable formulas; NaN where a formula cannot be featurised."""
        fm = self.featurizer_.featurize([str(f) for f in formulas])
        out = np.full(len(fm.valid), np.nan)
        if fm.valid.any():
            out[fm.valid] = predict(fm.X[fm.valid])
        return out

    def save(self, path: Any) -> dict[str, Any]:
        """Write the featurizer and booster with skops; returns the card entry (file, sha256, params)."""
        return _save_booster(self, self.role, path)

    @classmethod
    def load(cls, path: Any, *, sha256: str | None = None) -> Self:
        """Read a saved model (trusted types only; the sha256 is checked when given)."""
        model = cls()
        featurizer, booster = _load_booster(path, cls.role, sha256, cls.label)
        model.featurizer_ = featurizer
        setattr(model, f"{cls.role}_", booster)
        return model


class MetalFeatures(StrEnum):
    """The descriptors of the metal classifier.

    ``magpie``: the 142 Magpie statistics (:class:`~gapforge.models.featurize.MagpieFeaturizer`);
    ``magpie+fractions+smact``: plus the 97 element fractions and 3 SMACT charge-balance flags.
    """

    MAGPIE = "magpie"
    COMPOSITION = "magpie+fractions+smact"


class MagpieMetalClassifier(_MagpieBooster):
    """P(metal) from Magpie descriptors by histogram gradient boosting (scikit-learn).

    On matbench_mp_gap fold 0 it ranks metals better than Roost's metal head (test AUC 0.963
    against 0.949); a model blends the two (:meth:`RoostEnsemble.attach_metal_classifier`).
    Settings as :class:`_MagpieBooster` (300 iterations at most), plus ``features``
    (:class:`MetalFeatures`; a saved classifier keeps the featurizer it was fitted with).
    """

    role = "classifier"
    label = "metal classifier"
    default_max_iter = 300

    def __init__(
        self, *args: Any, features: MetalFeatures | str = MetalFeatures.MAGPIE, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.features = features

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments (JSON-ready)."""
        return {**super().get_params(), "features": str(MetalFeatures(self.features))}

    def _training_rows(self, formulas: Any, band_gaps: Any) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the readable formulas with a finite gap, featurised as ``features`` asks."""
        from gapforge.models.featurize import MagpieFeaturizer

        extra = MetalFeatures(self.features) is MetalFeatures.COMPOSITION
        self.featurizer_ = MagpieFeaturizer(element_fractions=extra, smact_flags=extra).fit(None)
        fm = self.featurizer_.featurize([str(f) for f in formulas])
        y = np.asarray(band_gaps, dtype=np.float64)
        ok = fm.valid & np.isfinite(y)
        return fm.X[ok], y[ok]

    def fit(self, formulas: Any, band_gaps: Any) -> MagpieMetalClassifier:
        """Fit on formulas and gaps (0 eV = metal); unreadable formulas are skipped."""
        from sklearn.ensemble import HistGradientBoostingClassifier

        X, y = self._training_rows(formulas, band_gaps)
        self.classifier_ = HistGradientBoostingClassifier(**self._booster_kwargs()).fit(X, y <= 0)
        return self

    def p_metal(self, formulas: Any) -> np.ndarray:
        """``(N,)`` P(metal); NaN where the formula cannot be featurised."""
        col = list(self.classifier_.classes_).index(True)
        return self._predict_valid(formulas, lambda X: self.classifier_.predict_proba(X)[:, col])


class MagpieGapRegressor(_MagpieBooster):
    """Non-metal band gap (eV) from Magpie descriptors by histogram gradient boosting (absolute error).

    Fitted on the non-metal rows only (gap > 0 eV), like the gated Roost's gap head, whose
    non-metal gap it is blended with (:meth:`RoostEnsemble.attach_gap_regressor`): on the 5
    matbench_mp_gap folds the blend (about half and half, chosen on validation) lowers the
    non-metal gap error and the gated MAE (``bench_matbench.py hgb-gap-blend``). Settings as
    :class:`_MagpieBooster`; at most 3,000 iterations, early stopping decides (896-2,458 on the
    mp_gap folds' ~45 k non-metal rows).
    """

    role = "regressor"
    label = "gap regressor"
    default_max_iter = 3000

    def fit(self, formulas: Any, band_gaps: Any) -> MagpieGapRegressor:
        """Fit on the non-metal rows (gap > 0 eV) of formulas and gaps; unreadable formulas are skipped."""
        from sklearn.ensemble import HistGradientBoostingRegressor

        from gapforge.errors import ModelError

        X, y = self._training_rows(formulas, band_gaps)
        if not (y > 0).any():
            raise ModelError("the gap regressor needs non-metal rows (gap > 0 eV); none given")
        self.regressor_ = HistGradientBoostingRegressor(loss="absolute_error", **self._booster_kwargs()).fit(
            X[y > 0], y[y > 0]
        )
        return self

    def gap(self, formulas: Any) -> np.ndarray:
        """``(N,)`` non-metal gap (eV, clipped at 0); NaN where the formula cannot be featurised."""
        return self._predict_valid(formulas, lambda X: np.clip(self.regressor_.predict(X), 0.0, None))


def blend(base: np.ndarray, other: np.ndarray, weight: float) -> np.ndarray:
    """``weight * other + (1 - weight) * base``, keeping ``base`` where ``other`` is NaN.

    The one rule by which a Roost model mixes an attached model's output into its own
    (P(metal) with a metal classifier, the non-metal gap with a gap regressor).
    """
    base = np.asarray(base, dtype=np.float64)
    other = np.asarray(other, dtype=np.float64)
    return np.where(np.isnan(other), base, weight * other + (1.0 - weight) * base)


def _save_booster(model: Any, role: str, path: Any) -> dict[str, Any]:
    """Write ``{"featurizer", role}`` of a Magpie booster with skops; its model-card entry."""
    from pathlib import Path

    from gapforge.models.base import dump_skops

    path = Path(path)
    booster = getattr(model, f"{role}_")
    record = dump_skops(
        {"featurizer": model.featurizer_, role: booster}, path.parent, path.name, compression=8
    )
    return {"file": path.name, "sha256": record["weights_sha256"], "params": model.get_params(),
            "n_iter": int(booster.n_iter_)}  # fmt: skip


def _load_booster(path: Any, role: str, sha256: str | None, label: str) -> tuple[Any, Any]:
    """The featurizer and booster of a file written by :func:`_save_booster` (trusted types only)."""
    from pathlib import Path

    from gapforge.errors import ModelError
    from gapforge.io import file_sha256
    from gapforge.models.base import load_skops
    from gapforge.models.experiment import TRUSTED_TYPES

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: {label} file missing")
    if sha256 is not None and file_sha256(path) != sha256:
        raise ModelError(f"{path}: sha256 differs from the model card")
    content = load_skops(path, TRUSTED_TYPES, label=f"the {label}")
    if not isinstance(content, dict) or role not in content or "featurizer" not in content:
        raise ModelError(f"{path}: not a saved {label} (no {role!r} inside)")
    return content["featurizer"], content[role]


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


__all__ = [
    "COVERAGE_TARGETS",
    "MIN_SIGMA",
    "GapDistribution",
    "GatePoint",
    "GatedGap",
    "MagpieGapRegressor",
    "MagpieMetalClassifier",
    "MetalFeatures",
    "blend",
    "combine",
    "coverage",
    "fit_std_scale",
]

"""Tree-ensemble band-gap models on Magpie descriptors: the fast screening model.

``ForestModel`` holds a scikit-learn ``Pipeline([("featurize",
MagpieFeaturizer()), ("regressor", ...)])`` whose regressor is either

* ``estimator="rf"``: a ``RandomForestRegressor``; the uncertainty is the
  spread (standard deviation) of the individual trees' predictions; or
* ``estimator="hgb"``: a ``HistGradientBoostingRegressor`` (squared error)
  for the mean, plus two quantile-loss boosters at the 15.87 % and 84.13 %
  quantiles; the uncertainty is half their distance (one standard deviation
  if the error is Gaussian). Boosting is more accurate on mp-bandgap and far
  smaller on disk, but its 3 x 500 trees predict ~10x slower than the forest,
  so the shipped screening model is the forest (see benchmarks/results).

Prediction is vectorised end to end: descriptors come from count-matrix
arithmetic and the trees run in threads over row blocks; the screening path
(:meth:`ForestModel.predict_counts`) parses no formula strings at all.

Saved with skops (``forest.skops``) and loaded with an explicit list of
trusted types; nothing is unpickled.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd

from gapforge import columns as C
from gapforge.errors import ModelError
from gapforge.models.base import load_skops, rebuild_from_card, save_skops_model
from gapforge.models.featurize import MagpieFeaturizer

log = logging.getLogger(__name__)

KIND = "forest"
WEIGHTS_FILE = "forest.skops"
FORMAT_VERSION = 1

#: Per-estimator settings of ``gapforge train forest``, the models benchmark and Table 1's
#: screening models (the shipped forest uses "rf": boosting is more accurate but ~10x slower
#: to predict, too slow for screening a million formulas).
ESTIMATOR_DEFAULTS: dict[str, dict[str, Any]] = {
    "hgb": {
        "n_estimators": 500,
        "learning_rate": 0.1,
        "max_leaf_nodes": 63,
        "min_samples_leaf": 20,
        "max_features": 1.0,
    },
    "rf": {"n_estimators": 60, "max_leaf_nodes": 1000, "min_samples_leaf": 3, "max_features": 0.33},
}
#: The only non-builtin types skops may rebuild from a forest file.
TRUSTED_TYPES: tuple[str, ...] = (
    "gapforge.models.featurize.MagpieFeaturizer",
    "sklearn.pipeline.Pipeline",
    "sklearn.ensemble._forest.RandomForestRegressor",
    "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.tree._tree.Tree",
    "numpy.random._mt19937.MT19937",
    "numpy.random.mtrand.RandomState",
    "builtins.slice",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss.loss.PinballLoss",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.Interval",
    "sklearn._loss._loss.CyHalfSquaredError",
    "sklearn._loss._loss.CyPinballLoss",
)
#: Quantiles whose half-distance is the hgb model's std (+-1 sigma of a Gaussian).
SIGMA_QUANTILES = (0.158655, 0.841345)


@dataclass(frozen=True)
class GapPrediction:
    """Band-gap predictions as arrays (eV); NaN where a row could not be predicted."""

    mean: np.ndarray
    std: np.ndarray
    valid: np.ndarray
    reasons: np.ndarray


class ForestModel:
    """Random forest or gradient boosting on Magpie composition descriptors, with uncertainty.

    Args:
        estimator: ``"rf"`` (random forest, tree-spread std) or ``"hgb"``
            (histogram gradient boosting, quantile std).
        n_estimators: trees (rf) or boosting iterations (hgb).
        learning_rate: boosting learning rate (hgb only).
        min_samples_leaf: smallest leaf (bounds tree size and smooths).
        max_features: share of descriptors tried per split.
        max_leaf_nodes: cap on leaves per tree (keeps the saved model a few MB).
        max_depth: cap on depth (None = unbounded).
        n_jobs: threads for fitting and prediction (None = all cores).
        random_state: seed.
        chunk_size: rows per prediction block (bounds memory).
    """

    kind = KIND

    def __init__(
        self,
        estimator: str = "rf",
        n_estimators: int = 60,
        learning_rate: float = 0.1,
        min_samples_leaf: int = 3,
        max_features: float = 0.33,
        max_leaf_nodes: int | None = 1000,
        max_depth: int | None = None,
        n_jobs: int | None = None,
        random_state: int = 0,
        chunk_size: int = 100_000,
    ) -> None:
        if estimator not in ("rf", "hgb"):
            raise ModelError(f"unknown estimator {estimator!r} (use rf or hgb)")
        self.estimator = estimator
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.max_leaf_nodes = max_leaf_nodes
        self.max_depth = max_depth
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.chunk_size = chunk_size

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments (JSON-ready)."""
        return {
            "estimator": self.estimator,
            "n_estimators": self.n_estimators,
            "learning_rate": self.learning_rate,
            "min_samples_leaf": self.min_samples_leaf,
            "max_features": self.max_features,
            "max_leaf_nodes": self.max_leaf_nodes,
            "max_depth": self.max_depth,
            "n_jobs": self.n_jobs,
            "random_state": self.random_state,
            "chunk_size": self.chunk_size,
        }

    def _booster(self, **loss: Any) -> Any:
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(
            max_iter=self.n_estimators,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes or 31,
            min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features,
            max_depth=self.max_depth,
            early_stopping=False,
            random_state=self.random_state,
            **loss,
        )

    def _pipeline(self) -> Any:
        from sklearn.ensemble import RandomForestRegressor
        from sklearn.pipeline import Pipeline

        if self.estimator == "hgb":
            regressor = self._booster()
        else:
            regressor = RandomForestRegressor(
                n_estimators=self.n_estimators,
                min_samples_leaf=self.min_samples_leaf,
                max_features=self.max_features,
                max_leaf_nodes=self.max_leaf_nodes,
                max_depth=self.max_depth,
                n_jobs=self.n_jobs,
                random_state=self.random_state,
            )
        return Pipeline([("featurize", MagpieFeaturizer()), ("regressor", regressor)])

    @property
    def featurizer(self) -> MagpieFeaturizer:
        """The fitted featurize step."""
        self._check_fitted()
        return self.pipeline_.named_steps["featurize"]

    # -- fitting ----------------------------------------------------------------------
    def fit(self, formulas: Sequence[str], band_gaps: Sequence[float]) -> Self:
        """Featurise and fit; formulas that cannot be featurised are skipped (logged).

        Raises:
            ModelError: lengths differ or nothing can be featurised.
        """
        formulas = [str(f) for f in formulas]
        y = np.asarray(band_gaps, dtype=np.float64)
        if len(formulas) != len(y):
            raise ModelError(f"{len(formulas)} formulas but {len(y)} band gaps")
        pipe = self._pipeline()
        feat: MagpieFeaturizer = pipe.named_steps["featurize"].fit()
        fm = feat.featurize(formulas)
        ok = fm.valid & np.isfinite(y)
        if ok.sum() < 2:
            raise ModelError("fewer than two formulas can be featurised for the forest")
        if (~ok).any():
            log.warning("skipping %d of %d training formulas (not featurisable)", int((~ok).sum()), len(ok))
        pipe.named_steps["regressor"].fit(fm.X[ok], y[ok])
        if self.estimator == "hgb":
            self.quantile_models_ = [
                self._booster(loss="quantile", quantile=q).fit(fm.X[ok], y[ok]) for q in SIGMA_QUANTILES
            ]
        self.pipeline_ = pipe
        self.n_train_ = int(ok.sum())
        return self

    # -- prediction -------------------------------------------------------------------
    def _predict_features(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std of features ``X (N, F)`` (all finite)."""
        if self.estimator == "hgb":
            return self._predict_boosted(X)
        trees = self.pipeline_.named_steps["regressor"].estimators_
        n = len(X)
        mean = np.zeros(n)
        std = np.zeros(n)
        workers = self.n_jobs if self.n_jobs and self.n_jobs > 0 else (os.cpu_count() or 1)
        X = np.ascontiguousarray(X, dtype=np.float32)

        def block(lo: int, hi: int) -> None:
            s1 = np.zeros(hi - lo)
            s2 = np.zeros(hi - lo)
            xb = X[lo:hi]
            for t in trees:
                p = t.predict(xb, check_input=False)
                s1 += p
                s2 += p * p
            m = s1 / len(trees)
            mean[lo:hi] = m
            std[lo:hi] = np.sqrt(np.maximum(s2 / len(trees) - m * m, 0.0))

        step = max(1, min(self.chunk_size, -(-n // workers)))
        bounds = [(lo, min(lo + step, n)) for lo in range(0, n, step)]
        if workers > 1 and len(bounds) > 1:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(lambda b: block(*b), bounds))
        else:
            for b in bounds:
                block(*b)
        return mean, std

    def _predict_boosted(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = np.empty(len(X))
        std = np.empty(len(X))
        lower, upper = self.quantile_models_
        reg = self.pipeline_.named_steps["regressor"]
        for lo in range(0, len(X), self.chunk_size):
            xb = X[lo : lo + self.chunk_size]
            mean[lo : lo + len(xb)] = reg.predict(xb)
            std[lo : lo + len(xb)] = np.maximum(upper.predict(xb) - lower.predict(xb), 0.0) / 2
        return mean, std

    def predict_arrays(self, formulas: Sequence[str] | np.ndarray) -> GapPrediction:
        """Predictions as arrays for formula strings or counts ``(N, E)`` over the featurizer's elements."""
        self._check_fitted()
        fm = self.featurizer.featurize(formulas)
        mean = np.full(len(fm.valid), np.nan)
        std = np.full(len(fm.valid), np.nan)
        rows = np.flatnonzero(fm.valid)
        if len(rows):
            mean[rows], std[rows] = self._predict_features(fm.X[rows])
        return GapPrediction(mean, std, fm.valid, fm.reasons)

    def predict_counts(self, counts: np.ndarray, elements: Sequence[str]) -> GapPrediction:
        """Predict from element counts ``(N, E)`` over ``elements`` (e.g. ``EncodedBatch.counts``).

        This is the screening path: no formula strings are parsed.
        """
        self._check_fitted()
        return self.predict_arrays(self.featurizer.remap(np.asarray(counts), list(elements)))

    def predict(self, formulas: Sequence[str]) -> pd.DataFrame:
        """Predict band gaps (eV) with the trees' spread as std.

        Returns:
            ``formula``, ``band_gap_mean``, ``band_gap_std``, ``reason`` in input order.
        """
        formulas = [str(f) for f in formulas]
        p = self.predict_arrays(formulas)
        return pd.DataFrame(
            {
                C.FORMULA: pd.Series(formulas, dtype=object),
                C.BAND_GAP_MEAN: p.mean,
                C.BAND_GAP_STD: p.std,
                C.REASON: pd.Series(p.reasons, dtype=object).astype(str),
            }
        )

    def _check_fitted(self) -> None:
        if not hasattr(self, "pipeline_"):
            raise ModelError("this ForestModel is not fitted; call fit() or load() first")

    # -- persistence ------------------------------------------------------------------
    def save(self, directory: str | Path, *, metadata: dict[str, Any] | None = None) -> Path:
        """Write ``model.json`` and ``forest.skops`` (compressed)."""
        import zipfile
        from importlib.metadata import version

        self._check_fitted()
        feat = self.featurizer
        return save_skops_model(
            self._persisted(),
            directory,
            kind=KIND,
            params=self.get_params(),
            weights_file=WEIGHTS_FILE,
            format_version=FORMAT_VERSION,
            metadata={
                "gapforge_version": version("gapforge"),
                "numpy_version": np.__version__,
                "elements": list(feat.elements_),
                "features": list(feat.feature_names_),
                "element_table": "smact/data/magpie.csv (Magpie), copied into the featurizer",
                "n_train": getattr(self, "n_train_", None),
                **(metadata or {}),
            },
            compression=zipfile.ZIP_DEFLATED,
            compresslevel=9,
        )

    def _persisted(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pipeline": self.pipeline_}
        if self.estimator == "hgb":
            out["quantile_models"] = list(self.quantile_models_)
        return out

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        """Rebuild from ``model.json`` and ``forest.skops`` (trusted types only).

        Raises:
            ModelError: missing/corrupt files, wrong kind, newer format, untrusted content.
        """
        directory = Path(directory)
        model, card = rebuild_from_card(
            cls,
            directory,
            kind=KIND,
            format_version=FORMAT_VERSION,
            label="forest",
            weights_file=WEIGHTS_FILE,
        )
        meta = card.get("metadata", {})
        path = directory / WEIGHTS_FILE
        content = load_skops(path, TRUSTED_TYPES, label="forest")
        from sklearn.pipeline import Pipeline

        pipe = content.get("pipeline") if isinstance(content, dict) else None
        if not isinstance(pipe, Pipeline) or "featurize" not in pipe.named_steps:
            raise ModelError(f"{path}: not a gapforge forest pipeline")
        model.pipeline_ = pipe
        if model.estimator == "hgb":
            quantiles = content.get("quantile_models")
            if not isinstance(quantiles, list) or len(quantiles) != 2:
                raise ModelError(f"{path}: gradient-boosting model without its quantile models")
            model.quantile_models_ = quantiles
        model.n_train_ = meta.get("n_train")
        model.metadata_ = meta
        return model


__all__ = ["TRUSTED_TYPES", "ForestModel", "GapPrediction"]

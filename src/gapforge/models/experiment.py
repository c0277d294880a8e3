"""The experimental-gap head: from a PBE oracle's outputs to measured band gaps.

PBE underestimates gaps, unevenly across chemistries, and calls some semiconductors
metals; on 1,000 compositions MP's own PBE gaps rank experimental gaps with Spearman
0.763 only. The head learns the correction on the experimental gaps of
``expt-gap`` (Zhuo et al. 2018; metals 0 eV), with the same metal gate as the PBE
oracle (:mod:`gapforge.models.metal_gate`):

* inputs: Magpie descriptors of the composition (:class:`~gapforge.models.featurize.MagpieFeaturizer`)
  and, with ``features="magpie+pbe"``, the PBE oracle's outputs for it: P(metal), the
  non-metal PBE gap and its std, and the gated PBE prediction (transfer: the PBE model
  is trained on ~10^5 MP labels, the head on ~4,000 measurements);
* a gradient-boosting classifier for P(metal) (measured gap 0 eV) and gradient-boosting
  regressors on the non-metal rows: absolute error for ``mu``, the 15.87 / 84.13 %
  quantiles for ``sigma`` (half their distance);
* the gate's median as the prediction, its std times ``std_scale`` (fitted on
  validation rows) as the uncertainty.

Saved as ``<oracle>/experiment/`` (``model.json`` + ``head.skops``) beside the PBE
oracle it was trained on, and loaded with an explicit list of trusted types.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd

from gapforge import columns as C
from gapforge.errors import ModelError
from gapforge.io import write_json
from gapforge.models.base import MODEL_CARD_FILE, dump_skops, load_skops, rebuild_from_card, weights_record
from gapforge.models.metal_gate import GapDistribution, combine, fit_std_scale

log = logging.getLogger(__name__)

KIND = "experiment-head"
WEIGHTS_FILE = "head.skops"
FORMAT_VERSION = 1
#: Sub-directory of an oracle's directory that holds its experimental head.
HEAD_DIR = "experiment"
SIGMA_QUANTILES = (0.158655, 0.841345)
#: ``host_fraction`` of newly trained heads (``gapforge train experiment-head --host-fraction``)
HOST_FRACTION_DEFAULT = 0.0
#: skops types a head file may contain (nothing else is rebuilt).
TRUSTED_TYPES: tuple[str, ...] = (
    "gapforge.models.featurize.MagpieFeaturizer",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss.loss.AbsoluteError",
    "sklearn._loss.loss.PinballLoss",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.Interval",
    "sklearn._loss._loss.CyAbsoluteError",
    "sklearn._loss._loss.CyPinballLoss",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "numpy.random._mt19937.MT19937",
    "numpy.random.mtrand.RandomState",
    "builtins.slice",
)


class Fidelity(StrEnum):
    """Which band gap a prediction stands for: the PBE functional's (default) or a measured one."""

    PBE = "pbe"
    EXPERIMENT = "experiment"


class HeadTarget(StrEnum):
    """What the head's gap regressor fits: the gap (eV) or ``log1p`` of it.

    The regressor minimises absolute error, so it estimates a conditional median, and a
    median commutes with the monotone ``log1p``: ``expm1`` of the fitted value is the median
    gap again; the log scale only evens out the trees' splits between 0.5 eV and 10 eV gaps.
    """

    GAP = "gap"
    LOG1P = "log1p"


class HeadFeatures(StrEnum):
    """Inputs of the experimental head."""

    MAGPIE = "magpie"
    MAGPIE_PBE = "magpie+pbe"


def pbe_features(pbe_model: Any, formulas: Sequence[str]) -> np.ndarray:
    """``(N, 4)`` PBE inputs: P(metal), non-metal gap, its std, gated prediction (NaN where unknown).

    An oracle without a metal head gives P(metal) = 0 and its plain mean and std.
    """
    parts = pbe_model.components(list(formulas)) if hasattr(pbe_model, "components") else None
    if parts is not None and getattr(pbe_model, "metal_head", False):
        # the gated point of the raw mixture (as the head was trained on), whatever the
        # oracle's CDF recalibration does to its reported median
        g = combine(*(parts[c].to_numpy(dtype=float) for c in (C.P_METAL, C.BAND_GAP_MEAN, C.BAND_GAP_STD)),
                    std_scale=pbe_model.std_scale)  # fmt: skip
        gated = parts.assign(**{C.BAND_GAP_MEAN: g.point})
    else:
        gated = pbe_model.predict(list(formulas))
    if parts is None:
        parts = gated.assign(**{C.P_METAL: np.nan})
    p_metal = parts[C.P_METAL].to_numpy(dtype=float)
    if np.isnan(p_metal).all():  # an oracle without a metal head: no metal is foreseen
        p_metal = np.where(gated[C.REASON].to_numpy() == "", 0.0, np.nan)
    return np.column_stack(
        [
            p_metal,
            parts[C.BAND_GAP_MEAN].to_numpy(dtype=float),
            parts[C.BAND_GAP_STD].to_numpy(dtype=float),
            gated[C.BAND_GAP_MEAN].to_numpy(dtype=float),
        ]
    )


class ExperimentHead:
    """Experimental band gaps (eV) from composition and a PBE oracle's outputs.

    Args:
        features: ``magpie+pbe`` (default) or ``magpie`` (no transfer; the baseline).
        max_iter: boosting iterations of each booster.
        learning_rate: boosting learning rate.
        max_leaf_nodes: leaves per tree.
        min_samples_leaf: smallest leaf.
        seed: random seed of the boosters.
        host_fraction: ask the PBE oracle about each composition's host: elements below this
            share of the atoms are left out of the formula it reads
            (:func:`~gapforge.models.featurize.host_formulas`; 0: the plain composition, as
            heads saved before this option). Roost reads ``Si0.999Ge0.001`` as a Si-Ge
            compound (0.27 eV against 1.22 for Si: each element's message comes from the
            others whatever their share), so a head trained on measured doped compounds met
            their pure hosts with PBE inputs it had never seen.
        host_magpie: also compute the Magpie order statistics over the host
            (:func:`~gapforge.models.featurize.host_featurize`).
        target: ``gap`` (as heads saved before this option) or ``log1p`` (:class:`HeadTarget`).
    """

    kind = KIND
    #: the fitted CDF recalibration (see :attr:`recalibration`), or None
    recalibration_: Any = None

    def __init__(
        self,
        features: str = "magpie+pbe",
        max_iter: int = 300,
        learning_rate: float = 0.05,
        max_leaf_nodes: int = 31,
        min_samples_leaf: int = 10,
        seed: int = 0,
        host_fraction: float = 0.0,
        host_magpie: bool = False,
        target: str = "gap",
    ) -> None:
        self.features = features
        self.host_fraction = host_fraction
        self.host_magpie = host_magpie
        self.target = target
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.seed = seed

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments (JSON-ready)."""
        return {
            "features": self.features,
            "max_iter": self.max_iter,
            "learning_rate": self.learning_rate,
            "max_leaf_nodes": self.max_leaf_nodes,
            "min_samples_leaf": self.min_samples_leaf,
            "seed": self.seed,
            "host_fraction": self.host_fraction,
            "host_magpie": self.host_magpie,
            "target": self.target,
        }

    def _design(self, formulas: Sequence[str], pbe_model: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from gapforge.models.featurize import host_featurize, host_formulas

        fm = host_featurize(self.featurizer_, list(formulas), self.host_fraction if self.host_magpie else 0.0)
        X = fm.X
        if HeadFeatures(self.features) is HeadFeatures.MAGPIE_PBE:
            if pbe_model is None:
                raise ModelError("this experimental head needs its PBE oracle's predictions (pbe_model)")
            hosts = host_formulas(self.featurizer_, list(formulas), self.host_fraction)
            X = np.column_stack([X, pbe_features(pbe_model, hosts)])
        return X, fm.valid, fm.reasons

    def _kw(self) -> dict[str, Any]:
        return {
            "max_iter": self.max_iter,
            "learning_rate": self.learning_rate,
            "max_leaf_nodes": self.max_leaf_nodes,
            "min_samples_leaf": self.min_samples_leaf,
            "random_state": self.seed,
        }

    def fit(
        self,
        formulas: Sequence[str],
        band_gaps: Sequence[float],
        *,
        pbe_model: Any = None,
        val_formulas: Sequence[str] | None = None,
        val_band_gaps: Sequence[float] | None = None,
        recalibration_folds: int = 0,
    ) -> Self:
        """Fit the gate's classifier and regressors; fit ``std_scale_`` on the validation rows.

        The CDF recalibration is fitted on the validation rows, or with
        ``recalibration_folds`` > 0 cross-fitted on the training rows
        (:meth:`cross_fit_recalibration`).

        Raises:
            ModelError: no usable row, or no metal / non-metal row to learn from.
        """
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        from gapforge.models.featurize import MagpieFeaturizer

        self.featurizer_ = MagpieFeaturizer().fit(None)
        X, valid, _ = self._design(formulas, pbe_model)
        y = np.asarray(band_gaps, dtype=float)
        ok = valid & np.isfinite(y)
        X, y = X[ok], y[ok]
        metal = y <= 0
        if metal.all() or not metal.any():
            raise ModelError("the experimental head needs both metals (0 eV) and non-metals to learn from")
        kw = self._kw()
        self.classifier_ = HistGradientBoostingClassifier(**kw).fit(X, metal)
        log = HeadTarget(self.target) is HeadTarget.LOG1P
        self.regressor_ = HistGradientBoostingRegressor(loss="absolute_error", **kw).fit(
            X[~metal], np.log1p(y[~metal]) if log else y[~metal]
        )
        self.quantiles_ = [
            HistGradientBoostingRegressor(loss="quantile", quantile=q, **kw).fit(X[~metal], y[~metal])
            for q in SIGMA_QUANTILES
        ]
        self.std_scale_ = 1.0
        self.n_train_ = int(ok.sum())
        if val_formulas is not None and len(val_formulas):
            p, mu, s, vok = self._parts(val_formulas, pbe_model)
            yv = np.asarray(val_band_gaps, dtype=float)

            def err_std(k: float) -> tuple[np.ndarray, np.ndarray]:
                g = combine(p[vok], mu[vok], s[vok], std_scale=k)
                return g.point - yv[vok], g.std

            self.std_scale_ = fit_std_scale(err_std)
            from gapforge.models.calibration import CdfRecalibration

            raw = GapDistribution(p[vok], mu[vok], s[vok] * self.std_scale_)
            self.recalibration_ = CdfRecalibration.fit(raw.pit(yv[vok], seed=self.seed))
        if recalibration_folds:
            self.cross_fit_recalibration(formulas, band_gaps, pbe_model=pbe_model, folds=recalibration_folds)
        return self

    def cross_fit_recalibration(
        self, formulas: Sequence[str], band_gaps: Sequence[float], *, pbe_model: Any = None, folds: int = 5
    ) -> Self:
        """Refit the CDF recalibration on out-of-fold PITs of the training rows (cross-fitting).

        A few hundred validation rows leave the recalibration map noisy in its middle; here
        ``folds`` heads with this head's parameters are each fitted on all training rows but
        one part and predict that part, so every training row gets a PIT from a model that
        did not see it (with this head's ``std_scale_``). Costs ``folds`` extra fits.
        """
        from sklearn.model_selection import KFold

        from gapforge.models.calibration import CdfRecalibration

        self._check()
        formulas = [str(f) for f in formulas]
        y = np.asarray(band_gaps, dtype=float)
        pit = np.full(len(y), np.nan)
        for k, (tr, te) in enumerate(KFold(folds, shuffle=True, random_state=self.seed).split(y)):
            sub = type(self)(**{**self.get_params(), "seed": self.seed + k})
            sub.fit([formulas[i] for i in tr], y[tr], pbe_model=pbe_model)
            p, mu, s, ok = sub._parts([formulas[i] for i in te], pbe_model)
            raw = GapDistribution(p, mu, s * self.std_scale_)
            pit[te] = np.where(ok & np.isfinite(y[te]), raw.pit(y[te], seed=self.seed + k), np.nan)
        self.recalibration_ = CdfRecalibration.fit(pit)
        return self

    @property
    def recalibration(self) -> Any:
        """The CDF recalibration fitted on the validation rows (or read from the model card), or None."""
        if self.recalibration_ is None and getattr(self, "metadata_", {}).get("cdf_recalibration"):
            from gapforge.models.calibration import CdfRecalibration

            self.recalibration_ = CdfRecalibration.from_dict(self.metadata_["cdf_recalibration"])
        return self.recalibration_

    def predict_distribution(self, formulas: Sequence[str], *, pbe_model: Any = None) -> GapDistribution:
        """The head's predictive distribution of experimental gaps (gated, recalibrated when fitted)."""
        self._check()
        formulas = [str(f) for f in formulas]
        reasons = self.featurizer_.featurize(formulas).reasons if formulas else np.zeros(0, dtype=object)
        p, mu, s, _ = self._parts(formulas, pbe_model)
        reasons = np.asarray(reasons, dtype=object)
        return GapDistribution(p, mu, s * self.std_scale_, self.recalibration, reasons)

    def _parts(
        self, formulas: Sequence[str], pbe_model: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        X, valid, _ = self._design(formulas, pbe_model)
        n = len(X)
        p, mu, s = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
        if valid.any():
            Z = X[valid]
            p[valid] = self.classifier_.predict_proba(Z)[:, list(self.classifier_.classes_).index(True)]
            raw = self.regressor_.predict(Z)
            mu[valid] = np.clip(
                np.expm1(raw) if HeadTarget(self.target) is HeadTarget.LOG1P else raw, 0.0, None
            )
            lo, hi = (q.predict(Z) for q in self.quantiles_)
            s[valid] = np.clip((hi - lo) / 2, 1e-3, None)
        return p, mu, s, valid

    def predict(self, formulas: Sequence[str], *, pbe_model: Any = None) -> pd.DataFrame:
        """Experimental gaps: ``formula``, ``band_gap_mean``, ``band_gap_std``, ``p_metal``, ``reason``."""
        return self.predict_distribution(formulas, pbe_model=pbe_model).to_table(formulas)

    def _check(self) -> None:
        if not hasattr(self, "regressor_"):
            raise ModelError("this ExperimentHead is not fitted; call fit() or load() first")

    # -- persistence ----------------------------------------------------------------------
    def save(self, directory: str | Path, *, metadata: dict[str, Any] | None = None) -> Path:
        """Write ``model.json`` and ``head.skops``."""
        from importlib.metadata import version

        self._check()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        content = {
            "featurizer": self.featurizer_,
            "classifier": self.classifier_,
            "regressor": self.regressor_,
            "quantile_lo": self.quantiles_[0],
            "quantile_hi": self.quantiles_[1],
        }
        weights = dump_skops(content, directory, WEIGHTS_FILE, compression=8)
        card = {
            "kind": KIND,
            "params": self.get_params(),
            "metadata": {
                "format_version": FORMAT_VERSION,
                **weights,
                **weights_record(directory, [WEIGHTS_FILE]),
                "std_scale": self.std_scale_,
                "n_train": self.n_train_,
                "sklearn_version": version("scikit-learn"),
                "skops_version": version("skops"),
                **(metadata or {}),
            },
        }
        write_json(card, directory / MODEL_CARD_FILE)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        """Rebuild from ``model.json`` and ``head.skops`` (trusted types only).

        Raises:
            ModelError: missing or corrupt files, another kind, untrusted content.
        """
        directory = Path(directory)
        model, card = rebuild_from_card(
            cls,
            directory,
            kind=KIND,
            format_version=FORMAT_VERSION,
            label="experimental head",
            weights_file=WEIGHTS_FILE,
        )
        content = load_skops(directory / WEIGHTS_FILE, TRUSTED_TYPES, label="experimental head")
        model.featurizer_ = content["featurizer"]
        model.classifier_ = content["classifier"]
        model.regressor_ = content["regressor"]
        model.quantiles_ = [content["quantile_lo"], content["quantile_hi"]]
        meta = card.get("metadata", {})
        model.std_scale_ = float(meta.get("std_scale", 1.0))
        model.n_train_ = meta.get("n_train")
        model.metadata_ = meta
        return model


def head_dir(model_dir: str | Path) -> Path:
    """Where an oracle directory keeps its experimental head."""
    return Path(model_dir) / HEAD_DIR


class ExperimentPredictor:
    """A PBE oracle and its experimental head as one band-gap model (``predict`` = experimental gaps).

    Args:
        pbe_model: the fitted PBE oracle whose outputs feed the head.
        head: the fitted :class:`ExperimentHead`.
    """

    kind = "experiment"
    fidelity = Fidelity.EXPERIMENT

    def __init__(self, pbe_model: Any, head: ExperimentHead) -> None:
        self.pbe_model = pbe_model
        self.head = head

    def predict(self, formulas: Sequence[str]) -> pd.DataFrame:
        """Experimental gaps: ``formula``, ``band_gap_mean``, ``band_gap_std``, ``p_metal``, ``reason``.

        A formula the PBE oracle cannot read (an element without a Roost embedding)
        gets its reason and NaN, as from the oracle itself.
        """
        return self.predict_distribution(formulas).to_table(formulas)

    def predict_distribution(self, formulas: Sequence[str]) -> GapDistribution:
        """The head's predictive distribution (NaN and the oracle's reason where it cannot read one)."""
        formulas = [str(f) for f in formulas]
        dist = self.head.predict_distribution(formulas, pbe_model=self.pbe_model)
        pbe_reasons = self.pbe_model.predict(formulas)[C.REASON].to_numpy(dtype=object)
        bad = (pbe_reasons != "") & (np.asarray(dist.reasons) == "")
        if not bad.any():
            return dist
        nan = np.where(bad, np.nan, 1.0)
        return GapDistribution(
            dist.p_metal * nan,
            dist.mu * nan,
            dist.sigma * nan,
            dist.recalibration,
            np.where(bad, pbe_reasons, dist.reasons).astype(object),
        )

    @property
    def metadata_(self) -> dict[str, Any]:
        """The head's metadata (weights sha256, training record)."""
        return getattr(self.head, "metadata_", {})


def train_experiment_head(
    oracle: str | Path,
    data: str | Path = "expt-gap",
    *,
    out: str | Path | None = None,
    features: str = "magpie+pbe",
    seed: int = 0,
    val_fraction: float = 0.05,
    recalibration_folds: int = 5,
    host_fraction: float = HOST_FRACTION_DEFAULT,
    target: str = "gap",
    command: str | None = None,
) -> tuple[Path, ExperimentHead]:
    """``gapforge train experiment-head``: fit a head on measured gaps beside an oracle.

    ``val_fraction`` of the rows (seeded) is held out to fit the std scale; the CDF
    recalibration is cross-fitted over ``recalibration_folds`` folds of the training rows
    (:meth:`ExperimentHead.cross_fit_recalibration`; 0: fitted on the held-out rows); the head
    is saved to ``out`` (default ``<oracle>/experiment``, where ``--fidelity
    experiment`` finds it).
    """
    import time

    from gapforge.data import fingerprint, load_dataset
    from gapforge.models.registry import load_model, model_dir

    pbe = load_model(oracle)
    df = load_dataset(data, duplicates="keep" if str(data) == "expt-gap" else None)
    perm = np.random.default_rng(seed).permutation(len(df))
    n_val = round(val_fraction * len(df))
    val, train = df.iloc[perm[:n_val]], df.iloc[perm[n_val:]]
    t0 = time.perf_counter()
    head = ExperimentHead(features=features, seed=seed, host_fraction=host_fraction, target=target).fit(
        train[C.FORMULA].tolist(),
        train[C.BAND_GAP].to_numpy(),
        pbe_model=pbe,
        val_formulas=val[C.FORMULA].tolist(),
        val_band_gaps=val[C.BAND_GAP].to_numpy(),
        recalibration_folds=recalibration_folds,
    )
    target = Path(out) if out is not None else head_dir(model_dir(oracle))
    head.save(
        target,
        metadata={
            "data": str(data),
            "data_fingerprint": fingerprint(df),
            "n_val": int(n_val),
            "pbe_oracle_weights_sha256": getattr(pbe, "metadata_", {}).get("weights_sha256"),
            **({"cdf_recalibration": head.recalibration.to_dict()} if head.recalibration is not None else {}),
            "cdf_recalibration_fitted_on": (
                f"out-of-fold PITs of the training rows ({recalibration_folds} folds)"
                if recalibration_folds
                else f"the {n_val} held-out rows"
            ),
            "train_seconds": round(time.perf_counter() - t0, 1),
            "command": command,
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    return target, head


__all__ = [
    "HEAD_DIR",
    "HOST_FRACTION_DEFAULT",
    "ExperimentHead",
    "ExperimentPredictor",
    "Fidelity",
    "HeadFeatures",
    "HeadTarget",
    "head_dir",
    "pbe_features",
    "train_experiment_head",
]

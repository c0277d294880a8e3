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
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd

from gapforge import columns as C
from gapforge.errors import ModelError
from gapforge.models.base import load_skops, rebuild_from_card, save_skops_model
from gapforge.models.boosting import BOOSTER_KEYS, BoosterSettings
from gapforge.models.metal_gate import GapDistribution, combine, fit_std_scale

log = logging.getLogger(__name__)

KIND = "experiment-head"
WEIGHTS_FILE = "head.skops"
FORMAT_VERSION = 2
#: card formats this gapforge reads (1: booster settings flat in ``params``)
READABLE_FORMATS = (1, 2)
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


#: columns :func:`pbe_features` appends to the Magpie descriptors
N_PBE = 4


@dataclass(frozen=True)
class HeadDesign:
    """The head's input rows for some formulas.

    Attributes:
        X: ``(N, d)`` Magpie descriptors [then the ``N_PBE`` PBE inputs].
        valid: ``(N,)`` rows that could be featurised.
        reasons: ``(N,)`` why a row could not ("" where it could).
    """

    X: np.ndarray
    valid: np.ndarray
    reasons: np.ndarray


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


#: booster settings of a head made without ``booster`` (every head saved before the option)
HEAD_BOOSTER = BoosterSettings(max_iter=300, learning_rate=0.05, max_leaf_nodes=31, min_samples_leaf=10)
#: keys of a card's ``params`` written before the settings became one :class:`BoosterSettings`
#: (the five settings of that time; the optional ones came later)
_FLAT_BOOSTER_KEYS = BOOSTER_KEYS


def check_bagging(n_bags: int, bag_fraction: float) -> None:
    """Refuse bagging settings the head cannot fit (``n_bags`` >= 1, ``bag_fraction`` in (0, 1]).

    Raises:
        ModelError: either is out of range.
    """
    if n_bags < 1 or not 0 < bag_fraction <= 1:
        raise ModelError(f"n_bags must be >= 1 and bag_fraction in (0, 1], got {n_bags}, {bag_fraction}")


@dataclass(frozen=True)
class HeadParts:
    """The head's three fitted parts on some design rows, arrays ``(N,)`` (None: part not fitted).

    Attributes:
        p_metal: the classifier's P(metal).
        mu: the gap regressor's median non-metal gap (eV, >= 0).
        sigma: half the distance between the 15.87 / 84.13 % quantile regressors (eV, >= 1e-3).
    """

    p_metal: np.ndarray | None
    mu: np.ndarray | None
    sigma: np.ndarray | None


class ExperimentHead:
    """Experimental band gaps (eV) from composition and a PBE oracle's outputs.

    Args:
        features: ``magpie+pbe`` (default) or ``magpie`` (no transfer; the baseline).
        booster: settings of the classifier, the quantile regressors and (unless
            ``regressor_booster``) the gap regressor; default :data:`HEAD_BOOSTER`. Its seed
            also seeds the cross-fitting folds and the bags.
        regressor_booster: other settings for the gap regressor (None: ``booster``'s).
        n_bags: gap regressors averaged (on the regressor's scale), each fitted on
            ``bag_fraction`` of the non-metal rows drawn without replacement, seeds
            ``seed``, ``seed + 1``, ...; 1: one regressor on all rows.
        bag_fraction: share of the non-metal rows each bagged regressor sees; 1: all of
            them, so the members differ by their seed only, which needs feature subsampling
            (``regressor_booster.max_features``): without it scikit-learn's histogram
            boosting (no early stopping) ignores its seed and the members are identical.
        monotone_pbe: constrain the gap regressor to increase with the PBE oracle's
            non-metal gap and gated gap (scikit-learn ``monotonic_cst``; needs PBE inputs).
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
        booster: BoosterSettings | None = None,
        regressor_booster: BoosterSettings | None = None,
        n_bags: int = 1,
        bag_fraction: float = 0.8,
        monotone_pbe: bool = False,
        host_fraction: float = 0.0,
        host_magpie: bool = False,
        target: str = "gap",
    ) -> None:
        self.features = features
        self.booster = booster
        self.regressor_booster = regressor_booster
        self.n_bags = n_bags
        self.bag_fraction = bag_fraction
        self.monotone_pbe = monotone_pbe
        self.host_fraction = host_fraction
        self.host_magpie = host_magpie
        self.target = target

    @property
    def booster_settings(self) -> BoosterSettings:
        """The classifier's and quantile regressors' settings (``booster`` or :data:`HEAD_BOOSTER`)."""
        return HEAD_BOOSTER if self.booster is None else self.booster

    @property
    def regressor_settings(self) -> BoosterSettings:
        """The gap regressor's settings (``regressor_booster`` or :attr:`booster_settings`)."""
        return self.booster_settings if self.regressor_booster is None else self.regressor_booster

    @property
    def seed(self) -> int:
        """The head's seed: its booster settings' (bags, cross-fitting folds, PIT draws)."""
        return self.booster_settings.seed

    def with_seed(self, seed: int) -> ExperimentHead:
        """An unfitted head with these parameters and every booster seeded with ``seed``."""
        reg = None if self.regressor_booster is None else self.regressor_booster.with_seed(seed)
        return type(self)(
            **{
                **self.get_params(),
                "booster": self.booster_settings.with_seed(seed),
                "regressor_booster": reg,
            }
        )

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments (booster settings as :class:`BoosterSettings`)."""
        return {
            "features": self.features,
            "booster": self.booster_settings,
            "regressor_booster": self.regressor_booster,
            "n_bags": self.n_bags,
            "bag_fraction": self.bag_fraction,
            "monotone_pbe": self.monotone_pbe,
            "host_fraction": self.host_fraction,
            "host_magpie": self.host_magpie,
            "target": self.target,
        }

    def card_params(self) -> dict[str, Any]:
        """:meth:`get_params` as the model card stores it (settings as dicts)."""
        params = self.get_params()
        params["booster"] = self.booster_settings.to_dict()
        params["regressor_booster"] = (
            None if self.regressor_booster is None else self.regressor_booster.to_dict()
        )
        return params

    @classmethod
    def from_card_params(cls, params: dict[str, Any]) -> ExperimentHead:
        """An unfitted head from a card's ``params``, in this layout or the one before it.

        Heads saved before :class:`BoosterSettings` (card format 1) store ``max_iter``,
        ``learning_rate``, ``max_leaf_nodes``, ``min_samples_leaf`` and ``seed`` flat; newer
        ones a ``booster`` dict (and ``regressor_booster``, None or a dict).
        """
        params = dict(params)
        flat = {k: params.pop(k) for k in _FLAT_BOOSTER_KEYS if k in params}
        booster = params.pop("booster", None)
        if flat and booster is not None:
            raise ModelError(f"model card params hold both a booster dict and flat settings {sorted(flat)}")
        booster = flat if flat else booster
        reg = params.pop("regressor_booster", None)
        return cls(
            **params,
            booster=None if booster is None else BoosterSettings.from_dict(booster, defaults=HEAD_BOOSTER),
            regressor_booster=None if reg is None else BoosterSettings.from_dict(reg, defaults=HEAD_BOOSTER),
        )

    def design(self, formulas: Sequence[str], pbe_model: Any) -> HeadDesign:
        """The head's input rows: Magpie descriptors [and the PBE oracle's outputs] of ``formulas``.

        Depends on the head's parameters only (the Magpie featurizer has no fitted state), so
        an unfitted head gives the design a fitted one with these parameters trains on.
        """
        from gapforge.models.featurize import MagpieFeaturizer, host_featurize, host_formulas

        fz = getattr(self, "featurizer_", None) or MagpieFeaturizer().fit(None)
        fm = host_featurize(fz, list(formulas), self.host_fraction if self.host_magpie else 0.0)
        X = fm.X
        if HeadFeatures(self.features) is HeadFeatures.MAGPIE_PBE:
            if pbe_model is None:
                raise ModelError("this experimental head needs its PBE oracle's predictions (pbe_model)")
            hosts = host_formulas(fz, list(formulas), self.host_fraction)
            X = np.column_stack([X, pbe_features(pbe_model, hosts)])
        return HeadDesign(X, fm.valid, np.asarray(fm.reasons, dtype=object))

    def _monotone(self, n_columns: int) -> list[int] | None:
        """``monotonic_cst`` of the gap regressor: +1 on the PBE non-metal and gated gaps."""
        if not self.monotone_pbe:
            return None
        if HeadFeatures(self.features) is not HeadFeatures.MAGPIE_PBE:
            raise ModelError("monotone_pbe constrains the PBE inputs: use features='magpie+pbe'")
        cst = [0] * n_columns
        # the last N_PBE columns are pbe_features(): P(metal), non-metal gap, its std, gated gap
        cst[n_columns - N_PBE + 1] = cst[n_columns - 1] = 1
        return cst

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
        from gapforge.models.featurize import MagpieFeaturizer

        self.featurizer_ = MagpieFeaturizer().fit(None)
        d = self.design(formulas, pbe_model)
        y = np.asarray(band_gaps, dtype=float)
        ok = d.valid & np.isfinite(y)
        self.fit_design(d.X[ok], y[ok])
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

    def fit_design(self, X: np.ndarray, y: np.ndarray, *, gate: bool = True, regressor: bool = True) -> Self:
        """Fit on design rows (:meth:`design`; every row usable, ``y`` finite, 0 eV = metal).

        What :meth:`fit` does after building the design; benchmarks call it on cached designs.
        ``gate`` fits the classifier and quantile regressors, ``regressor`` the gap regressor
        (a benchmark reuses a gate fitted once for variants that change the regressor only).
        Sets ``std_scale_`` to 1 and ``n_train_``.

        Raises:
            ModelError: no metal or no non-metal row to learn from.
        """
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
        metal = y <= 0
        if metal.all() or not metal.any():
            raise ModelError("the experimental head needs both metals (0 eV) and non-metals to learn from")
        Xn, yn = X[~metal], y[~metal]
        if gate:
            kw = self.booster_settings.sklearn_kwargs()
            self.classifier_ = HistGradientBoostingClassifier(**kw).fit(X, metal)
            self.quantiles_ = [
                HistGradientBoostingRegressor(loss="quantile", quantile=q, **kw).fit(Xn, yn)
                for q in SIGMA_QUANTILES
            ]
        if regressor:
            settings = self.regressor_settings
            yt = np.log1p(yn) if HeadTarget(self.target) is HeadTarget.LOG1P else yn
            cst = self._monotone(X.shape[1])
            check_bagging(self.n_bags, self.bag_fraction)
            if self.n_bags > 1 and self.bag_fraction >= 1 and settings.max_features is None:
                log.warning("%d bags on all rows without feature subsampling: identical members", self.n_bags)
            rng = np.random.default_rng(settings.seed)
            self.regressors_ = []
            for b in range(self.n_bags):
                rows = (
                    rng.choice(len(yt), size=int(self.bag_fraction * len(yt)), replace=False)
                    if self.n_bags > 1 and self.bag_fraction < 1
                    else np.arange(len(yt))
                )
                kw = settings.with_seed(settings.seed + b).sklearn_kwargs()
                reg = HistGradientBoostingRegressor(loss="absolute_error", monotonic_cst=cst, **kw)
                self.regressors_.append(reg.fit(Xn[rows], yt[rows]))
        self.std_scale_ = 1.0
        self.n_train_ = len(y)
        return self

    @property
    def regressor_(self) -> Any:
        """The (first) fitted gap regressor."""
        return self.regressors_[0]

    def predict_design(self, X: np.ndarray) -> HeadParts:
        """The fitted parts' outputs on design rows (a part not fitted: None)."""
        X = np.asarray(X, dtype=float)
        p = mu = s = None
        if hasattr(self, "classifier_"):
            p = self.classifier_.predict_proba(X)[:, list(self.classifier_.classes_).index(True)]
            lo, hi = (q.predict(X) for q in self.quantiles_)
            s = np.clip((hi - lo) / 2, 1e-3, None)
        if hasattr(self, "regressors_"):
            raw = np.mean([r.predict(X) for r in self.regressors_], axis=0)
            mu = np.clip(np.expm1(raw) if HeadTarget(self.target) is HeadTarget.LOG1P else raw, 0.0, None)
        return HeadParts(p, mu, s)

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
            sub = self.with_seed(self.seed + k)
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
        d = self.design(formulas, pbe_model)
        n = len(d.X)
        p, mu, s = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
        if d.valid.any():
            parts = self.predict_design(d.X[d.valid])
            p[d.valid], mu[d.valid], s[d.valid] = parts.p_metal, parts.mu, parts.sigma
        return p, mu, s, d.valid

    def predict(self, formulas: Sequence[str], *, pbe_model: Any = None) -> pd.DataFrame:
        """Experimental gaps: ``formula``, ``band_gap_mean``, ``band_gap_std``, ``p_metal``, ``reason``."""
        return self.predict_distribution(formulas, pbe_model=pbe_model).to_table(formulas)

    def _check(self) -> None:
        if not hasattr(self, "regressors_") or not hasattr(self, "classifier_"):
            raise ModelError("this ExperimentHead is not fitted; call fit() or load() first")

    # -- persistence ----------------------------------------------------------------------
    def save(self, directory: str | Path, *, metadata: dict[str, Any] | None = None) -> Path:
        """Write ``model.json`` and ``head.skops``."""
        self._check()
        content = {
            "featurizer": self.featurizer_,
            "classifier": self.classifier_,
            "regressor": self.regressors_[0] if len(self.regressors_) == 1 else list(self.regressors_),
            "quantile_lo": self.quantiles_[0],
            "quantile_hi": self.quantiles_[1],
        }
        return save_skops_model(
            content,
            directory,
            kind=KIND,
            params=self.card_params(),
            weights_file=WEIGHTS_FILE,
            format_version=FORMAT_VERSION,
            metadata={"std_scale": self.std_scale_, "n_train": self.n_train_, **(metadata or {})},
            compression=8,
        )

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
            format_version=READABLE_FORMATS,
            label="experimental head",
            weights_file=WEIGHTS_FILE,
            build=cls.from_card_params,
        )
        content = load_skops(directory / WEIGHTS_FILE, TRUSTED_TYPES, label="experimental head")
        model.featurizer_ = content["featurizer"]
        model.classifier_ = content["classifier"]
        reg = content["regressor"]
        model.regressors_ = list(reg) if isinstance(reg, list) else [reg]
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
    regressor_booster: BoosterSettings | None = None,
    n_bags: int = 1,
    bag_fraction: float = 0.8,
    command: str | None = None,
) -> tuple[Path, ExperimentHead]:
    """``gapforge train experiment-head``: fit a head on measured gaps beside an oracle.

    ``val_fraction`` of the rows (seeded) is held out to fit the std scale; the CDF
    recalibration is cross-fitted over ``recalibration_folds`` folds of the training rows
    (:meth:`ExperimentHead.cross_fit_recalibration`; 0: fitted on the held-out rows);
    ``regressor_booster`` (its seed replaced by ``seed``) are the gap regressor's settings
    (None: :data:`HEAD_BOOSTER`'s); ``n_bags`` / ``bag_fraction`` as in
    :class:`ExperimentHead`; the head
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
    head = ExperimentHead(
        features=features,
        booster=HEAD_BOOSTER.with_seed(seed),
        regressor_booster=None if regressor_booster is None else regressor_booster.with_seed(seed),
        host_fraction=host_fraction,
        target=target,
        n_bags=n_bags,
        bag_fraction=bag_fraction,
    ).fit(
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
    "HEAD_BOOSTER",
    "HEAD_DIR",
    "HOST_FRACTION_DEFAULT",
    "ExperimentHead",
    "ExperimentPredictor",
    "Fidelity",
    "HeadDesign",
    "HeadFeatures",
    "HeadParts",
    "HeadTarget",
    "head_dir",
    "pbe_features",
    "train_experiment_head",
]

"""Magpie-style composition descriptors, vectorised over element-count matrices.

The features are those of matminer's ``ElementProperty.from_preset("magpie")``
(22 Magpie element properties x 6 statistics: minimum, maximum, range, mean,
avg_dev, mode; fractions as weights) plus matminer's ``Stoichiometry``
(number of elements and p-norms 2, 3, 5, 7, 10 of the fractions) and
``ValenceOrbital`` (fraction of s, p, d, f valence electrons); optionally the
element fractions themselves (one column per element, so a tree can split on
"holds Fe" where the statistics blur it) and three SMACT charge-balance flags
(:class:`gapforge.screening.validity.SmactChecker`: SMACT's rule, the same without
its all-metal shortcut, and without the Pauling test), which separate ionic
compounds from intermetallics. The element
table is the Magpie table shipped with SMACT (``smact/data/magpie.csv``; 97
elements H..Bk) and is stored inside every fitted featurizer, so a saved model
does not change when that file does.

Everything is array arithmetic on the non-zero entries of a count matrix
``(N, E)`` (``np.*.reduceat`` over the rows), so a million formulas take
seconds; formula strings are read through :class:`gapforge.encoding.FormulaEncoder`
with a per-formula fallback only for the rare fractional or large-count ones.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from gapforge.encoding import EncodedBatch, FormulaEncoder
from gapforge.formula import parse_formula

#: The 22 element properties of matminer's ``magpie`` preset, in its order.
MAGPIE_PROPERTIES: tuple[str, ...] = (
    "Number", "MendeleevNumber", "AtomicWeight", "MeltingT", "Column", "Row", "CovalentRadius",
    "Electronegativity", "NsValence", "NpValence", "NdValence", "NfValence", "NValence",
    "NsUnfilled", "NpUnfilled", "NdUnfilled", "NfUnfilled", "NUnfilled", "GSvolume_pa",
    "GSbandgap", "GSmagmom", "SpaceGroupNumber",
)  # fmt: skip
#: The statistics of matminer's ``magpie`` preset, in its order.
MAGPIE_STATS: tuple[str, ...] = ("minimum", "maximum", "range", "mean", "avg_dev", "mode")
STOICHIOMETRY_P: tuple[int, ...] = (0, 2, 3, 5, 7, 10)
_VALENCE = ("NsValence", "NpValence", "NdValence", "NfValence")


@functools.cache
def magpie_table_file() -> Path:
    """Path of the Magpie element table shipped with SMACT."""
    import smact

    return Path(smact.__file__).resolve().parent / "data" / "magpie.csv"


@functools.cache
def magpie_table() -> pd.DataFrame:
    """The Magpie element-property table: index = element symbol, columns = properties."""
    df = pd.read_csv(magpie_table_file(), keep_default_na=False, na_values=[""])
    df = df.set_index(df.columns[0])
    return df.astype(np.float64)


@dataclass(frozen=True)
class FeatureMatrix:
    """Descriptors of a batch of formulas.

    Attributes:
        X: ``(N, F)`` features (NaN rows where invalid).
        valid: ``(N,)`` True where the formula could be featurised.
        reasons: ``(N,)`` why not ("" where valid).
    """

    X: np.ndarray
    valid: np.ndarray
    reasons: np.ndarray


class MagpieFeaturizer(TransformerMixin, BaseEstimator):
    """Composition -> Magpie element-property statistics (+ stoichiometry, valence orbitals).

    ``transform`` accepts either formula strings or an ``(N, E)`` array of
    element counts (or fractions) whose columns follow :attr:`elements_`
    (use :meth:`remap` for counts over another vocabulary, e.g. an
    :class:`~gapforge.encoding.EncodedBatch` of the 89-element encoder).
    Rows that cannot be featurised come out as NaN (see :meth:`featurize`
    for the reasons).

    Args:
        stoichiometry: add matminer's Stoichiometry features (6).
        valence_orbital: add matminer's ValenceOrbital fractions (4).
        element_fractions: add the atom fraction of every element (97 columns).
        smact_flags: add 3 charge-balance flags (1/0; NaN for non-integer amounts): SMACT
            validity, the same without the all-metal shortcut, and without the Pauling test.
        max_count: largest element count read from formula strings on the fast path.
        chunk_size: rows per vectorised block (bounds memory).
        dtype: output dtype (``float32`` suits scikit-learn's trees).
    """

    def __init__(
        self,
        stoichiometry: bool = True,
        valence_orbital: bool = True,
        max_count: int = 64,
        chunk_size: int = 200_000,
        dtype: str = "float32",
        element_fractions: bool = False,
        smact_flags: bool = False,
    ) -> None:
        self.stoichiometry = stoichiometry
        self.valence_orbital = valence_orbital
        self.element_fractions = element_fractions
        self.smact_flags = smact_flags
        self.max_count = max_count
        self.chunk_size = chunk_size
        self.dtype = dtype

    # -- scikit-learn API -------------------------------------------------------------
    def fit(self, X: object = None, y: object = None) -> MagpieFeaturizer:
        """Store the element table (no learning from data); return self."""
        table = magpie_table()
        self.elements_ = [str(s) for s in table.index]
        self.table_ = np.ascontiguousarray(table[list(MAGPIE_PROPERTIES)].to_numpy(np.float64))
        self.feature_names_ = self._names()
        return self

    def transform(self, X: Sequence[str] | np.ndarray) -> np.ndarray:
        """Features ``(N, F)`` of formula strings or of counts ``(N, E)`` over :attr:`elements_`."""
        return self.featurize(X).X

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        """Feature names in matminer's style (``MagpieData mean Number``, ...)."""
        self._check()
        return np.array(self.feature_names_, dtype=object)

    # -- gapforge API -----------------------------------------------------------------
    def featurize(self, X: Sequence[str] | np.ndarray | EncodedBatch) -> FeatureMatrix:
        """Features with validity and reasons.

        Args:
            X: formula strings, or counts/fractions ``(N, E)`` over :attr:`elements_`.
        """
        self._check()
        if isinstance(X, EncodedBatch):
            raise TypeError("pass EncodedBatch counts through MagpieFeaturizer.remap(counts, elements)")
        if isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype.kind in "iuf":
            if X.shape[1] != len(self.elements_):
                raise ValueError(f"counts have {X.shape[1]} columns, the featurizer {len(self.elements_)}")
            amounts = X
            reasons = np.full(len(X), "", dtype=object)
            reasons[~(amounts > 0).any(axis=1)] = "empty composition"
        else:
            amounts, reasons = self._read_formulas(list(X))
        valid = reasons == ""
        feats = np.full((len(amounts), len(self.feature_names_)), np.nan, dtype=self.dtype)
        rows = np.flatnonzero(valid)
        for b in range(0, len(rows), self.chunk_size):
            r = rows[b : b + self.chunk_size]
            feats[r] = self._features(amounts[r])
        return FeatureMatrix(feats, valid, reasons)

    def remap(self, counts: np.ndarray, elements: Sequence[str]) -> np.ndarray:
        """Re-order counts ``(N, E')`` over ``elements`` onto :attr:`elements_` ``(N, E)``.

        Raises:
            ValueError: an element of ``elements`` that has no Magpie data and
                occurs in ``counts``.
        """
        self._check()
        counts = np.asarray(counts)
        index = {s: i for i, s in enumerate(self.elements_)}
        cols = np.array([index.get(s, -1) for s in elements], dtype=np.intp)
        missing = (cols < 0) & (counts != 0).any(axis=0)
        if missing.any():
            bad = [s for s, m in zip(elements, missing, strict=True) if m]
            raise ValueError(f"elements without Magpie data: {', '.join(bad)}")
        out = np.zeros((len(counts), len(self.elements_)), dtype=counts.dtype)
        keep = cols >= 0
        out[:, cols[keep]] = counts[:, keep]
        return out

    # -- internals --------------------------------------------------------------------
    def _check(self) -> None:
        if not hasattr(self, "table_"):
            self.fit()

    def _names(self) -> list[str]:
        names = [f"MagpieData {s} {p}" for p in MAGPIE_PROPERTIES for s in MAGPIE_STATS]
        if self.stoichiometry:
            names += [f"{p}-norm" for p in STOICHIOMETRY_P]
        if self.valence_orbital:
            names += [f"frac {o} valence electrons" for o in "spdf"]
        if getattr(self, "element_fractions", False):  # absent from featurizers saved before
            names += [f"fraction {e}" for e in self.elements_]
        if getattr(self, "smact_flags", False):
            names += [f"SMACT {c}" for c in SMACT_FLAG_RULES]
        return names

    def _read_formulas(self, formulas: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Amounts ``(N, E)`` float64 and reasons from strings (fast encoder, then fallback)."""
        batch = _encoder(tuple(self.elements_), self.max_count).encode(formulas)
        amounts = batch.counts.astype(np.float64)
        reasons = np.asarray(batch.reasons, dtype=object).copy()
        retry = np.flatnonzero(~batch.valid)
        if len(retry):
            index = {s: i for i, s in enumerate(self.elements_)}
            cache: dict[str, tuple[np.ndarray | None, str]] = {}
            for i in retry:
                text = str(formulas[i])
                if text not in cache:
                    cache[text] = _fallback(text, index, str(reasons[i]))
                vec, why = cache[text]
                if vec is not None:
                    amounts[i] = vec
                reasons[i] = why
        return amounts, reasons

    def _features(self, amounts: np.ndarray) -> np.ndarray:
        """Features of rows that all hold at least one element."""
        rows, cols = np.nonzero(amounts)
        a = amounts[rows, cols].astype(np.float64)
        n = len(amounts)
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        total = np.add.reduceat(a, starts)
        w = a / total[rows]
        wcol = w[:, None]
        v = self.table_[cols]  # (nnz, P)
        vmin = np.minimum.reduceat(v, starts, axis=0)
        vmax = np.maximum.reduceat(v, starts, axis=0)
        mean = np.add.reduceat(v * wcol, starts, axis=0)
        avg_dev = np.add.reduceat(np.abs(v - mean[rows]) * wcol, starts, axis=0)
        wmax = np.maximum.reduceat(w, starts)
        is_mode = w >= wmax[rows] - 1e-12
        mode = np.minimum.reduceat(np.where(is_mode[:, None], v, np.inf), starts, axis=0)
        stats = {
            "minimum": vmin,
            "maximum": vmax,
            "range": vmax - vmin,
            "mean": mean,
            "avg_dev": avg_dev,
            "mode": mode,
        }
        blocks = [np.stack([stats[s] for s in MAGPIE_STATS], axis=2).reshape(n, -1)]
        if self.stoichiometry:
            st = [np.bincount(rows, minlength=n).astype(np.float64)]
            for p in STOICHIOMETRY_P[1:]:
                st.append(np.add.reduceat(w**p, starts) ** (1.0 / p))
            blocks.append(np.stack(st, axis=1))
        if self.valence_orbital:
            idx = [MAGPIE_PROPERTIES.index(p) for p in _VALENCE]
            orb = mean[:, idx]
            tot = orb.sum(axis=1, keepdims=True)
            blocks.append(np.divide(orb, tot, out=np.zeros_like(orb), where=tot > 0))
        if getattr(self, "element_fractions", False):
            blocks.append(amounts / amounts.sum(axis=1, keepdims=True))
        if getattr(self, "smact_flags", False):
            blocks.append(smact_flags(amounts, tuple(self.elements_)))
        return np.concatenate(blocks, axis=1).astype(self.dtype)


#: the SMACT rules of the ``smact_flags`` features (``SmactConfig`` overrides of the pinned defaults)
SMACT_FLAG_RULES: dict[str, dict[str, bool]] = {
    "valid": {},
    "charge-balanced (no all-metal shortcut)": {"include_alloys": False},
    "charge-balanced (no all-metal shortcut, no Pauling test)": {
        "include_alloys": False,
        "use_pauling_test": False,
    },
}


@functools.cache
def _smact_checkers(elements: tuple[str, ...]) -> tuple[object, ...]:
    from gapforge.screening.validity import SmactChecker, SmactConfig

    return tuple(SmactChecker(elements, SmactConfig(**kw)) for kw in SMACT_FLAG_RULES.values())


def smact_flags(amounts: np.ndarray, elements: tuple[str, ...]) -> np.ndarray:
    """``(N, 3)`` SMACT flags (1.0 / 0.0) of amounts ``(N, E)`` over ``elements``.

    Rows with an amount that is not a whole number are NaN (charge balance needs integer counts).
    """
    amounts = np.asarray(amounts, dtype=np.float64)
    whole = np.all(np.abs(amounts - np.round(amounts)) < 1e-9, axis=1)
    out = np.full((len(amounts), len(SMACT_FLAG_RULES)), np.nan)
    if whole.any():
        counts = np.round(amounts[whole]).astype(np.int64)
        for j, checker in enumerate(_smact_checkers(elements)):
            out[whole, j] = checker.check_counts(counts)  # type: ignore[attr-defined]
    return out


#: statistics that jump when a trace element appears (they ignore the fractions)
ORDER_STATS: tuple[str, ...] = ("minimum", "maximum", "range", "mode")


def _host_mask(amounts: np.ndarray, min_fraction: float) -> np.ndarray:
    """Elements holding at least ``min_fraction`` of the atoms (and the most abundant one)."""
    total = amounts.sum(axis=1, keepdims=True)
    w = np.divide(amounts, total, out=np.zeros_like(amounts, dtype=np.float64), where=total > 0)
    return (amounts > 0) & ((w >= min_fraction) | (w >= w.max(axis=1, keepdims=True) - 1e-12))


def host_formulas(featurizer: MagpieFeaturizer, formulas: Sequence[str], min_fraction: float) -> list[str]:
    """Each formula without its elements below ``min_fraction`` of the atoms.

    ``Si0.999Ge0.001`` -> ``Si0.999`` at ``min_fraction=0.05``. A formula that cannot be read
    is returned as it is (its reader reports why).
    """
    featurizer._check()
    formulas = [str(f) for f in formulas]
    if min_fraction <= 0:
        return formulas
    amounts, reasons = featurizer._read_formulas(formulas)
    keep = _host_mask(amounts, min_fraction)
    out = []
    for text, row, k, why in zip(formulas, amounts, keep, reasons, strict=True):
        idx = np.flatnonzero(k)
        out.append(
            "".join(f"{featurizer.elements_[j]}{row[j]:g}" for j in idx) if why == "" and len(idx) else text
        )
    return out


def host_featurize(
    featurizer: MagpieFeaturizer, formulas: Sequence[str], min_fraction: float
) -> FeatureMatrix:
    """Magpie features whose order statistics describe the host, not its trace dopants.

    ``minimum``, ``maximum``, ``range`` and ``mode`` of a property, and the element count
    (``0-norm``), ignore the fractions: ``Si0.999Ge0.001`` gets Ge's maximum and two
    elements, pure Si one, so a 0.1 % dopant moves a composition as far in this space as a
    whole second element, and a model trained on doped compounds meets the pure host as a
    stranger. Here those columns are computed over the elements holding at least
    ``min_fraction`` of the atoms (the most abundant element always counts); the
    fraction-weighted columns (``mean``, ``avg_dev``, the p-norms, valence fractions) keep
    every element. ``min_fraction`` <= 0: the plain features.
    """
    featurizer._check()
    full = featurizer.featurize([str(f) for f in formulas])
    if min_fraction <= 0 or not full.valid.any():
        return full
    amounts, _ = featurizer._read_formulas([str(f) for f in formulas])
    rows = np.flatnonzero(full.valid)
    a = amounts[rows]
    host = featurizer.featurize(np.where(_host_mask(a, min_fraction), a, 0.0))
    names = featurizer.feature_names_
    cols = [i for i, n in enumerate(names) if n.startswith("MagpieData ") and n.split(" ")[1] in ORDER_STATS]
    if featurizer.stoichiometry:
        cols.append(names.index(f"{STOICHIOMETRY_P[0]}-norm"))
    X = full.X.copy()
    X[np.ix_(rows, cols)] = host.X[:, cols]
    return FeatureMatrix(X, full.valid, full.reasons)


@functools.cache
def _encoder(elements: tuple[str, ...], max_count: int) -> FormulaEncoder:
    return FormulaEncoder(elements, n_levels=max_count)


def _fallback(text: str, index: dict[str, int], reason: str) -> tuple[np.ndarray | None, str]:
    """Amounts of one formula the encoder rejected (fractional amounts, large counts)."""
    if not (reason.startswith("fractional amount") or reason.startswith("count ")):
        return None, reason.replace("not in the vocabulary", "has no Magpie data")
    try:
        amounts = parse_formula(text)
    except ValueError as exc:
        return None, f"{getattr(exc, 'message', exc)}: {text}"
    vec = np.zeros(len(index))
    for sym, amt in amounts.items():
        j = index.get(sym)
        if j is None:
            return None, f"element {sym} has no Magpie data: {text}"
        vec[j] += amt
    if (vec < 0).any() or not (vec > 0).any():
        return None, f"empty or negative composition: {text}"
    return vec, ""


__all__ = [
    "MAGPIE_PROPERTIES",
    "MAGPIE_STATS",
    "ORDER_STATS",
    "FeatureMatrix",
    "MagpieFeaturizer",
    "host_featurize",
    "host_formulas",
    "magpie_table",
]

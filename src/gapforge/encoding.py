"""Formula <-> one-hot matrix, as in Xin et al. (2021).

A formula is a matrix of shape ``(n_elements, n_levels)``: rows are the
elements of a vocabulary in atomic-number order, column ``j`` means "this
element occurs ``j + 1`` times in the gcd-reduced formula", and an all-zero
row means the element is absent. The default vocabulary is the 89 elements of
the ``mp-bandgap`` data with 8 levels (counts 1..8).

Decoding rule (from scores or probabilities ``p``, shape ``(N, E, L)``):

* ``"strict"`` (the paper's): binarise at ``threshold`` (``p >= 0.5``). A row
  with no 1 is an absent element; a row with exactly one 1 at column ``j`` is
  the element with count ``j + 1``; a row with two or more 1s makes the whole
  formula invalid, and so does a matrix with no element at all.
* ``"argmax"``: in each row take the most probable column; the element is
  present (count = column + 1) when that probability is ``>= threshold``.
  Only an all-absent matrix is invalid.

A decoded count vector is reduced by its gcd before it becomes a formula, so
``Li2F2`` decodes to ``LiF``. Invalid rows decode to ``None``.

Everything is vectorised over the batch; the only per-formula Python work is
reading each *distinct* formula string once.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from pymatgen.core import Composition

from gapforge.formula import _TOKEN, _element_table, atomic_number, parse_formula

#: The 89 elements of the paper's Materials Project band-gap data, atomic-number order.
MP_BANDGAP_ELEMENTS: tuple[str, ...] = (
    "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P", "S",
    "Cl", "Ar", "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga",
    "Ge", "As", "Se", "Br", "Kr", "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd",
    "Ag", "Cd", "In", "Sn", "Sb", "Te", "I", "Xe", "Cs", "Ba", "La", "Ce", "Pr", "Nd", "Pm",
    "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W", "Re", "Os",
    "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Ac", "Th", "Pa", "U", "Np", "Pu",
)  # fmt: skip

DecodeRule = Literal["strict", "argmax"]


@dataclass(frozen=True)
class EncodedBatch:
    """The result of encoding a batch of formulas.

    Attributes:
        formulas: the input strings, as given.
        reduced: pymatgen reduced formula of each encodable input, ``""`` otherwise.
        counts: ``(N, E)`` int16 gcd-reduced element counts (zeros where invalid).
        valid: ``(N,)`` bool, True where the formula is encodable.
        reasons: ``(N,)`` str, empty where valid, else why it is not encodable.
        n_levels: number of count levels ``L``.
    """

    formulas: np.ndarray
    reduced: np.ndarray
    counts: np.ndarray
    valid: np.ndarray
    reasons: np.ndarray
    n_levels: int

    def __len__(self) -> int:
        return len(self.formulas)

    @property
    def matrices(self) -> np.ndarray:
        """``(N, E, L)`` uint8 one-hot matrices (all zero where invalid)."""
        return counts_to_onehot(self.counts, self.n_levels)


@dataclass(frozen=True)
class FormulaEncoder:
    """Formula <-> one-hot matrix codec over a fixed element vocabulary.

    Args:
        elements: element symbols; stored in atomic-number order.
        n_levels: the largest count that can be encoded (columns 1..n_levels).
    """

    elements: tuple[str, ...] = MP_BANDGAP_ELEMENTS
    n_levels: int = 8
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ordered = tuple(sorted(dict.fromkeys(self.elements), key=atomic_number))
        object.__setattr__(self, "elements", ordered)
        if self.n_levels < 1:
            raise ValueError(f"n_levels must be >= 1, got {self.n_levels}")
        object.__setattr__(self, "_index", {s: i for i, s in enumerate(ordered)})

    # -- construction and persistence -------------------------------------------------
    @classmethod
    def from_formulas(cls, formulas: Iterable[str], n_levels: int = 8) -> FormulaEncoder:
        """Vocabulary = every element occurring in ``formulas``."""
        elements: set[str] = set()
        for f in dict.fromkeys(formulas):
            elements.update(parse_formula(f))
        return cls(tuple(elements), n_levels)

    def to_dict(self) -> dict:
        """JSON-ready description, stored beside every model that uses it."""
        return {"elements": list(self.elements), "n_levels": self.n_levels}

    @classmethod
    def from_dict(cls, d: dict) -> FormulaEncoder:
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(d["elements"]), int(d["n_levels"]))

    @property
    def n_elements(self) -> int:
        """Number of rows ``E`` of a formula matrix."""
        return len(self.elements)

    @property
    def shape(self) -> tuple[int, int]:
        """``(E, L)``: the shape of one formula matrix."""
        return (self.n_elements, self.n_levels)

    # -- encoding ---------------------------------------------------------------------
    def encode(self, formulas: Sequence[str]) -> EncodedBatch:
        """Encode a batch of formula strings.

        Formulas that cannot be encoded are kept with ``valid=False`` and a
        reason (unparsable, unknown element, element outside the vocabulary,
        fractional amount, count above ``n_levels``); nothing is dropped.
        """
        formulas = np.asarray(list(formulas), dtype=object)
        inverse, uniq = pd.factorize(pd.Series(formulas, dtype=object).astype(str))
        uniq = np.asarray(uniq, dtype=object)
        u_counts = np.zeros((len(uniq), self.n_elements), dtype=np.int64)
        u_reason = np.full(len(uniq), "", dtype=object)
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        index = self._index
        table = _element_table()
        for i, text in enumerate(uniq):
            compact = text.replace(" ", "")
            tokens = _TOKEN.findall(compact)
            if tokens and sum(len(s) + len(c) for s, c in tokens) == len(compact):
                pairs = [(s, float(c) if c else 1.0) for s, c in tokens]
            else:
                try:
                    pairs = list(parse_formula(text).items())
                except ValueError as exc:
                    u_reason[i] = getattr(exc, "message", str(exc)) + f": {text}"
                    continue
            for sym, amt in pairs:
                j = index.get(sym)
                if j is None:
                    u_reason[i] = (
                        f"element {sym} not in the vocabulary" if sym in table else f"unknown element {sym}"
                    )
                    break
                rows.append(i)
                cols.append(j)
                vals.append(amt)
        amounts = np.zeros((len(uniq), self.n_elements), dtype=np.float64)
        np.add.at(amounts, (np.asarray(rows, dtype=np.intp), np.asarray(cols, dtype=np.intp)), vals)
        bad = u_reason != ""
        amounts[bad] = 0.0
        rounded = np.rint(amounts)
        frac = ~bad & (np.abs(amounts - rounded) > 1e-6).any(axis=1)
        u_reason[frac] = "fractional amount"
        nonpos = ~bad & ~frac & (amounts < 0).any(axis=1)
        u_reason[nonpos] = "negative amount"
        ok = u_reason == ""
        u_counts[ok] = rounded[ok].astype(np.int64)
        g = np.gcd.reduce(u_counts, axis=1)
        empty = ok & (g == 0)
        u_reason[empty] = "empty formula"
        ok &= ~empty
        u_counts[ok] //= g[ok, None]
        too_big = ok & (u_counts.max(axis=1) > self.n_levels)
        if too_big.any():
            for i in np.flatnonzero(too_big):
                j = int(np.argmax(u_counts[i]))
                u_reason[i] = f"count {u_counts[i, j]} of {self.elements[j]} above {self.n_levels}"
        ok &= ~too_big
        u_counts[~ok] = 0
        u_reduced = np.full(len(uniq), "", dtype=object)
        u_reduced[ok] = self.counts_to_formulas(u_counts[ok])
        for i in np.flatnonzero(~ok):
            if not str(u_reason[i]).endswith(uniq[i]):
                u_reason[i] = f"{u_reason[i]}: {uniq[i]}"
        return EncodedBatch(
            formulas=formulas,
            reduced=u_reduced[inverse],
            counts=u_counts[inverse].astype(np.int16),
            valid=ok[inverse],
            reasons=u_reason[inverse],
            n_levels=self.n_levels,
        )

    def encode_matrices(self, formulas: Sequence[str], *, strict: bool = True) -> np.ndarray:
        """One-hot matrices ``(N, E, L)`` uint8 of formulas that must all be encodable.

        Raises:
            FormulaError: with ``strict``, the first formula that cannot be encoded.
        """
        from gapforge.errors import FormulaError

        batch = self.encode(formulas)
        if strict and not batch.valid.all():
            i = int(np.flatnonzero(~batch.valid)[0])
            raise FormulaError(f"cannot encode ({batch.reasons[i]})", row=i + 1, value=batch.formulas[i])
        return batch.matrices

    # -- decoding ---------------------------------------------------------------------
    def decode_counts(
        self, scores: np.ndarray, *, rule: DecodeRule = "strict", threshold: float = 0.5
    ) -> tuple[np.ndarray, np.ndarray]:
        """Turn scores ``(N, E, L)`` into gcd-reduced counts ``(N, E)`` and a validity mask ``(N,)``."""
        scores = np.asarray(scores)
        if scores.ndim != 3 or scores.shape[1:] != self.shape:
            raise ValueError(
                f"expected scores of shape (N, {self.n_elements}, {self.n_levels}), got {scores.shape}"
            )
        if rule == "strict":
            on = np.ascontiguousarray(scores >= threshold)
            if self.n_levels == 8 and sys.byteorder == "little":
                # each row's 8 booleans are one uint64: 0 = absent, a power of two = one count
                v = on.view(np.uint64)[..., 0]
                absent = v == 0
                single = ~absent & ((v & (v - np.uint64(1))) == 0)
                _, exp = np.frexp(v.astype(np.float64))
                counts = np.where(single, (exp - 1) // 8 + 1, 0)
                valid = (single | absent).all(axis=1) & single.any(axis=1)
            else:
                per_row = on.sum(axis=2)
                counts = np.where(per_row == 1, on.argmax(axis=2) + 1, 0)
                valid = (per_row <= 1).all(axis=1) & (per_row == 1).any(axis=1)
        elif rule == "argmax":
            best = scores.argmax(axis=2)
            top = np.take_along_axis(scores, best[..., None], axis=2)[..., 0]
            counts = np.where(top >= threshold, best + 1, 0)
            valid = (counts > 0).any(axis=1)
        else:
            raise ValueError(f"unknown decode rule {rule!r} (use 'strict' or 'argmax')")
        counts = counts.astype(np.int16)
        counts[~valid] = 0
        counts = reduce_counts(counts)
        return counts.astype(np.int16), valid

    def decode(
        self, scores: np.ndarray, *, rule: DecodeRule = "strict", threshold: float = 0.5
    ) -> list[str | None]:
        """Decode scores or one-hot matrices ``(N, E, L)`` to reduced formulas (``None`` if invalid)."""
        counts, valid = self.decode_counts(scores, rule=rule, threshold=threshold)
        out: list[str | None] = [None] * len(counts)
        if valid.any():
            idx = np.flatnonzero(valid)
            for i, f in zip(idx, self.counts_to_formulas(counts[idx]), strict=True):
                out[i] = f
        return out

    def counts_to_formulas(self, counts: np.ndarray) -> list[str]:
        """Pymatgen reduced formulas of count vectors ``(N, E)``, vectorised.

        Follows :func:`pymatgen.core.composition.reduce_formula`: gcd
        reduction, elements in order of electronegativity (alphabetical
        tie-break), the last two in brackets when they form a polyanion
        (three or more elements, electronegativity gap below 1.65 and a
        common factor), then ``Composition.special_formulas``. An all-zero
        row gives ``""``.
        """
        counts = np.asarray(counts)
        n = len(counts)
        if n == 0:
            return []
        fmt = _formatter(self.elements, self.n_levels)
        c = reduce_counts(counts)[:, fmt.order]
        if c.max(initial=0) > fmt.max_count:
            fmt = _formatter(self.elements, int(c.max()))
        rows, cols = np.nonzero(c)
        vals = c[rows, cols]
        tokens = fmt.tokens[cols, vals].copy()
        n_el = np.bincount(rows, minlength=n)
        starts = np.zeros(n, dtype=np.intp)
        np.cumsum(n_el[:-1], out=starts[1:])
        # polyanion: last two elements of a row with >= 3 elements
        cand = np.flatnonzero(n_el >= 3)
        if len(cand):
            last = starts[cand] + n_el[cand] - 1
            prev = last - 1
            with np.errstate(invalid="ignore"):  # noble gases: inf - inf is NaN, as pymatgen's NaN X
                close = fmt.x[cols[last]] - fmt.x[cols[prev]] < 1.65
            pf = np.gcd(vals[last], vals[prev])
            poly = close & (pf != 1)
            for k in np.flatnonzero(poly):
                a, b, f = prev[k], last[k], pf[k]
                inner = fmt.tokens[cols[a], vals[a] // f] + fmt.tokens[cols[b], vals[b] // f]
                tokens[a] = f"({inner}){f}"
                tokens[b] = ""
        out = np.full(n, "", dtype=object)
        has = n_el > 0
        if has.any():
            out[has] = np.add.reduceat(tokens, starts[has]) if len(tokens) else ""
        special = fmt.special
        return [special.get(f, f) for f in out.tolist()]

    def formulas_to_counts(self, formulas: Sequence[str]) -> np.ndarray:
        """Counts ``(N, E)`` of encodable formulas (raises on the first that is not)."""
        from gapforge.errors import FormulaError

        batch = self.encode(formulas)
        if not batch.valid.all():
            i = int(np.flatnonzero(~batch.valid)[0])
            raise FormulaError(f"cannot encode ({batch.reasons[i]})", row=i + 1, value=batch.formulas[i])
        return batch.counts


@dataclass(frozen=True)
class _Formatter:
    order: np.ndarray  # vocabulary columns sorted by (electronegativity, symbol)
    x: np.ndarray  # electronegativity of each sorted column
    tokens: np.ndarray  # (E, max_count + 1) object: symbol + count string
    max_count: int
    special: dict


@functools.cache
def _formatter(elements: tuple[str, ...], max_count: int) -> _Formatter:
    table = _element_table()
    order = np.array(sorted(range(len(elements)), key=lambda j: (table[elements[j]][1], elements[j])))
    syms = [elements[j] for j in order]
    x = np.array([table[s][1] for s in syms])
    tokens = np.empty((len(syms), max_count + 1), dtype=object)
    for i, s in enumerate(syms):
        tokens[i, 0] = ""
        for c in range(1, max_count + 1):
            tokens[i, c] = s if c == 1 else f"{s}{c}"
    return _Formatter(order, x, tokens, max_count, dict(Composition.special_formulas))


def reduce_counts(counts: np.ndarray) -> np.ndarray:
    """Divide each count vector ``(N, E)`` by its gcd (only rows that need it are touched)."""
    counts = np.asarray(counts)
    smallest = np.where(counts > 0, counts, np.iinfo(counts.dtype).max).min(
        axis=1, initial=np.iinfo(counts.dtype).max
    )
    rows = np.flatnonzero((smallest >= 2) & (smallest < np.iinfo(counts.dtype).max))
    if len(rows) == 0:
        return counts
    out = counts.copy()
    g = np.gcd.reduce(out[rows], axis=1)
    out[rows] //= g[:, None].astype(out.dtype)
    return out


def counts_to_onehot(counts: np.ndarray, n_levels: int) -> np.ndarray:
    """Counts ``(N, E)`` -> one-hot ``(N, E, L)`` uint8 (count ``c`` sets column ``c - 1``)."""
    counts = np.asarray(counts)
    levels = np.arange(1, n_levels + 1, dtype=counts.dtype)
    return (counts[..., None] == levels).astype(np.uint8)


def onehot_to_counts(matrices: np.ndarray) -> np.ndarray:
    """Exact inverse of :func:`counts_to_onehot` for well-formed matrices."""
    matrices = np.asarray(matrices)
    present = matrices.any(axis=2)
    return np.where(present, matrices.argmax(axis=2) + 1, 0).astype(np.int16)


def n_atoms(counts: np.ndarray) -> np.ndarray:
    """Atoms per reduced formula unit for counts ``(N, E)``."""
    return np.asarray(counts).sum(axis=1)


def n_elements_of(counts: np.ndarray) -> np.ndarray:
    """Number of distinct elements for counts ``(N, E)``."""
    return (np.asarray(counts) > 0).sum(axis=1)


__all__ = [
    "MP_BANDGAP_ELEMENTS",
    "EncodedBatch",
    "FormulaEncoder",
    "counts_to_onehot",
    "n_atoms",
    "n_elements_of",
    "onehot_to_counts",
    "reduce_counts",
]

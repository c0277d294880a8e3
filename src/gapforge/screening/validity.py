"""SMACT chemical validity (charge neutrality + Pauling electronegativity), vectorised.

:func:`smact.screening.smact_validity` answers one composition at a time in
about a millisecond (it loops over every oxidation-state combination in
Python), which makes a million generated formulas a twenty-minute job. This
module gives the *same answer* for whole batches of count vectors with numpy.

The rule (SMACT 4.0 defaults, pinned in :class:`SmactConfig`):

1. one element -> valid; every element a metal (``smact.metals``) -> valid
   ("alloy" fast path);
2. an element without oxidation states in the ICSD-24 set (consensus 3, no
   zero state) or without a Pauling electronegativity -> invalid;
3. otherwise valid iff some choice of one oxidation state per element is
   charge neutral (``sum(count_i * ox_i) == 0``) and every cation is less
   electronegative than every anion (``X_cation < X_anion``).

Because the ICSD-24 set has no zero state, every element is either a cation
or an anion, and the Pauling test says the cations are exactly the elements
below some electronegativity cut. So instead of trying every combination we
try each cut (each prefix of the elements sorted by ``X``, split only between
different ``X``), form the set of achievable cation charges and the set of
achievable anion charges, and test whether they meet. That is a few hundred
small-integer operations per formula, done for thousands of formulas at once.
Without the Pauling test, formulas with more than
:attr:`SmactConfig.max_vectorised_elements` elements (rare) fall back to
:func:`smact.screening.smact_validity` itself.
The tests check this equals ``smact_validity`` on thousands of formulas.
"""

from __future__ import annotations

import functools
import itertools
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

#: Marks a padded (absent) oxidation state in the per-element tables.
_PAD = 2000


@dataclass(frozen=True)
class SmactConfig:
    """How SMACT validity is judged (pinned: SMACT's defaults have changed between releases).

    Attributes:
        consensus: minimum ICSD-24 literature occurrences for an oxidation state.
        commonality: ICSD-24 commonality filter (``"low"`` keeps every state).
        use_pauling_test: also require cations less electronegative than anions.
        include_alloys: compositions made only of metals are valid.
        max_vectorised_elements: without the Pauling test, formulas with more
            elements go through ``smact_validity`` one by one (with it, the
            vectorised test tries only ``k - 1`` splits and handles any ``k``;
            SMACT's own loop is exponential in ``k`` and takes minutes for one
            formula of 13 elements).
        chunk_size: formulas per vectorised block (bounds memory).
    """

    consensus: int = 3
    commonality: str = "low"
    use_pauling_test: bool = True
    include_alloys: bool = True
    max_vectorised_elements: int = 12
    chunk_size: int = 20_000

    def to_dict(self) -> dict:
        """JSON-ready description (recorded beside every screen)."""
        return {
            "oxidation_states_set": "icsd24",
            "include_zero": False,
            "consensus": self.consensus,
            "commonality": self.commonality,
            "use_pauling_test": self.use_pauling_test,
            "include_alloys": self.include_alloys,
            "mixed_valence": False,
        }


@functools.cache
def _icsd24_states(consensus: int, commonality: str) -> dict[str, tuple[int, ...]]:
    from smact.utils.oxidation import ICSD24OxStatesFilter

    table = ICSD24OxStatesFilter().filter(consensus=consensus, include_zero=False, commonality=commonality)
    return {
        str(el): tuple(int(x) for x in str(ox).split())
        for el, ox in zip(table["element"], table["oxidation_state"], strict=True)
    }


@dataclass(frozen=True)
class _ElementTables:
    pos: np.ndarray  # (E, P) int16 positive states, padded with _PAD
    neg: np.ndarray  # (E, Q) int16 |negative states|, padded with _PAD
    x: np.ndarray  # (E,) Pauling electronegativity (nan if missing)
    usable: np.ndarray  # (E,) has oxidation states and an electronegativity
    metal: np.ndarray  # (E,) in smact.metals


class SmactChecker:
    """Vectorised :func:`smact.screening.smact_validity` over a fixed element vocabulary.

    Args:
        elements: the vocabulary (columns of the count vectors), e.g.
            ``FormulaEncoder().elements``.
        config: the pinned SMACT settings.

    Example:
        >>> enc = FormulaEncoder()
        >>> SmactChecker(enc.elements).check_counts(enc.formulas_to_counts(["NaCl", "NaCl2"]))
        array([ True, False])
    """

    def __init__(self, elements: Sequence[str], config: SmactConfig | None = None) -> None:
        self.elements = tuple(elements)
        self.config = config or SmactConfig()
        self._tables = self._build_tables()

    def _build_tables(self) -> _ElementTables:
        import smact

        states = _icsd24_states(self.config.consensus, self.config.commonality)
        n = len(self.elements)
        pos_l: list[list[int]] = []
        neg_l: list[list[int]] = []
        x = np.full(n, np.nan)
        usable = np.zeros(n, dtype=bool)
        metal = np.array([s in smact.metals for s in self.elements])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i, sym in enumerate(self.elements):
                ox = states.get(sym, ())
                try:
                    eneg = smact.Element(sym).pauling_eneg
                except (NameError, KeyError, ValueError):
                    eneg = None
                if eneg is not None:
                    x[i] = float(eneg)
                # without the Pauling test an element needs no electronegativity
                usable[i] = bool(ox) and (eneg is not None or not self.config.use_pauling_test)
                pos_l.append(sorted(o for o in ox if o > 0))
                neg_l.append(sorted(-o for o in ox if o < 0))
        p = max(1, *(len(v) for v in pos_l))
        q = max(1, *(len(v) for v in neg_l))
        pos = np.full((n, p), _PAD, dtype=np.int16)
        neg = np.full((n, q), _PAD, dtype=np.int16)
        for i in range(n):
            pos[i, : len(pos_l[i])] = pos_l[i]
            neg[i, : len(neg_l[i])] = neg_l[i]
        return _ElementTables(pos, neg, x, usable, metal)

    # -- public API -------------------------------------------------------------------
    @property
    def electronegativity(self) -> np.ndarray:
        """Pauling electronegativity of each vocabulary element (``nan`` where SMACT has none)."""
        return self._tables.x.copy()

    def check_counts(self, counts: np.ndarray) -> np.ndarray:
        """SMACT validity of count vectors.

        Args:
            counts: ``(N, E)`` non-negative integer counts over :attr:`elements`
                (reduced or not; they are gcd-reduced here as SMACT does).

        Returns:
            ``(N,)`` bool; an all-zero row is invalid.
        """
        counts = np.asarray(counts)
        if counts.ndim != 2 or counts.shape[1] != len(self.elements):
            raise ValueError(f"expected counts of shape (N, {len(self.elements)}), got {counts.shape}")
        block = 200_000  # bounds the int64 working copy
        if len(counts) > block:
            return np.concatenate(
                [self.check_counts(counts[i : i + block]) for i in range(0, len(counts), block)]
            )
        counts = counts.astype(np.int64)
        g = np.gcd.reduce(counts, axis=1)
        g[g == 0] = 1
        counts = counts // g[:, None]
        t = self._tables
        present = counts > 0
        k = present.sum(axis=1)
        out = np.zeros(len(counts), dtype=bool)
        out[k == 1] = True
        if self.config.include_alloys:
            all_metal = (k >= 1) & ~(present & ~t.metal).any(axis=1)
            out |= all_metal
        todo = (k >= 2) & ~out & ~(present & ~t.usable).any(axis=1)
        kmax = self.config.max_vectorised_elements
        for kk in np.unique(k[todo]):
            rows = np.flatnonzero(todo & (k == kk))
            if kk > kmax and not self.config.use_pauling_test:
                # without the Pauling test every one of the 2**k cation/anion splits is tried
                out[rows] = self._fallback(counts[rows])
                continue
            for start in range(0, len(rows), self._chunk(int(kk))):
                block = rows[start : start + self._chunk(int(kk))]
                out[block] = self._check_block(counts[block], int(kk))
        return out

    def check_formulas(self, formulas: Sequence[str]) -> np.ndarray:
        """SMACT validity of formula strings (``(N,)`` bool).

        Formulas that the vocabulary cannot encode are judged by
        ``smact_validity`` itself; unparsable ones are invalid.
        """
        from gapforge.encoding import FormulaEncoder
        from gapforge.errors import FormulaError
        from gapforge.formula import parse_formula

        enc = FormulaEncoder(self.elements, n_levels=64)
        batch = enc.encode(formulas)
        out = np.zeros(len(batch), dtype=bool)
        if batch.valid.any():
            out[batch.valid] = self.check_counts(batch.counts[batch.valid].astype(np.int64))
        for i in np.flatnonzero(~batch.valid):
            try:
                parse_formula(str(batch.formulas[i]))
            except FormulaError:
                continue  # unparsable or unknown element: invalid
            out[i] = _smact_one(str(batch.formulas[i]), self.config)
        return out

    # -- internals --------------------------------------------------------------------
    def _chunk(self, k: int) -> int:
        work = min(self._tables.pos.shape[1] ** (k - 1), 512) + 64 * k * k
        return max(64, min(self.config.chunk_size, 4_000_000 // work))

    def _fallback(self, counts: np.ndarray) -> np.ndarray:
        from gapforge.encoding import FormulaEncoder

        enc = FormulaEncoder(self.elements, n_levels=int(counts.max(initial=1)))
        formulas = enc.counts_to_formulas(counts)
        return np.array([_smact_one(f, self.config) for f in formulas], dtype=bool)

    def _check_block(self, counts: np.ndarray, k: int) -> np.ndarray:
        """Exact test for ``n`` formulas that all have ``k`` usable elements."""
        t = self._tables
        n = len(counts)
        _, cols = np.nonzero(counts)
        idx = cols.reshape(n, k)
        # sort each formula's elements by electronegativity
        order = np.argsort(t.x[idx], axis=1, kind="stable")
        idx = np.take_along_axis(idx, order, axis=1)
        cnt = counts[np.arange(n)[:, None], idx].astype(np.int32)
        xs = t.x[idx]
        # every real total charge is below `size`; `size` also marks a padded state
        pos, neg = t.pos[idx], t.neg[idx]
        biggest = np.maximum(
            np.where(pos == _PAD, 0, pos).max(axis=2), np.where(neg == _PAD, 0, neg).max(axis=2)
        )
        size = int((biggest * cnt).sum(axis=1).max()) + 1
        cat = np.where(pos == _PAD, size, pos * cnt[..., None])  # (n, k, P) charge as a cation
        ani = np.where(neg == _PAD, size, neg * cnt[..., None])  # (n, k, Q) |charge| as an anion
        valid = np.zeros(n, dtype=bool)
        for mask in self._cation_masks(k):
            if self.config.use_pauling_test:
                p = int(sum(mask))
                ok = ~valid & (xs[:, p - 1] < xs[:, p])
            else:
                ok = ~valid
            if not ok.any():
                continue
            sel = np.flatnonzero(ok)
            c_pos = [i for i in range(k) if mask[i]]
            a_pos = [i for i in range(k) if not mask[i]]
            c_tab = _achievable(cat[sel][:, c_pos], size)
            a_tab = _achievable(ani[sel][:, a_pos], size)
            valid[sel] = (c_tab & a_tab).any(axis=1)
        return valid

    def _cation_masks(self, k: int) -> list[tuple[bool, ...]]:
        if self.config.use_pauling_test:
            # cations are the p least electronegative elements
            return [tuple(i < p for i in range(k)) for p in range(1, k)]
        return [m for m in itertools.product((True, False), repeat=k) if any(m) and not all(m)]


def _achievable(parts: np.ndarray, size: int) -> np.ndarray:
    """Charges reachable by picking one entry per element.

    Args:
        parts: ``(n, m, S)`` int32 charge of each state of each element
            (``>= size`` for a padded state).
        size: length of the returned table; every real sum is ``< size``.

    Returns:
        ``(n, size)`` bool, ``True`` at every reachable total charge.
    """
    n, m, s = parts.shape
    if s**m <= 512:  # enumerate the combinations
        acc = parts[:, 0, :]
        for j in range(1, m):
            acc = (acc[:, :, None] + parts[:, j, None, :]).reshape(n, -1)
        acc = np.where(acc >= size, size, acc)
        table = np.zeros((n, size + 1), dtype=bool)
        table[np.repeat(np.arange(n), acc.shape[1]), acc.ravel()] = True
        return table[:, :size]
    # dynamic programme over elements: sets of reachable sums as boolean rows
    table = _achievable(parts[:, :1], size)
    for j in range(1, m):
        rows, vals = np.nonzero(table)
        nxt = np.zeros_like(table)
        for k in range(s):
            nv = vals + parts[rows, j, k]
            keep = nv < size
            nxt[rows[keep], nv[keep]] = True
        table = nxt
    return table


def _smact_one(formula: str, config: SmactConfig) -> bool:
    from smact.screening import ICSD24FilterConfig, smact_validity

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(
                smact_validity(
                    formula,
                    use_pauling_test=config.use_pauling_test,
                    include_alloys=config.include_alloys,
                    icsd_filter=ICSD24FilterConfig(
                        consensus=config.consensus, commonality=config.commonality
                    ),
                )
            )
    except (ValueError, KeyError, TypeError, ZeroDivisionError):  # e.g. amounts that round to 0
        return False


__all__ = ["SmactChecker", "SmactConfig"]

"""Learned prototype ranking: several pieces of evidence per candidate prototype, one fitted score.

The rule of :mod:`gapforge.structure.templates` scores a candidate prototype
(anonymised formula + space group) for a query formula by ElMD to its nearest
template plus ``weight * -ln(share)`` of the prototype among the 5 ElMD-nearest
known formulas. This module gathers more of that evidence, as template-based
structure predictors (TCSP) do, and lets a gradient-boosted classifier
(scikit-learn ``HistGradientBoostingClassifier``, pointwise: "is this the
query's prototype?") weigh it:

- ElMD to the prototype's nearest template, its gap to the nearest of all and its rank;
- ElMD to the nearest *known* formula (``mp-formulas``) taking the prototype, its gap and rank;
- the prototype's share among the 1, 3, 5, 10 and 25 nearest known formulas and an
  ElMD-kernel-weighted share (three widths);
- its share among all known formulas of the anonymised formula, and the counts;
- element-substitution evidence between the query and the template (Hautier et al.'s
  lambda table, ``pymatgen.analysis.structure_prediction``: the log pair correlation of
  the best oxidation states of each substituted element pair);
- the template's energy above hull, formula units, whether it is an AFLOW prototype,
  the space group and crystal system, the query's number of elements and atoms.

The query's own formula never contributes (``leave_out``) when a known material
is rebuilt, so training on known materials sees what an unknown candidate sees.
The fitted model ships as ``gapforge/pretrained/prototype_ranker`` (skops, loaded
with a trusted-type list; sha256 in ``model.json``); it is fitted and measured by
``benchmarks/bench_prototype_ranker.py``.
"""

from __future__ import annotations

import functools
import logging
import math
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gapforge import columns as C
from gapforge.structure.prototypes import AFLOW_ID_PREFIX, PrototypeCounts

log = logging.getLogger(__name__)

#: Directory name of the shipped ranker under ``gapforge/pretrained``.
RANKER_NAME = "prototype_ranker"
KIND = "prototype_ranker"
WEIGHTS_FILE = "ranker.skops"
FORMAT_VERSION = 1
#: Types skops may rebuild from the ranker file.
TRUSTED_TYPES = (
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.Interval",
    "numpy.dtype",
    "collections.OrderedDict",
)
LOCAL_K = (1, 3, 5, 10, 25)
KERNEL_WIDTHS = (0.5, 1.5, 4.0)
FEATURES = (
    "elmd",
    "elmd_gap",
    "elmd_rank",
    "n_prototypes",
    "known_nn",
    "known_nn_gap",
    "known_nn_rank",
    *(f"local_share_{k}" for k in LOCAL_K),
    *(f"kernel_share_{w}" for w in KERNEL_WIDTHS),
    "global_share",
    "log_prototype_count",
    "log_pattern_count",
    "log_templates",
    "template_e_above_hull",
    "template_formula_units",
    "aflow",
    "spacegroup",
    "crystal_system",
    "substitution_mean",
    "substitution_min",
    "n_elements",
    "n_atoms",
)


class PrototypeRanking(StrEnum):
    """How same-pattern prototypes are ordered: the fitted ranker, or the ElMD + share rule."""

    LEARNED = "learned"
    RULE = "rule"


@dataclass(frozen=True)
class Candidates:
    """The candidate prototypes of one query (one representative template each).

    Attributes:
        positions: positions (into the searched ``lib_idx``) of the representatives, nearest first.
        spacegroups: their space groups (NaN: unknown).
        features: one row of :data:`FEATURES` per candidate.
    """

    positions: np.ndarray
    spacegroups: np.ndarray
    features: np.ndarray


def _crystal_system(sg: float) -> float:
    if not np.isfinite(sg):
        return float("nan")
    for i, top in enumerate((2, 15, 74, 142, 167, 194, 230)):
        if sg <= top:
            return float(i)
    return float("nan")


@functools.cache
def _substitution_matrix() -> tuple[dict[str, int], np.ndarray]:
    """Element x element: max over oxidation states of ln(pair correlation) in the lambda table."""
    from pymatgen.analysis.structure_prediction.substitution_probability import SubstitutionProbability

    sp = SubstitutionProbability()
    species = list(sp.species)
    elements = sorted({s.symbol for s in species})
    pos = {e: i for i, e in enumerate(elements)}
    # ln pair correlation = lambda + ln Z - ln p(s1) - ln p(s2), as SubstitutionProbability.pair_corr
    lam = np.array([[sp.get_lambda(a, b) for b in species] for a in species])
    log_px = np.log([sp.get_px(s) for s in species])
    corr = lam + math.log(sp.Z) - log_px[:, None] - log_px[None, :]
    owner = np.array([pos[s.symbol] for s in species])
    mat = np.full((len(elements), len(elements)), np.nan)
    for i in range(len(elements)):
        rows = corr[owner == i]
        for j in range(len(elements)):
            mat[i, j] = rows[:, owner == j].max()
    return pos, mat


def _pairing(formula_elements: list[tuple[str, float]]) -> list[str]:
    """Elements ordered by amount then modified Pettifor position (the order a substitution pairs)."""
    from gapforge.structure.elmd import pettifor_position

    return [e for e, _ in sorted(formula_elements, key=lambda x: (x[1], pettifor_position(x[0])))]


@functools.cache
def _elements_of(formula: str) -> tuple[tuple[str, float], ...]:
    from gapforge.formula import parse_formula

    return tuple(parse_formula(formula).items())


def substitution_scores(query: str, template: str) -> tuple[float, float]:
    """Mean and minimum element-pair ln(pair correlation) of substituting ``template`` into ``query``.

    Elements are paired by amount, then modified Pettifor order; a pair the lambda
    table does not know scores NaN.
    """
    pos, mat = _substitution_matrix()
    q = _pairing(list(_elements_of(query)))
    t = _pairing(list(_elements_of(template)))
    if len(q) != len(t):
        return float("nan"), float("nan")
    vals = [mat[pos[a], pos[b]] if a in pos and b in pos else np.nan for a, b in zip(q, t, strict=True)]
    arr = np.array(vals, dtype=float)
    if not np.isfinite(arr).any():
        return float("nan"), float("nan")
    return float(np.nanmean(arr)), float(np.nanmin(arr))


def _rank(values: np.ndarray) -> np.ndarray:
    v = np.where(np.isfinite(values), values, np.inf)
    order = np.argsort(v, kind="stable")
    out = np.empty(len(v))
    out[order] = np.arange(len(v))
    return out


class KnownPattern:
    """The known formulas of one anonymised formula (each with its most common space group)."""

    def __init__(self, counts: PrototypeCounts, pattern: str) -> None:
        names, groups, cum = counts._pattern(pattern)
        self.names = np.asarray(names, dtype=object)
        self.groups = np.asarray(groups, dtype=float)
        self.cum = cum


def candidate_features(
    query: str,
    pattern: str,
    dist: np.ndarray,
    lib_idx: np.ndarray,
    templates: Any,
    counts: PrototypeCounts,
    known: KnownPattern,
    known_dist: np.ndarray,
    *,
    leave_out: str | None,
) -> Candidates:
    """Features of every prototype among ``templates.table.iloc[lib_idx]`` for ``query``.

    Args:
        query: the query's reduced formula.
        pattern: its anonymised formula (every row of ``lib_idx`` has it).
        dist: ElMD from the query to each row of ``lib_idx``.
        lib_idx: usable template rows (own formula already removed when rebuilding).
        templates: the template library.
        counts: prototype counts of the known entries.
        known: the known formulas of ``pattern``.
        known_dist: ElMD from the query to each of ``known``.
        leave_out: a formula whose known entries do not count (the query itself when rebuilding).
    """
    t = templates.table
    sg_all = t[C.SPACEGROUP_NUMBER].to_numpy(dtype=float)
    ids = t[C.MATERIAL_ID].to_numpy(dtype=object).astype(str)
    ehull = t[C.E_ABOVE_HULL].to_numpy(dtype=float)
    nsites = t[C.NSITES].to_numpy(dtype=float)
    formula = t[C.REDUCED_FORMULA].to_numpy(dtype=object)
    ehull_tie = np.nan_to_num(ehull[lib_idx], nan=1.0)
    order = np.lexsort((ids[lib_idx], ehull_tie, np.round(dist, 10)))
    reps: dict[object, int] = {}
    n_templates: dict[object, int] = {}
    for pos in order:
        g = sg_all[lib_idx[pos]]
        key = ("sg", int(g)) if np.isfinite(g) else ("id", int(lib_idx[pos]))
        n_templates[key] = n_templates.get(key, 0) + 1
        reps.setdefault(key, int(pos))
    keys = list(reps)
    positions = np.array([reps[k] for k in keys], dtype=int)
    rows = lib_idx[positions]
    sgs = sg_all[rows]
    n = len(keys)
    d = dist[positions]

    kd = np.asarray(known_dist, dtype=float)
    kg = known.groups
    if leave_out is not None and len(kd):
        kd = np.where(known.names == leave_out, np.inf, kd)
    finite = np.isfinite(kd)
    kd, kg = kd[finite], kg[finite]
    korder = np.argsort(kd, kind="stable")
    kd_sorted, kg_sorted = kd[korder], kg[korder]
    nn = np.full(n, np.nan)
    local = np.zeros((n, len(LOCAL_K)))
    kernel = np.zeros((n, len(KERNEL_WIDTHS)))
    if len(kd):
        for i, g in enumerate(sgs):
            if np.isfinite(g):
                same = kg_sorted == g
                if same.any():
                    nn[i] = kd_sorted[np.argmax(same)]
                for j, k in enumerate(LOCAL_K):
                    top = kg_sorted[:k]
                    local[i, j] = float(np.mean(top == g))
        for j, w in enumerate(KERNEL_WIDTHS):
            weights = np.exp(-(kd_sorted - kd_sorted[0]) / w)
            total = weights.sum()
            for i, g in enumerate(sgs):
                if np.isfinite(g):
                    kernel[i, j] = float(weights[kg_sorted == g].sum() / total)
    nn_min = float(kd_sorted[0]) if len(kd_sorted) else np.nan

    pattern_total = counts.by_anonymized.get(pattern, 0)
    if leave_out is not None:
        pattern_total -= counts.formula_totals.get(leave_out, 0)
    glob = np.zeros(n)
    pcount = np.zeros(n)
    for i, g in enumerate(sgs):
        if np.isfinite(g):
            c = counts.by_prototype.get((pattern, int(g)), 0)
            if leave_out is not None:
                c -= counts.by_formula.get((leave_out, int(g)), 0)
            pcount[i] = c
            glob[i] = c / pattern_total if pattern_total > 0 else 0.0

    elements = _elements_of(query)
    n_atoms = float(sum(a for _, a in elements))
    subs = np.array([substitution_scores(query, str(formula[r])) for r in rows], dtype=float).reshape(n, 2)
    feats = np.column_stack(
        [
            d,
            d - d.min(),
            _rank(d),
            np.full(n, float(n)),
            nn,
            nn - nn_min,
            _rank(nn),
            local,
            kernel,
            glob,
            np.log1p(pcount),
            np.full(n, math.log1p(max(pattern_total, 0))),
            np.log1p([n_templates[k] for k in keys]),
            ehull[rows],
            nsites[rows] / n_atoms,
            np.array([ids[r].startswith(AFLOW_ID_PREFIX) for r in rows], dtype=float),
            sgs,
            np.array([_crystal_system(g) for g in sgs]),
            subs,
            np.full(n, float(len(elements))),
            np.full(n, n_atoms),
        ]
    )
    return Candidates(positions=positions, spacegroups=sgs, features=feats)


def training_queries(
    library: Any, counts: PrototypeCounts, templates: Any, excluded: set[str], max_atoms: int
) -> pd.DataFrame:
    """Training queries: known formulas with their true space group, minus ``excluded``.

    Queries are the formulas of ``counts`` (``mp-formulas``) and of ``library`` with at most
    ``max_atoms`` atoms per formula unit, every element on the modified Pettifor scale, and an
    anonymised formula that ``templates`` holds. Label: the ground-state space group where the
    library has the formula (lowest energy above hull, as the benchmark materials), else the
    formula's most common space group among the known entries (formulas with a tie are skipped).
    ``excluded`` (the benchmark's dev and test formulas) never becomes a query: no leakage.

    Returns:
        Columns ``reduced_formula``, ``anonymized_formula``, ``spacegroup_number``.
    """
    t = library.table
    ground = (
        t.assign(_e=t[C.E_ABOVE_HULL].fillna(np.inf))
        .sort_values(["_e", C.MATERIAL_ID])
        .drop_duplicates(C.REDUCED_FORMULA)
    )
    label = {
        f: float(g)
        for f, g in zip(ground[C.REDUCED_FORMULA], ground[C.SPACEGROUP_NUMBER], strict=True)
        if np.isfinite(g)
    }
    per_formula: dict[str, Counter] = {}
    for (f, sg), n in counts.by_formula.items():
        per_formula.setdefault(f, Counter())[sg] += n
    for f, c in per_formula.items():
        if f in label:
            continue
        top = c.most_common(2)
        if len(top) == 2 and top[0][1] == top[1][1]:
            continue
        label[f] = float(top[0][0])
    from gapforge.errors import FormulaError
    from gapforge.formula import parse_formula
    from gapforge.structure.elmd import MODIFIED_PETTIFOR
    from gapforge.structure.prototypes import _anonymized

    patterns = set(templates.anonymized)
    rows = []
    for f, sg in label.items():
        if f in excluded:
            continue
        try:
            els = parse_formula(f)
        except FormulaError:
            continue
        if sum(els.values()) > max_atoms or not all(e in MODIFIED_PETTIFOR for e in els):
            continue
        a = _anonymized(f)
        if a in patterns:
            rows.append((f, a, sg))
    return pd.DataFrame(rows, columns=[C.REDUCED_FORMULA, C.ANONYMIZED_FORMULA, C.SPACEGROUP_NUMBER])


def query_candidates(
    queries: pd.DataFrame, templates: Any, counts: PrototypeCounts
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query: (features of its candidate prototypes, 1 where it is the true prototype).

    ``queries`` has the columns of :func:`training_queries`; each query's own formula is
    left out of the templates and of every count, as when a known material is rebuilt.
    """
    from gapforge.structure.elmd import cumulative_matrix, elmd_matrix

    out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(queries)
    formulas = queries[C.REDUCED_FORMULA].to_numpy(dtype=object)
    anon = queries[C.ANONYMIZED_FORMULA].to_numpy(dtype=object)
    truth = queries[C.SPACEGROUP_NUMBER].to_numpy(dtype=float)
    lib_formula = templates.table[C.REDUCED_FORMULA].to_numpy(dtype=object)
    for pattern in pd.unique(anon):
        qi = np.flatnonzero(anon == pattern)
        lib_idx = np.flatnonzero(templates.anonymized == pattern)
        cum = cumulative_matrix(list(formulas[qi]))
        dist = elmd_matrix(cum, templates.cumulative[lib_idx])
        known = KnownPattern(counts, str(pattern))
        kdist = elmd_matrix(cum, known.cum) if len(known.names) else np.zeros((len(qi), 0))
        for row, q in enumerate(qi):
            keep = lib_formula[lib_idx] != formulas[q]
            if not keep.any():
                out[q] = (np.zeros((0, len(FEATURES))), np.zeros(0))
                continue
            c = candidate_features(
                str(formulas[q]),
                str(pattern),
                dist[row][keep],
                lib_idx[keep],
                templates,
                counts,
                known,
                kdist[row],
                leave_out=str(formulas[q]),
            )
            out[q] = (c.features, (c.spacegroups == truth[q]).astype(int))
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class RankerParams:
    """Gradient-boosting settings of the ranker (chosen on the dev queries)."""

    learning_rate: float = 0.05
    max_iter: int = 300
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 40
    l2_regularization: float = 1.0
    seed: int = 0


class PrototypeRanker:
    """A fitted pointwise classifier over :data:`FEATURES`; higher score = more likely the prototype."""

    def __init__(self, model: Any, *, metadata: dict[str, Any] | None = None) -> None:
        self.model = model
        self.metadata = dict(metadata or {})

    @classmethod
    def fit(
        cls, features: np.ndarray, labels: np.ndarray, params: RankerParams = RankerParams()
    ) -> PrototypeRanker:
        """Fit on stacked candidate rows (``labels`` 1 for the query's true prototype)."""
        from sklearn.ensemble import HistGradientBoostingClassifier

        model = HistGradientBoostingClassifier(
            learning_rate=params.learning_rate,
            max_iter=params.max_iter,
            max_leaf_nodes=params.max_leaf_nodes,
            min_samples_leaf=params.min_samples_leaf,
            l2_regularization=params.l2_regularization,
            early_stopping=False,
            random_state=params.seed,
        )
        model.fit(np.asarray(features, dtype=float), np.asarray(labels, dtype=int))
        return cls(model, metadata={"params": params.__dict__})

    def score(self, features: np.ndarray) -> np.ndarray:
        """Log-odds of being the true prototype, one per candidate row."""
        if len(features) == 0:
            return np.zeros(0)
        return np.asarray(self.model.decision_function(np.asarray(features, dtype=float)), dtype=float)

    def save(self, directory: str | Path, *, metadata: dict[str, Any] | None = None) -> Path:
        """Write ``ranker.skops`` and ``model.json`` (with the file's sha256)."""
        import zipfile

        from gapforge.models.base import save_skops_model

        return save_skops_model(
            self.model,
            directory,
            kind=KIND,
            params={},
            weights_file=WEIGHTS_FILE,
            format_version=FORMAT_VERSION,
            metadata={"features": list(FEATURES), **self.metadata, **(metadata or {})},
            compression=zipfile.ZIP_DEFLATED,
            compresslevel=9,
        )

    @classmethod
    def load(cls, directory: str | Path) -> PrototypeRanker:
        """Read a ranker directory (trusted types only; sha256 checked).

        Raises:
            ModelError: missing or corrupt files, another kind or format, features that differ.
        """
        from gapforge.errors import ModelError
        from gapforge.models.base import load_skops, rebuild_from_card

        directory = Path(directory)
        _, card = rebuild_from_card(
            _Params,
            directory,
            kind=KIND,
            format_version=FORMAT_VERSION,
            label="prototype ranker",
            weights_file=WEIGHTS_FILE,
        )
        meta = card.get("metadata", {})
        if list(meta.get("features", [])) != list(FEATURES):
            raise ModelError(f"{directory}: ranker features differ from this gapforge's; refit it")
        model = load_skops(directory / WEIGHTS_FILE, TRUSTED_TYPES, label="prototype ranker")
        if not hasattr(model, "decision_function"):
            raise ModelError(f"{directory / WEIGHTS_FILE}: not a classifier")
        return cls(model, metadata=meta)


class _Params:
    """Parameter holder for :func:`rebuild_from_card` (the ranker's card has no constructor params)."""

    def __init__(self, **_: Any) -> None:
        pass


@functools.lru_cache(maxsize=1)
def default_ranker() -> PrototypeRanker:
    """The shipped ranker (read once per process)."""
    from gapforge.models.base import pretrained_dir

    return PrototypeRanker.load(pretrained_dir(RANKER_NAME))


__all__ = [
    "FEATURES",
    "Candidates",
    "KnownPattern",
    "PrototypeRanker",
    "PrototypeRanking",
    "RankerParams",
    "candidate_features",
    "default_ranker",
    "query_candidates",
    "substitution_scores",
    "training_queries",
]

"""Template search: the known structures nearest to a candidate formula by ElMD.

For each candidate the library rows with the same anonymised formula (same
stoichiometric pattern, e.g. ``AB2`` for both CaF2 and ZrO2) are ranked by ElMD
on the modified Pettifor scale; if there is none, the nearest formulas overall
are returned instead (flagged ``same_anonymized_formula=False``: their
structures cannot hold the candidate's composition by a one-to-one
substitution). The search is vectorised: candidates are grouped by anonymised
formula and each group is one ``cdist`` against the matching library rows.

Prototype ranking (with ``prototypes=`` counts): the same-pattern templates are
grouped by prototype (anonymised formula + space group); each prototype is
represented by its nearest template by ElMD and scored
``ElMD + prototype_weight * -ln(share)``, where ``share`` is the fraction of the
known entries with the candidate's anonymised formula that take that space
group (:class:`~gapforge.structure.prototypes.PrototypeCounts`). The top-k are
then k *different* prototypes, best score first (then, if fewer prototypes
exist, the next-nearest templates), so relaxing k templates tries k structure
types instead of k copies of one.

With ``ranking=PrototypeRanking.LEARNED`` (the default) the prototypes are
ordered instead by the fitted ranker of :mod:`gapforge.structure.ranker`
(ElMD, nearest known formulas, shares at several neighbourhoods, substitution
likelihood, ... weighed by gradient boosting); ``PrototypeRanking.RULE`` keeps
the ElMD + ``prototype_weight * -ln(share)`` rule above.

Structure types (``slots=SlotFilling.STRUCTURE_TYPE``, the default): one prototype
can hold several structure types (other Wyckoff sites in the same space group;
rock salt and another AB type in Fm-3m). The learned order's prototypes are split
into their types (:func:`~gapforge.structure.prototypes.structure_types`) and the k
slots go to k distinct types: slot 1 the first prototype's ElMD-nearest template,
the rest by P(prototype) x P(type | prototype). On 652 dev materials the first 5
templates then match the true structure before relaxation for 0.810 against 0.796
(``benchmarks/results/structure_types_dev.md``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Composition

from gapforge import columns as C
from gapforge.structure.elmd import as_composition, cumulative_matrix, elmd_matrix
from gapforge.structure.library import TemplateLibrary
from gapforge.structure.prototypes import PrototypeCounts, prototype_prior
from gapforge.structure.ranker import (
    FEATURES,
    KnownPattern,
    PrototypeRanker,
    PrototypeRanking,
    candidate_features,
    default_ranker,
)

#: Weight of the prototype prior against ElMD, chosen on a development set of known
#: materials disjoint from the benchmark's (benchmarks/bench_template_ranking.py).
PROTOTYPE_WEIGHT = 4.0
#: Known formulas (nearest by ElMD) whose space groups give the prototype shares.
PROTOTYPE_NEIGHBOURS: int | None = 5

log = logging.getLogger(__name__)


class SlotFilling(StrEnum):
    """What the k template slots hold (with the learned ranking).

    - ``prototype``: k distinct prototypes (anonymised formula + space group), each by its
      ElMD-nearest template;
    - ``structure_type``: k distinct structure types (:func:`~gapforge.structure.prototypes.structure_types`:
      Wyckoff label, merged by StructureMatcher), ordered by P(prototype) x P(type | prototype):
      the ranker's probabilities normalised over the query's prototypes, times the type's share
      of its prototype's templates (to the power ``type_share_power``); a prototype with two
      common structure types can take two slots. Slot 1 stays the first prototype's
      ElMD-nearest template.
    """

    PROTOTYPE = "prototype"
    STRUCTURE_TYPE = "structure_type"


@dataclass(frozen=True)
class SearchSettings:
    """How templates are chosen.

    Attributes:
        top_k: templates kept per candidate.
        fallback_nearest: when no template shares the anonymised formula, return
            the nearest overall (else return nothing).
        exclude_same_formula: never return a template with the candidate's own
            reduced formula (for validation by rebuilding known structures); the
            prototype counts then leave the formula's own entries out too.
        prototype_weight: weight of the prototype prior ``-ln(share)`` against
            ElMD (used when counts are given; see the module docstring).
        distinct_prototypes: the top-k are different prototypes where possible.
        neighbours: the prototype share is taken among this many known formulas
            nearest to the candidate by ElMD (with its anonymised formula); None:
            among all known formulas of that anonymised formula.
        ranking: the fitted ranker (``learned``) or the ElMD + share rule (``rule``);
            both need prototype counts, without them templates go by ElMD.
        slots: with the learned ranking, k distinct prototypes or k distinct structure
            types (:class:`SlotFilling`).
        type_share_power: with ``slots=structure_type``, the exponent of a type's share of
            its prototype's templates (0: the types of a prototype tie, ordered by ElMD).
    """

    top_k: int = 5
    fallback_nearest: bool = True
    exclude_same_formula: bool = False
    prototype_weight: float = PROTOTYPE_WEIGHT
    distinct_prototypes: bool = True
    neighbours: int | None = PROTOTYPE_NEIGHBOURS
    ranking: PrototypeRanking = PrototypeRanking.LEARNED
    slots: SlotFilling = SlotFilling.STRUCTURE_TYPE
    type_share_power: float = 1.0


@dataclass(frozen=True)
class TemplateMatch:
    """One template found for a candidate.

    Attributes:
        index: row of the template in the library table.
        material_id: template identifier.
        formula: template reduced formula.
        elmd: ElMD from the candidate (modified Pettifor scale).
        rank: 1 = nearest.
        same_anonymized_formula: whether the stoichiometric pattern matches.
    """

    index: int
    material_id: str
    formula: str
    elmd: float
    rank: int
    same_anonymized_formula: bool
    prototype_share: float = float("nan")

    def to_dict(self) -> dict[str, object]:
        """Plain dict of the fields."""
        return asdict(self)


def search_templates(
    formulas: Sequence[Composition | str],
    library: TemplateLibrary,
    settings: SearchSettings = SearchSettings(),
    *,
    prototypes: PrototypeCounts | None = None,
    ranker: PrototypeRanker | None = None,
) -> list[list[TemplateMatch]]:
    """Find the top-k templates for every formula.

    Args:
        formulas: candidate formulas (already validated; see :func:`as_composition`).
        library: the template library.
        settings: top-k and fallback rules.
        prototypes: prototype counts for the ranking prior (None: ElMD only).
        ranker: the fitted ranker for ``ranking=learned`` (default: the shipped one).

    Returns:
        One list of matches per formula, nearest first (possibly empty).
    """
    comps = [as_composition(f) for f in formulas]
    reduced = np.array([c.reduced_formula for c in comps], dtype=object)
    anon = np.array([c.anonymized_formula for c in comps], dtype=object)
    cum = cumulative_matrix(comps)
    lib_anon = library.anonymized
    lib_formula = library.table[C.REDUCED_FORMULA].to_numpy(dtype=object)
    lib_ids = library.table[C.MATERIAL_ID].to_numpy(dtype=object)
    # Ties are broken by lower energy above hull, then by id, so results are reproducible.
    ehull = np.nan_to_num(library.table[C.E_ABOVE_HULL].to_numpy(dtype=float), nan=1.0)
    results: list[list[TemplateMatch]] = [[] for _ in comps]
    need_fallback: list[int] = []
    learned = (
        settings.distinct_prototypes
        and prototypes is not None
        and settings.ranking == PrototypeRanking.LEARNED
    )
    if learned and ranker is None:
        ranker = default_ranker()

    for pattern in pd.unique(anon):
        cand_idx = np.flatnonzero(anon == pattern)
        lib_idx = np.flatnonzero(lib_anon == pattern)
        if len(lib_idx) == 0:
            need_fallback.extend(cand_idx.tolist())
            continue
        dist = elmd_matrix(cum[cand_idx], library.cumulative[lib_idx])
        if learned:
            known = KnownPattern(prototypes, str(pattern))
            known_dist = elmd_matrix(cum[cand_idx], known.cum) if len(known.names) else None
        for row, ci in enumerate(cand_idx):
            if learned:
                matches = _top_k_learned(
                    dist[row],
                    lib_idx,
                    ci,
                    reduced,
                    library,
                    settings,
                    str(pattern),
                    prototypes,
                    known,
                    known_dist[row] if known_dist is not None else np.zeros(0),
                    ranker,
                )
            elif settings.distinct_prototypes:
                matches = _top_k_prototypes(
                    dist[row], lib_idx, ci, reduced, library, ehull, settings, str(pattern), prototypes
                )
            else:
                matches = _top_k(
                    dist[row], lib_idx, ci, reduced, lib_formula, lib_ids, ehull, settings, same=True
                )
            if matches:
                results[ci] = matches
            else:
                need_fallback.append(int(ci))

    if need_fallback and settings.fallback_nearest and len(library):
        need = np.array(sorted(need_fallback))
        all_idx = np.arange(len(library))
        dist = elmd_matrix(cum[need], library.cumulative)
        for row, ci in enumerate(need):
            results[ci] = _top_k(
                dist[row], all_idx, ci, reduced, lib_formula, lib_ids, ehull, settings, same=False
            )
    log.debug(
        "template search: %d formulas, %d without a same-pattern template", len(comps), len(need_fallback)
    )
    return results


def _usable(
    dist: np.ndarray,
    lib_idx: np.ndarray,
    ci: int,
    reduced: np.ndarray,
    lib_formula: np.ndarray,
    settings: SearchSettings,
) -> tuple[np.ndarray, np.ndarray]:
    """Library rows (and their distances) a candidate may use: not its own formula when excluded."""
    keep = np.ones(len(lib_idx), dtype=bool)
    if settings.exclude_same_formula:
        keep &= lib_formula[lib_idx] != reduced[ci]
    return lib_idx[keep], dist[keep]


def _matches(
    positions: Sequence[int],
    idx: np.ndarray,
    d: np.ndarray,
    lib_formula: np.ndarray,
    lib_ids: np.ndarray,
    *,
    same: bool,
    shares: dict[int, float] | None = None,
) -> list[TemplateMatch]:
    """Matches for the chosen positions of ``idx``, ranked in the given order."""
    return [
        TemplateMatch(
            index=int(idx[pos]),
            material_id=str(lib_ids[idx[pos]]),
            formula=str(lib_formula[idx[pos]]),
            elmd=float(d[pos]),
            rank=rank,
            same_anonymized_formula=same,
            prototype_share=(shares or {}).get(int(pos), float("nan")),
        )
        for rank, pos in enumerate(positions, start=1)
    ]


def _top_k(
    dist: np.ndarray,
    lib_idx: np.ndarray,
    ci: int,
    reduced: np.ndarray,
    lib_formula: np.ndarray,
    lib_ids: np.ndarray,
    ehull: np.ndarray,
    settings: SearchSettings,
    *,
    same: bool,
) -> list[TemplateMatch]:
    idx, d = _usable(dist, lib_idx, ci, reduced, lib_formula, settings)
    if len(idx) == 0:
        return []
    k = min(settings.top_k, len(idx))
    # Candidates for the top k (plus ties at the k-th distance), then an exact ordering.
    kth = np.partition(d, k - 1)[k - 1]
    pool = np.flatnonzero(d <= kth + 1e-12)
    order = np.lexsort((lib_ids[idx[pool]].astype(str), ehull[idx[pool]], np.round(d[pool], 10)))[:k]
    return _matches(pool[order].tolist(), idx, d, lib_formula, lib_ids, same=same)


def _top_k_prototypes(
    dist: np.ndarray,
    lib_idx: np.ndarray,
    ci: int,
    reduced: np.ndarray,
    library: TemplateLibrary,
    ehull: np.ndarray,
    settings: SearchSettings,
    pattern: str,
    prototypes: PrototypeCounts | None,
) -> list[TemplateMatch]:
    """Top-k over distinct prototypes (see the module docstring); same-pattern templates only."""
    lib_formula = library.table[C.REDUCED_FORMULA].to_numpy(dtype=object)
    lib_ids = library.table[C.MATERIAL_ID].to_numpy(dtype=object).astype(str)
    sg = library.table[C.SPACEGROUP_NUMBER].to_numpy(dtype=float)
    idx, d = _usable(dist, lib_idx, ci, reduced, lib_formula, settings)
    if len(idx) == 0:
        return []
    leave_out = str(reduced[ci]) if settings.exclude_same_formula else None
    local = None
    if prototypes is not None and settings.neighbours:
        local = prototypes.local_shares(str(reduced[ci]), pattern, k=settings.neighbours, leave_out=leave_out)
    # nearest first (ties: lower e_above_hull, then id), so each prototype's first row is its representative
    order = np.lexsort((lib_ids[idx], ehull[idx], np.round(d, 10)))
    reps: dict[object, tuple[int, float, float]] = {}  # prototype -> (position in order, score, share)
    for pos in order:
        g = sg[idx[pos]]
        key = ("sg", int(g)) if np.isfinite(g) else ("id", int(idx[pos]))
        if key in reps:
            continue
        share = float("nan")
        prior = 0.0
        if prototypes is not None and np.isfinite(g):
            if local is not None:
                share = local.get(int(g), 0.0)
            else:
                share = prototypes.share(pattern, int(g), leave_out=leave_out)
            prior = prototype_prior(share)
        reps[key] = (int(pos), float(d[pos]) + settings.prototype_weight * prior, share)
    ranked = sorted(reps.values(), key=lambda r: (r[1], d[r[0]], lib_ids[idx[r[0]]]))
    chosen = [r[0] for r in ranked[: settings.top_k]]
    shares = {r[0]: r[2] for r in ranked}
    if len(chosen) < settings.top_k:  # fewer prototypes than k: the next-nearest templates
        taken = set(chosen)
        chosen += [int(p) for p in order if int(p) not in taken][: settings.top_k - len(chosen)]
    return _matches(chosen, idx, d, lib_formula, lib_ids, same=True, shares=shares)


def _top_k_learned(
    dist: np.ndarray,
    lib_idx: np.ndarray,
    ci: int,
    reduced: np.ndarray,
    library: TemplateLibrary,
    settings: SearchSettings,
    pattern: str,
    prototypes: PrototypeCounts,
    known: KnownPattern,
    known_dist: np.ndarray,
    ranker: PrototypeRanker,
) -> list[TemplateMatch]:
    """Top-k distinct prototypes ordered by the fitted ranker; same-pattern templates only."""
    lib_formula = library.table[C.REDUCED_FORMULA].to_numpy(dtype=object)
    lib_ids = library.table[C.MATERIAL_ID].to_numpy(dtype=object).astype(str)
    idx, d = _usable(dist, lib_idx, ci, reduced, lib_formula, settings)
    if len(idx) == 0:
        return []
    leave_out = str(reduced[ci]) if settings.exclude_same_formula else None
    cands = candidate_features(
        str(reduced[ci]), pattern, d, idx, library, prototypes, known, known_dist, leave_out=leave_out
    )
    score = ranker.score(cands.features)
    # best score first; ties by ElMD, then id
    ranked = np.lexsort((lib_ids[idx[cands.positions]], d[cands.positions], -score))
    if settings.slots == SlotFilling.STRUCTURE_TYPE:
        chosen = _structure_type_slots(cands, score, ranked, idx, d, library, settings)
    else:
        chosen = [int(cands.positions[i]) for i in ranked[: settings.top_k]]
    local_share = cands.features[:, _SHARE_COLUMN]
    shares = {int(p): float(local_share[i]) for i, p in enumerate(cands.positions)}
    if len(chosen) < settings.top_k:  # fewer prototypes than k: the next-nearest templates
        ehull = np.nan_to_num(library.table[C.E_ABOVE_HULL].to_numpy(dtype=float), nan=1.0)
        order = np.lexsort((lib_ids[idx], ehull[idx], np.round(d, 10)))
        taken = set(chosen)
        chosen += [int(p) for p in order if int(p) not in taken][: settings.top_k - len(chosen)]
    return _matches(chosen, idx, d, lib_formula, lib_ids, same=True, shares=shares)


def _structure_type_slots(
    cands: Any,
    score: np.ndarray,
    ranked: np.ndarray,
    idx: np.ndarray,
    d: np.ndarray,
    library: TemplateLibrary,
    settings: SearchSettings,
) -> list[int]:
    """Positions (into ``idx``) of the top-k structure types (see :class:`SlotFilling`).

    The first slot is the first prototype's ElMD-nearest template, as with prototype slots (on
    dev its type beats the prototype's most common type as a first guess); the others follow
    P(prototype) x P(type | prototype)^power.

    Only the 2k best prototypes are split into types: a type of a lower one would need a
    probability above every type share of the first 2k.
    """
    from gapforge.structure.prototypes import structure_types

    lib_ids = library.table[C.MATERIAL_ID].to_numpy(dtype=object).astype(str)
    sg = library.table[C.SPACEGROUP_NUMBER].to_numpy(dtype=float)[idx]
    prob = 1.0 / (1.0 + np.exp(-score))
    prob = prob / prob.sum()
    ehull = np.nan_to_num(library.table[C.E_ABOVE_HULL].to_numpy(dtype=float)[idx], nan=1.0)
    order = np.lexsort((lib_ids[idx], ehull, np.round(d, 10)))  # nearest first
    entries: list[tuple[float, int, float, str, int]] = []  # (-weight, prototype rank, ElMD, id, position)
    for proto_rank, i in enumerate(ranked[: 2 * settings.top_k]):
        g = cands.spacegroups[i]
        if not np.isfinite(g):
            pos = int(cands.positions[i])
            entries.append((-prob[i], proto_rank, float(d[pos]), lib_ids[idx[pos]], pos))
            continue
        members = [int(p) for p in order if sg[p] == g]
        types = structure_types(library, [int(idx[p]) for p in members])
        n_of = Counter(types)
        first: dict[str, int] = {}
        for p, t in zip(members, types, strict=True):
            first.setdefault(t, p)
        for t, pos in first.items():
            w = prob[i] * (n_of[t] / len(members)) ** settings.type_share_power
            entries.append((-w, proto_rank, float(d[pos]), lib_ids[idx[pos]], pos))
    entries.sort()
    # slot 1 stays the first prototype's ElMD-nearest template (the prototype slots' first pick)
    head = int(cands.positions[ranked[0]])
    rest = [e[-1] for e in entries if e[-1] != head]
    return [head, *rest][: settings.top_k]


_SHARE_COLUMN = FEATURES.index("local_share_5")

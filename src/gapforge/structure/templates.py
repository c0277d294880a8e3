"""Template search: the known structures nearest to a candidate formula by ElMD.

For each candidate the library rows with the same anonymised formula (same
stoichiometric pattern, e.g. ``AB2`` for both CaF2 and ZrO2) are ranked by ElMD
on the modified Pettifor scale; if there is none, the nearest formulas overall
are returned instead (flagged ``same_anonymized_formula=False``: their
structures cannot hold the candidate's composition by a one-to-one
substitution). The search is vectorised: candidates are grouped by anonymised
formula and each group is one ``cdist`` against the matching library rows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from pymatgen.core import Composition

from gapforge import columns as C
from gapforge.structure.elmd import as_composition, cumulative_matrix, elmd_matrix
from gapforge.structure.library import TemplateLibrary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchSettings:
    """How templates are chosen.

    Attributes:
        top_k: templates kept per candidate.
        fallback_nearest: when no template shares the anonymised formula, return
            the nearest overall (else return nothing).
        exclude_same_formula: never return a template with the candidate's own
            reduced formula (for validation by rebuilding known structures).
    """

    top_k: int = 3
    fallback_nearest: bool = True
    exclude_same_formula: bool = False


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

    def to_dict(self) -> dict[str, object]:
        """Plain dict of the fields."""
        return asdict(self)


def search_templates(
    formulas: Sequence[Composition | str],
    library: TemplateLibrary,
    settings: SearchSettings = SearchSettings(),
) -> list[list[TemplateMatch]]:
    """Find the top-k templates for every formula.

    Args:
        formulas: candidate formulas (already validated; see :func:`as_composition`).
        library: the template library.
        settings: top-k and fallback rules.

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

    for pattern in pd.unique(anon):
        cand_idx = np.flatnonzero(anon == pattern)
        lib_idx = np.flatnonzero(lib_anon == pattern)
        if len(lib_idx) == 0:
            need_fallback.extend(cand_idx.tolist())
            continue
        dist = elmd_matrix(cum[cand_idx], library.cumulative[lib_idx])
        for row, ci in enumerate(cand_idx):
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
    keep = np.ones(len(lib_idx), dtype=bool)
    if settings.exclude_same_formula:
        keep &= lib_formula[lib_idx] != reduced[ci]
    idx = lib_idx[keep]
    d = dist[keep]
    if len(idx) == 0:
        return []
    k = min(settings.top_k, len(idx))
    # Candidates for the top k (plus ties at the k-th distance), then an exact ordering.
    kth = np.partition(d, k - 1)[k - 1]
    pool = np.flatnonzero(d <= kth + 1e-12)
    order = np.lexsort((lib_ids[idx[pool]].astype(str), ehull[idx[pool]], np.round(d[pool], 10)))[:k]
    matches = []
    for rank, j in enumerate(pool[order], start=1):
        li = int(idx[j])
        matches.append(
            TemplateMatch(
                index=li,
                material_id=str(lib_ids[li]),
                formula=str(lib_formula[li]),
                elmd=float(d[j]),
                rank=rank,
                same_anonymized_formula=same,
            )
        )
    return matches

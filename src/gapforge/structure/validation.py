"""Validation of the structure stage: rebuild known structures from their formula alone.

For each sampled known material (with a Materials Project formation energy) the
stage is run as for a candidate, with the material's own formula removed from
the template library (leave-one-formula-out): template search, substitution,
CHGNet relaxation of the top-k, one kept by the stage's rule
(:func:`~gapforge.structure.selection.pick_template`). Measured:

- match rate: pymatgen ``StructureMatcher`` (default tolerances) between the
  rebuilt and the true structure, over all sampled materials (a material with
  no template counts as not matched): top-1 (the first-ranked template, relaxed),
  kept of k (the template the selection rule keeps, what the stage keeps), any of
  the k, and the rank-1 template before relaxation;
- the ceiling: the share of materials whose prototype (anonymised formula +
  space group) is among the usable templates at all (own formula left out);
- formation-energy MAE of the rebuilt structure against the Materials Project;
- energy above hull of the rebuilt structure against the ``mp-e-form`` hull
  (on the MP2020 scale, own formula left out of it) against MP's own
  ``e_above_hull``: MAE, and precision / recall / F1 of "within 0.1 eV/atom";
- the same MAE for CHGNet on the true MP structure (no relaxation): the
  potential's own error, separating it from the structure-prediction error;
- relaxation wall time per structure by number of sites.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from gapforge import columns as C
from gapforge.errors import GapforgeError
from gapforge.executor import TaskFailure
from gapforge.structure.hull import HullReference
from gapforge.structure.library import TemplateLibrary
from gapforge.structure.ranker import PrototypeRanking
from gapforge.structure.relax import RelaxResult, RelaxSettings, run_relaxations
from gapforge.structure.rescore import RescoreResult, SelectionEnergy, run_rescoring
from gapforge.structure.selection import SELECTION_MARGIN, SelectionSettings, pick_template
from gapforge.structure.stability import (
    STABLE_WITHIN,
    ElementalReferences,
    formation_energy_per_atom,
    mp2020_correction_per_atom,
)
from gapforge.structure.substitution import SubstitutionSettings, substitute, volume_increments_for
from gapforge.structure.templates import SearchSettings, SlotFilling, search_templates

log = logging.getLogger(__name__)


class SampleSet(StrEnum):
    """Which known materials a validation rebuilds (all at most ``max_sites`` sites, one per formula).

    - ``test``: the benchmark's materials, ``n_materials`` of the seed's random order among those
      with an MP formation energy;
    - ``dev``: ``n_materials`` others of the same filters, disjoint from the ``n_test`` test
      materials (another seed's order): rules are chosen here, then reported on ``test``;
    - ``unstable``: formulas more than ``STABLE_WITHIN`` eV/atom above the hull in MP (every library
      entry of the formula, and the formula's lowest ``mp-e-form`` entry against the hull with the
      formula left out, if it is there): the negatives that give "within 0.1 eV/atom" a base rate.
    """

    TEST = "test"
    DEV = "dev"
    UNSTABLE = "unstable"


@dataclass(frozen=True)
class ValidationSettings:
    """What to rebuild and how.

    Attributes:
        n_materials: known materials sampled (those with a formation energy).
        max_sites: only materials (and templates) with at most this many sites.
        seed: sampling seed.
        top_k: templates relaxed per material.
        max_template_e_above_hull: templates further above the hull (eV/atom) are not used.
        relax: relaxation protocol.
        substitution: substitution settings.
        static_truth: also evaluate CHGNet on the true structure (control).
        prototype_ranking: rank templates with the prototype counts (own formula left out).
        ranking: with prototype ranking, the fitted ranker or the ElMD + share rule.
        aflow_prototypes: add pymatgen's AFLOW prototypes to the templates.
        sample: which materials (see :class:`SampleSet`).
        n_test: size of the test sample that ``dev`` is kept disjoint from.
        selection_margin: kept template: the first-ranked unless another relaxed lower by
            more than this (eV/atom; :func:`~gapforge.structure.selection.pick_template`).
        slots: what the k template slots hold (distinct prototypes or structure types).
        type_share_power: exponent of a structure type's share within its prototype.
        selection_energy: whose energy chooses among the CHGNet-relaxed templates (another
            potential re-scores them and, as a control, the true structure).
        rescore_steps: that potential's own steps from each CHGNet-relaxed structure (0 = one
            evaluation; :class:`~gapforge.structure.selection.SelectionSettings`).
    """

    n_materials: int = 200
    max_sites: int = 12
    seed: int = 0
    top_k: int = 5
    max_template_e_above_hull: float | None = 0.1
    relax: RelaxSettings = field(default_factory=lambda: RelaxSettings(max_steps=300))
    substitution: SubstitutionSettings = field(default_factory=SubstitutionSettings)
    static_truth: bool = True
    prototype_ranking: bool = True
    ranking: PrototypeRanking = PrototypeRanking.LEARNED
    aflow_prototypes: bool = True
    sample: SampleSet = SampleSet.TEST
    n_test: int = 200
    selection_margin: float = SELECTION_MARGIN
    slots: SlotFilling = SlotFilling.STRUCTURE_TYPE
    type_share_power: float = 1.0
    selection_energy: SelectionEnergy = SelectionEnergy.CHGNET
    rescore_steps: int = 0

    @property
    def selection(self) -> SelectionSettings:
        """The stage's selection rule these settings stand for."""
        return SelectionSettings(self.selection_energy, self.selection_margin, self.rescore_steps)


@dataclass(frozen=True)
class ValidationResult:
    """Per-material table and summary figures.

    Attributes:
        table: one row per sampled material.
        summary: figures (rates as fractions, energies in eV/atom, times in s).
    """

    table: pd.DataFrame
    summary: dict[str, Any]


def sample_known(
    library: TemplateLibrary, settings: ValidationSettings, hull: HullReference | None = None
) -> pd.DataFrame:
    """Known materials to rebuild (see :class:`SampleSet`); ``hull`` is needed for ``unstable``."""
    t = library.table
    small = t[C.NSITES] <= settings.max_sites
    if settings.sample == SampleSet.UNSTABLE:
        return _sample_unstable(t[small], settings, hull)
    ok = t[C.FORMATION_ENERGY_PER_ATOM].notna() & small
    pool = t[ok].assign(_e=t[C.E_ABOVE_HULL].fillna(np.inf))
    pool = pool.sort_values(["_e", C.MATERIAL_ID]).drop_duplicates(C.REDUCED_FORMULA).drop(columns="_e")
    seed = settings.seed
    if settings.sample == SampleSet.DEV:
        test = _random_rows(pool, settings.n_test, seed)
        pool = pool[~pool[C.REDUCED_FORMULA].isin(set(test[C.REDUCED_FORMULA]))]
        seed += 1
    return _random_rows(pool, settings.n_materials, seed)


def _random_rows(pool: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    take = rng.choice(len(pool), size=min(n, len(pool)), replace=False)  # random order
    return pool.iloc[take]


def _sample_unstable(
    table: pd.DataFrame, settings: ValidationSettings, hull: HullReference | None
) -> pd.DataFrame:
    if hull is None:
        raise ValueError("the unstable sample needs the hull reference")
    ehull = table[C.E_ABOVE_HULL].astype(float)
    lowest = ehull.groupby(table[C.REDUCED_FORMULA]).transform("min")
    pool = table[lowest > STABLE_WITHIN].assign(_e=ehull)
    pool = pool.sort_values(["_e", C.MATERIAL_ID]).drop_duplicates(C.REDUCED_FORMULA).drop(columns="_e")
    keep = []
    for formula in pool[C.REDUCED_FORMULA]:
        e_form = hull.formation_energy(formula)  # NaN when MP has no entry of the formula
        if np.isfinite(e_form):  # MP holds a polymorph of this formula: it must be unstable too
            keep.append(hull.e_above_hull(formula, e_form, leave_out=[formula]).e_above_hull > STABLE_WITHIN)
        else:
            keep.append(True)
    log.info(
        "unstable sample: %d formulas above %.2f eV/atom in the library, %d with a polymorph within it in "
        "the hull reference left out",
        len(pool),
        STABLE_WITHIN,
        len(keep) - sum(keep),
    )
    return _random_rows(pool[np.array(keep, dtype=bool)], settings.n_materials, settings.seed)


def validate_rebuild(
    library: TemplateLibrary,
    references: ElementalReferences,
    settings: ValidationSettings = ValidationSettings(),
    *,
    workers: int | None = None,
    chunk_size: int | None = None,
    checkpoint: Callable[[ValidationResult], None] | None = None,
    done: list[dict[str, Any]] | None = None,
    hull: HullReference | None = None,
    cache_dir: str | Path | None = None,
) -> ValidationResult:
    """Rebuild known structures from their formulas and score the stage.

    Args:
        library: library to sample from and to take templates from.
        references: elemental references for formation energies.
        settings: what to rebuild and how.
        workers: processes for CHGNet (default: all cores).
        chunk_size: materials per batch (default: all at once); after each batch
            ``checkpoint`` gets the result so far, so a long run can be stopped early.
        checkpoint: called with the partial result after each batch.
        done: records of an earlier, interrupted run (materials already done are skipped).
        hull: reference for the energy above hull (default: ``mp-e-form`` on the MP2020 scale);
            each material's own formula is left out of it.
        cache_dir: CHGNet results stored by content (structure + settings) as they arrive;
            a rerun (or another sample holding the same structure) computes only what is missing.
    """
    start = time.perf_counter()
    if hull is None:
        hull = HullReference.from_dataset()
    targets = sample_known(library, settings, hull)
    records: list[dict[str, Any]] = list(done or [])
    seen = {r[C.MATERIAL_ID] for r in records}
    targets = targets[~targets[C.MATERIAL_ID].isin(seen)]
    chunk_size = chunk_size or max(1, len(targets))
    templates = _template_subset(library, settings)
    prototypes = None
    if settings.prototype_ranking:
        from gapforge.structure.prototypes import PrototypeCounts

        prototypes = PrototypeCounts.load()
    result = _result(records, settings, library, templates, start)
    for lo in range(0, len(targets), chunk_size):
        records.extend(
            _validate_chunk(
                library,
                templates,
                targets.iloc[lo : lo + chunk_size],
                references,
                settings,
                workers,
                prototypes=prototypes,
                hull=hull,
                cache_dir=cache_dir,
            )
        )
        result = _result(records, settings, library, templates, start)
        log.info("validation: %d of %d materials done", len(records), len(targets))
        if checkpoint is not None:
            checkpoint(result)
    return result


def _template_subset(library: TemplateLibrary, settings: ValidationSettings) -> TemplateLibrary:
    if settings.aflow_prototypes:
        from gapforge.structure.pipeline import with_aflow_prototypes

        library = with_aflow_prototypes(library)
    tmask = np.ones(len(library), dtype=bool)
    if settings.max_template_e_above_hull is not None:
        tmask &= ~(library.table[C.E_ABOVE_HULL].to_numpy(dtype=float) > settings.max_template_e_above_hull)
    tmask &= library.table[C.NSITES].to_numpy(dtype=float) <= settings.max_sites
    return library.subset(tmask)


def prototype_in_templates(
    formula: str, anonymized: str, spacegroup: float, templates: TemplateLibrary
) -> bool:
    """Whether a template of another formula has this prototype (anonymised formula + space group)."""
    if not np.isfinite(spacegroup):
        return False
    t = templates.table
    same = (
        (t[C.ANONYMIZED_FORMULA].to_numpy() == anonymized)
        & (t[C.SPACEGROUP_NUMBER].to_numpy(dtype=float) == float(spacegroup))
        & (t[C.REDUCED_FORMULA].to_numpy() != formula)
    )
    return bool(same.any())


def _validate_chunk(
    library: TemplateLibrary,
    templates: TemplateLibrary,
    targets: pd.DataFrame,
    references: ElementalReferences,
    settings: ValidationSettings,
    workers: int | None,
    *,
    prototypes: Any = None,
    hull: HullReference | None = None,
    cache_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    search = SearchSettings(
        top_k=settings.top_k,
        fallback_nearest=False,
        exclude_same_formula=True,
        ranking=settings.ranking,
        slots=settings.slots,
        type_share_power=settings.type_share_power,
    )
    formulas = targets[C.REDUCED_FORMULA].tolist()
    found = search_templates(formulas, templates, search, prototypes=prototypes)

    records: list[dict[str, Any]] = []
    tasks: list[Structure] = []
    modes: list[str] = []
    owner: list[tuple[int, str, int]] = []  # (material index, kind, template rank)
    for i, ((_, row), matches) in enumerate(zip(targets.iterrows(), found, strict=True)):
        true = library.structure(int(np.flatnonzero(library.table[C.MATERIAL_ID] == row[C.MATERIAL_ID])[0]))
        rec: dict[str, Any] = {
            C.MATERIAL_ID: row[C.MATERIAL_ID],
            "formula": row[C.REDUCED_FORMULA],
            C.NSITES: len(true),
            C.SPACEGROUP_NUMBER: row[C.SPACEGROUP_NUMBER],
            "sample": str(settings.sample),
            "e_form_mp": row[C.FORMATION_ENERGY_PER_ATOM],
            "e_above_hull_mp": row[C.E_ABOVE_HULL],
            "prototype_in_library": prototype_in_templates(
                row[C.REDUCED_FORMULA], row[C.ANONYMIZED_FORMULA], float(row[C.SPACEGROUP_NUMBER]), templates
            ),
            "template_ids": [m.material_id for m in matches],
            "template_spacegroups": [
                float(templates.table[C.SPACEGROUP_NUMBER].iloc[m.index]) for m in matches
            ],
            "prototype_shares": [float(m.prototype_share) for m in matches],
            "template_wyckoff_labels": [templates.wyckoff_label(m.index) for m in matches],
            "_true": true,
            "_subs": {},
            "_relaxed": {},
            "reason": None,
        }
        if settings.static_truth:
            tasks.append(true)
            modes.append("static")
            owner.append((i, "static", 0))
        if not matches:
            rec["reason"] = "no template with the same anonymised formula"
        for m in matches:
            try:
                sub = substitute(
                    row[C.REDUCED_FORMULA],
                    templates.structure(m.index),
                    settings.substitution,
                    increments=volume_increments_for(templates, settings.substitution),
                )
            except GapforgeError as exc:
                rec["reason"] = str(exc)
                continue
            rec["_subs"][m.rank] = (m, sub)
            tasks.append(sub.structure)
            modes.append("relax")
            owner.append((i, "relax", m.rank))
        records.append(rec)

    log.info("validation: %d materials, %d CHGNet tasks", len(records), len(tasks))
    results = run_relaxations(
        tasks, settings.relax, workers=workers, modes=modes, cache_dir=cache_dir, desc="validate"
    )
    for (i, kind, rank), res in zip(owner, results, strict=True):
        rec = records[i]
        if kind == "static":
            rec["energy_per_atom_true"] = res if not isinstance(res, TaskFailure) else np.nan
        else:
            rec["_relaxed"][rank] = res
    rescore = settings.selection.rescore(settings.relax.device, settings.relax.num_threads)
    if rescore is not None:
        _rescore_chunk(records, rescore, workers, cache_dir)

    matcher = StructureMatcher()
    for rec in records:
        _score(rec, matcher, references, hull, settings.selection_margin)
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in records]


def _rescore_chunk(
    records: list[dict[str, Any]], rescore: Any, workers: int | None, cache_dir: str | Path | None
) -> None:
    """Re-score every CHGNet-relaxed template (and the true structure) with the selection potential."""
    structures, owner = [], []
    for i, rec in enumerate(records):
        structures.append(rec["_true"])
        owner.append((i, 0))
        for rank, res in rec["_relaxed"].items():
            if isinstance(res, RelaxResult):
                structures.append(res.final_structure)
                owner.append((i, rank))
    log.info("validation: %d structures re-scored with %s", len(structures), rescore.model)
    results = run_rescoring(structures, rescore, workers=workers, cache_dir=cache_dir, desc="rescore")
    for (i, rank), res in zip(owner, results, strict=True):
        rec = records[i]
        rec.setdefault("selection_energies_by_rank", {})
        rec.setdefault("rescore_times_s", [])
        if not isinstance(res, RescoreResult):
            continue
        if rank == 0:
            rec["selection_energy_true"] = res.energy_per_atom
        else:
            rec["selection_energies_by_rank"][int(rank)] = res.energy_per_atom
            rec["rescore_times_s"].append(res.wall_time_s)


def _result(
    records: list[dict[str, Any]],
    settings: ValidationSettings,
    library: TemplateLibrary,
    templates: TemplateLibrary,
    start: float,
) -> ValidationResult:
    table = pd.DataFrame(records)
    summary = summarise(table)
    summary["n_materials_planned"] = settings.n_materials
    summary["settings"] = asdict(settings)
    summary["wall_time_total_s"] = time.perf_counter() - start
    summary["n_library"] = len(library)
    summary["n_templates_used_library"] = len(templates)
    return ValidationResult(table=table, summary=summary)


def _score(
    rec: dict[str, Any],
    matcher: StructureMatcher,
    refs: ElementalReferences,
    hull: HullReference | None,
    margin: float = SELECTION_MARGIN,
) -> None:
    formula = rec["formula"]
    e_true = rec.get("energy_per_atom_true", np.nan)
    rec["e_form_chgnet_true_structure"] = (
        formation_energy_per_atom(formula, e_true, refs) if np.isfinite(e_true) else np.nan
    )
    rec["mp2020_correction_per_atom"] = mp2020_correction_per_atom(formula)
    if hull is not None and np.isfinite(rec["e_form_chgnet_true_structure"]):
        res = hull.e_above_hull(formula, rec["e_form_chgnet_true_structure"], leave_out=[formula])
        rec["e_above_hull_chgnet_true_structure"] = res.e_above_hull
    rec["match_unrelaxed"] = False
    rec["match_top1"] = False
    rec["match_any_topk"] = False
    rec["match"] = False
    subs = rec["_subs"]
    if 1 in subs:
        rec["match_unrelaxed"] = bool(_fit(matcher, subs[1][1].structure, rec["_true"]))
    ok = {rank: r for rank, r in rec["_relaxed"].items() if isinstance(r, RelaxResult)}
    failures = [r.reason for r in rec["_relaxed"].values() if isinstance(r, TaskFailure)]
    if not ok:
        if failures:
            rec["reason"] = failures[0]
        return
    rescored = rec.get("selection_energies_by_rank")
    choose = {k: r.energy_per_atom for k, r in ok.items()}
    if rescored is not None:  # another potential chooses; a template it could not score drops out
        choose = {k: rescored[k] for k in ok if k in rescored} or choose
    best_rank = pick_template(choose, margin, converged={k: r.converged for k, r in ok.items()})
    best = ok[best_rank]
    m, sub = subs[best_rank]
    rec.update(
        {
            C.TEMPLATE_ID: m.material_id,
            C.TEMPLATE_FORMULA: m.formula,
            C.ELMD: m.elmd,
            C.TEMPLATE_RANK: best_rank,
            C.SUBSTITUTION: sub.mapping_str,
            C.ENERGY_PER_ATOM: best.energy_per_atom,
            C.RELAX_STEPS: best.steps,
            C.CONVERGED: best.converged,
            C.WALL_TIME_S: best.wall_time_s,
            "nsites_relaxed": len(best.final_structure),
            "e_form_rebuilt": formation_energy_per_atom(formula, best.energy_per_atom, refs),
            "match": bool(_fit(matcher, best.final_structure, rec["_true"])),
            "relax_times_s": [r.wall_time_s for r in ok.values()],
            "relax_nsites": [len(r.final_structure) for r in ok.values()],
            "energies_by_rank": {int(k): float(r.energy_per_atom) for k, r in ok.items()},
            "converged_by_rank": {int(k): bool(r.converged) for k, r in ok.items()},
            "steps_by_rank": {int(k): int(r.steps) for k, r in ok.items()},
            "relaxed_spacegroup_by_rank": {int(k): _spacegroup(r.final_structure) for k, r in ok.items()},
            # which relaxed templates ended as the same structure (the lowest rank of its group)
            "same_as_rank": _duplicate_groups(matcher, {k: r.final_structure for k, r in ok.items()}),
        }
    )
    matches = {rank: _fit(matcher, r.final_structure, rec["_true"]) for rank, r in ok.items()}
    rec["matches_by_rank"] = {int(k): bool(v) for k, v in matches.items()}
    rec["match_top1"] = bool(matches.get(1, False))
    rec["match_any_topk"] = any(matches.values())
    if hull is not None:
        res = hull.e_above_hull(formula, rec["e_form_rebuilt"], leave_out=[formula])
        rec["e_above_hull_rebuilt"] = res.e_above_hull
        rec["hull_known_phases"] = res.n_known_phases
        rec["e_above_hull_by_rank"] = {
            int(k): float(
                hull.e_above_hull(
                    formula, formation_energy_per_atom(formula, r.energy_per_atom, refs), leave_out=[formula]
                ).e_above_hull
            )
            for k, r in ok.items()
        }
    if not best.converged and rec["reason"] is None:
        rec["reason"] = f"not converged (max force {best.max_force:.3f} eV/Å)"


def _spacegroup(structure: Structure, symprec: float = 0.1) -> int | None:
    try:
        return int(SpacegroupAnalyzer(structure, symprec=symprec).get_space_group_number())
    except Exception:  # spglib failures: no space group recorded
        return None


def _duplicate_groups(matcher: StructureMatcher, structures: dict[int, Structure]) -> dict[int, int]:
    """Per rank, the lowest rank whose relaxed structure matches it (itself when none)."""
    out: dict[int, int] = {}
    for k in sorted(structures):
        out[int(k)] = next(
            (j for j in sorted(out) if out[j] == j and _fit(matcher, structures[j], structures[k])), int(k)
        )
    return out


def _fit(matcher: StructureMatcher, a: Structure, b: Structure) -> bool:
    try:
        return bool(matcher.fit(a, b))
    except Exception:  # matcher failures count as no match
        return False


def summarise(table: pd.DataFrame) -> dict[str, Any]:
    """Summary figures of a validation table."""
    n = len(table)
    out: dict[str, Any] = {"n_materials": n}
    if n == 0:
        return out
    if "e_form_rebuilt" in table:
        rebuilt = table["e_form_rebuilt"].notna()
    else:
        rebuilt = pd.Series(False, index=table.index)
    out["n_rebuilt"] = int(rebuilt.sum())
    out["n_no_template"] = int(table["reason"].fillna("").str.startswith("no template").sum())
    out["match_rate"] = float(table["match"].mean())  # the kept template of the k (selection rule)
    if "match_top1" in table:
        out["match_rate_top1"] = float(table["match_top1"].fillna(False).astype(bool).mean())
    if "prototype_in_library" in table:
        out["ceiling_prototype_in_library"] = float(table["prototype_in_library"].astype(bool).mean())
    out["match_rate_among_rebuilt"] = float(table.loc[rebuilt, "match"].mean()) if rebuilt.any() else None
    out["match_rate_unrelaxed"] = float(table["match_unrelaxed"].mean())
    out["match_rate_any_topk"] = float(table["match_any_topk"].mean())
    if rebuilt.any():
        err = (table.loc[rebuilt, "e_form_rebuilt"] - table.loc[rebuilt, "e_form_mp"]).abs()
        out["e_form_mae_rebuilt_vs_mp"] = float(err.mean())
        out["e_form_median_ae_rebuilt_vs_mp"] = float(err.median())
        matched = rebuilt & table["match"].astype(bool)
        if matched.any():
            out["e_form_mae_rebuilt_vs_mp_matched_only"] = float(
                (table.loc[matched, "e_form_rebuilt"] - table.loc[matched, "e_form_mp"]).abs().mean()
            )
        out["share_negative_e_form_rebuilt"] = float((table.loc[rebuilt, "e_form_rebuilt"] < 0).mean())
        out["share_converged"] = float(table.loc[rebuilt, C.CONVERGED].astype(bool).mean())
    truth = table["e_form_chgnet_true_structure"].notna() if "e_form_chgnet_true_structure" in table else None
    if truth is not None and truth.any():
        e_true = table.loc[truth, "e_form_chgnet_true_structure"]
        out["e_form_mae_chgnet_on_mp_structure"] = float(
            (e_true - table.loc[truth, "e_form_mp"]).abs().mean()
        )
        # The same with MP2020 corrections added on top (tests the energy-scale choice).
        corr = table.loc[truth, "mp2020_correction_per_atom"].fillna(0.0)
        out["e_form_mae_chgnet_on_mp_structure_plus_mp2020"] = float(
            (e_true + corr - table.loc[truth, "e_form_mp"]).abs().mean()
        )
        out["share_negative_e_form_mp"] = float((table["e_form_mp"] < 0).mean())
    out["match_rate_by_selection_margin"] = selection_margin_rates(table)
    out.update(_hull_figures(table, "e_above_hull_rebuilt", "rebuilt"))
    out.update(_hull_figures(table, "e_above_hull_chgnet_true_structure", "chgnet_on_mp_structure"))
    out["relax_seconds_by_nsites"] = relax_time_by_sites(table)
    return out


def selection_margin_rates(
    table: pd.DataFrame, margins: tuple[float, ...] = (0.0, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, float("inf"))
) -> dict[str, float]:
    """Match rate if the kept template were the first-ranked one unless another relaxed lower by > margin.

    Margin 0 is best-of-k (lowest energy), infinity is top-1. Computed from the
    recorded energies and matches of every relaxed template (an analysis of the
    selection rule on the same materials, not a tuned result).
    """
    if "energies_by_rank" not in table or "matches_by_rank" not in table:
        return {}
    out = {}
    for margin in margins:
        hits = []
        for energies, matches in zip(table["energies_by_rank"], table["matches_by_rank"], strict=True):
            if not isinstance(energies, dict) or not energies:
                hits.append(False)
                continue
            e = {int(k): float(v) for k, v in energies.items()}
            m = {int(k): bool(v) for k, v in matches.items()}
            hits.append(m.get(pick_template(e, margin), False))
        out[str(margin)] = float(np.mean(hits))
    return out


def _hull_figures(
    table: pd.DataFrame, col: str, label: str, threshold: float = STABLE_WITHIN
) -> dict[str, Any]:
    """MAE against MP's e_above_hull (ours clipped at 0) and P/R/F1 of "within ``threshold`` eV/atom"."""
    if col not in table or "e_above_hull_mp" not in table:
        return {}
    ok = table[col].notna() & table["e_above_hull_mp"].notna()
    if not ok.any():
        return {}
    pred = table.loc[ok, col].astype(float).clip(lower=0.0)
    true = table.loc[ok, "e_above_hull_mp"].astype(float)
    pp, tp_ = pred <= threshold, true <= threshold
    tp = int((pp & tp_).sum())
    precision = tp / max(int(pp.sum()), 1)
    recall = tp / max(int(tp_.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        f"e_above_hull_n_{label}": int(ok.sum()),
        f"e_above_hull_mae_{label}": float((pred - true).abs().mean()),
        f"e_above_hull_median_ae_{label}": float((pred - true).abs().median()),
        f"within_{threshold}_precision_{label}": precision,
        f"within_{threshold}_recall_{label}": recall,
        f"within_{threshold}_f1_{label}": f1,
        f"share_below_hull_by_0.05_{label}": float((table.loc[ok, col].astype(float) < -0.05).mean()),
        # the base rate p: "always within" scores F1 2p / (1 + p) (1 when every material is within)
        f"share_mp_within_{threshold}_{label}": float(tp_.mean()),
        f"within_{threshold}_f1_always_within_{label}": float(2 * tp_.mean() / (1 + tp_.mean())),
    }


def relax_time_by_sites(table: pd.DataFrame, bins: tuple[int, ...] = (1, 4, 8, 12, 20, 40)) -> list[dict]:
    """Relaxation wall time per structure (s), grouped by number of sites."""
    if "relax_times_s" not in table:
        return []
    times, sites = [], []
    for t, s in zip(table["relax_times_s"], table["relax_nsites"], strict=True):
        if isinstance(t, list):
            times.extend(t)
            sites.extend(s)
    if not times:
        return []
    df = pd.DataFrame({"t": times, "n": sites})
    out = []
    for lo, hi in itertools.pairwise(bins):
        sel = df[(df.n >= lo) & (df.n <= hi)] if lo == bins[0] else df[(df.n > lo) & (df.n <= hi)]
        if len(sel):
            out.append(
                {
                    "nsites": f"{lo if lo == bins[0] else lo + 1}-{hi}",
                    "n_structures": len(sel),
                    "mean_s": float(sel.t.mean()),
                    "median_s": float(sel.t.median()),
                    "max_s": float(sel.t.max()),
                }
            )
    return out

"""The structure stage end to end: candidates -> templates -> CIFs -> relaxed, ranked.

Two steps, each one public function and one CLI command:

- :func:`build_structures` (``gapforge structure``): template search and element
  substitution; writes ``structures.csv`` (one row per candidate and template)
  and one CIF per row under ``cifs/``.
- :func:`relax_structures` (``gapforge relax``): CHGNet relaxation of every CIF
  in parallel, formation energy, energy above hull; writes ``relaxed_all.csv``
  (every template) and ``relaxed.csv`` (per candidate, the first-ranked relaxed
  template unless another relaxed lower by more than ``SELECTION_MARGIN`` eV/atom,
  converged ones first: :mod:`gapforge.structure.selection`; optionally in the energy of
  a second potential re-scoring the CHGNet-relaxed structures: :mod:`gapforge.structure.rescore`).

A row that fails (bad element, no template, different stoichiometry, CHGNet
blow-up, no convergence) keeps going with its reason in the ``reason`` column.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pymatgen.core import Composition
from tqdm.auto import tqdm

from gapforge import columns as C
from gapforge.errors import FormulaError, GapforgeError, InputError
from gapforge.executor import TaskFailure
from gapforge.io import atomic_path, find_column, read_table, write_json, write_table
from gapforge.structure.elmd import MODIFIED_PETTIFOR, as_composition
from gapforge.structure.hull import DEFAULT_HULL_DATASET, HullReference
from gapforge.structure.library import TemplateLibrary, load_library
from gapforge.structure.relax import RelaxResult, RelaxSettings, run_relaxations
from gapforge.structure.rescore import RescoreResult, run_rescoring
from gapforge.structure.selection import SELECTION_MARGIN, SelectionSettings, pick_template
from gapforge.structure.stability import (
    ElementalReferences,
    formation_energy_per_atom,
    load_elemental_references,
)
from gapforge.structure.substitution import (
    SubstitutionSettings,
    read_cif,
    substitute,
    volume_increments_for,
    write_cif,
)
from gapforge.structure.templates import SearchSettings, search_templates

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from gapforge.executor import ExecutorSettings
    from gapforge.structure.prototypes import PrototypeCounts

log = logging.getLogger(__name__)

STRUCTURES_FILE = "structures.csv"
RELAXED_ALL_FILE = "relaxed_all.csv"
RELAXED_FILE = "relaxed.csv"
SETTINGS_FILE = "structure_settings.json"
RELAX_SETTINGS_FILE = "relax_settings.json"
CIF_DIR = "cifs"
RELAXED_CIF_DIR = "relaxed"
SYMMETRIZED_CIF_DIR = "relaxed_symmetrized"
#: Symmetry tolerance (Å) for the relaxed structure's space group and symmetrised CIF.
SYMPREC = 0.1
#: One JSON per relaxation, keyed by structure fingerprint + settings, written as each arrives.
RELAX_CACHE_DIR = "relax_cache"


@dataclass(frozen=True)
class StructureSettings:
    """Settings of :func:`build_structures`.

    Attributes:
        search: template search (top-k, fallback).
        substitution: element substitution and volume rescaling.
        max_template_e_above_hull: templates above this known e_above_hull
            (eV/atom) are not used (the offline library has some far off the hull).
        prototype_ranking: rank templates with the prototype counts of ``mp-formulas``
            (see :mod:`gapforge.structure.templates`); skipped with a warning when
            the data is missing.
        aflow_prototypes: add pymatgen's 288 AFLOW prototypes to the templates.
    """

    search: SearchSettings = field(default_factory=SearchSettings)
    substitution: SubstitutionSettings = field(default_factory=SubstitutionSettings)
    max_template_e_above_hull: float | None = 0.1
    prototype_ranking: bool = True
    aflow_prototypes: bool = True


def read_candidates(path: str | Path) -> tuple[pd.DataFrame, list[Composition]]:
    """Read a candidate table and parse its formulas.

    Raises:
        InputError: missing/empty file, no formula column, or a formula that
            cannot be parsed (names file, row and value).
    """
    df = read_table(path)
    if df.empty:
        raise InputError("candidate table has no rows", path=path)
    col = find_column(df, C.FORMULA_ALIASES, what="formula", path=path)
    comps = []
    for row, value in enumerate(df[col].tolist(), start=1):
        try:
            comp = as_composition(str(value))
        except FormulaError as exc:
            raise FormulaError(exc.message, path=path, row=row, value=value) from exc
        comps.append(comp)
    if col != C.FORMULA:
        df = df.rename(columns={col: C.FORMULA})
    return df, comps


def build_structures(
    candidates: str | Path,
    out_dir: str | Path,
    *,
    library: TemplateLibrary | str | Path | None = None,
    settings: StructureSettings = StructureSettings(),
    overwrite: bool = False,
    prototypes: PrototypeCounts | None = None,
) -> pd.DataFrame:
    """Find templates for each candidate, substitute, write CIFs and ``structures.csv``.

    Args:
        candidates: candidate table (CSV/Parquet) with a formula column; every
            other column (predicted gap, flags) is carried along.
        out_dir: run directory; gets ``structures.csv``, ``cifs/`` and the settings.
        library: template library or its file (default: the offline MP library).
        settings: search and substitution settings.
        overwrite: redo even if ``structures.csv`` exists (else it is returned as is).
        prototypes: prototype counts of the ranking (default: ``mp-formulas``; a
            benchmark passes counts without its held-out materials). Used only with
            ``settings.prototype_ranking``.

    Returns:
        The ``structures.csv`` table: one row per candidate and template (rank
        1..k), or one row with a ``reason`` when nothing could be built.
    """
    out_dir = Path(out_dir)
    table_path = out_dir / STRUCTURES_FILE
    if table_path.exists() and not overwrite:
        log.info("%s exists; not redone (use overwrite)", table_path)
        return read_stage_table(table_path)
    cand_df, comps = read_candidates(candidates)
    lib_path = None
    if not isinstance(library, TemplateLibrary):
        lib_path = library
        library = load_library(library, max_e_above_hull=settings.max_template_e_above_hull)
    elif settings.max_template_e_above_hull is not None:
        ehull = library.table[C.E_ABOVE_HULL].to_numpy(dtype=float)
        library = library.subset(~(ehull > settings.max_template_e_above_hull))
    lib_source = library.source if lib_path is None else str(Path(lib_path).resolve())
    if settings.aflow_prototypes:
        library = with_aflow_prototypes(library)
    if not settings.prototype_ranking:
        prototypes = None
    elif prototypes is None:
        prototypes = _prototype_counts()

    searchable = [
        i for i, c in enumerate(comps) if all(el in MODIFIED_PETTIFOR for el in c.get_el_amt_dict())
    ]
    matches_for: dict[int, list[Any]] = {i: [] for i in range(len(comps))}
    found = search_templates([comps[i] for i in searchable], library, settings.search, prototypes=prototypes)
    for i, m in zip(searchable, found, strict=True):
        matches_for[i] = m

    rows: list[dict[str, Any]] = []
    carry = cand_df.to_dict(orient="records")
    for i in tqdm(range(len(comps)), desc="substitute", disable=None, unit="candidate"):
        comp = comps[i]
        base = {**carry[i], C.FORMULA: comp.reduced_formula, C.CANDIDATE_ROW: i + 1}
        if i not in searchable:
            bad = [el for el in comp.get_el_amt_dict() if el not in MODIFIED_PETTIFOR]
            rows.append({**base, C.REASON: f"element {bad[0]} not on the modified Pettifor scale"})
            continue
        if not matches_for[i]:
            rows.append({**base, C.REASON: "no template in the library"})
            continue
        for match in matches_for[i]:
            row = {
                **base,
                C.TEMPLATE_RANK: match.rank,
                C.TEMPLATE_ID: match.material_id,
                C.TEMPLATE_FORMULA: match.formula,
                C.TEMPLATE_SPACEGROUP: library.table.loc[match.index, C.SPACEGROUP_NUMBER],
                C.TEMPLATE_WYCKOFF: library.wyckoff_label(match.index),
                C.ELMD: match.elmd,
                C.PROTOTYPE_SHARE: match.prototype_share,
                C.SAME_PROTOTYPE: match.same_anonymized_formula,
            }
            if not match.same_anonymized_formula:
                row[C.REASON] = (
                    f"no template with the anonymised formula {comp.anonymized_formula}; "
                    f"nearest {match.formula} has a different stoichiometry"
                )
                rows.append(row)
                continue
            try:
                sub = substitute(
                    comp,
                    library.structure(match.index),
                    settings.substitution,
                    increments=volume_increments_for(library, settings.substitution),
                )
                rel = Path(CIF_DIR) / _cif_name(i + 1, comp.reduced_formula, match.rank, match.material_id)
                write_cif(sub.structure, out_dir / rel)
                row.update(
                    {
                        C.SUBSTITUTION: sub.mapping_str,
                        C.OXIDATION_CONSISTENT: sub.oxidation_consistent,
                        C.VOLUME_SCALE: sub.volume_scale,
                        C.NSITES: len(sub.structure),
                        C.CIF_PATH: rel.as_posix(),
                    }
                )
            except GapforgeError as exc:
                row[C.REASON] = str(exc)
            except Exception as exc:  # pymatgen failing on one template must not stop the rest
                row[C.REASON] = f"substitution failed: {type(exc).__name__}: {exc}"
            rows.append(row)

    table = _order_columns(pd.DataFrame(rows), cand_df.columns)
    write_json(
        {"library": lib_source, "n_library": len(library), "settings": asdict(settings)},
        out_dir / SETTINGS_FILE,
    )
    write_table(table, table_path)
    n_ok = int(table[C.CIF_PATH].notna().sum()) if C.CIF_PATH in table else 0
    log.info("structure stage: %d candidates, %d CIFs written to %s", len(comps), n_ok, out_dir / CIF_DIR)
    return table


def relax_structures(
    run_dir: str | Path,
    *,
    settings: RelaxSettings = RelaxSettings(),
    library: TemplateLibrary | str | Path | None = None,
    references: ElementalReferences | str | Path | None = None,
    hull: HullReference | str | Path | None = None,
    workers: int | None = None,
    executor: Executor | ExecutorSettings | None = None,
    overwrite: bool = False,
    selection: SelectionSettings = SelectionSettings(),
    cache_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Relax every CIF of ``run_dir/structures.csv`` with CHGNet and rank the templates.

    Args:
        run_dir: directory written by :func:`build_structures`.
        settings: relaxation protocol.
        library: when given (and ``hull`` is not), the energy above hull is
            measured against this template library's formation energies only.
        references: elemental reference entries (default: the MP 2023-02-07 file).
        hull: the known phases for the energy above hull: a
            :class:`~gapforge.structure.hull.HullReference`, a formation-energy
            dataset name or a table of formula + formation energy per atom
            (default: ``mp-e-form``, every Materials Project formation energy).
        workers: without ``executor``: 1 relaxes here, N on N local workers
            (default: all cores).
        executor: where the relaxations run (settings or an open executor;
            default: ``workers`` if given, else the one open in this context).
        overwrite: redo even if ``relaxed.csv`` exists (else it is returned as is).
            Relaxations already in ``relax_cache/`` (same structure, same settings)
            are reused either way: a killed stage resumes where it stopped.
        selection: which template is kept: the first-ranked one unless another lies lower by
            more than the margin (eV/atom; see :func:`select_best`), in CHGNet's energy or in that
            of a second potential re-scoring every relaxed structure (``selection_energy_per_atom``).
        cache_dir: where relaxations (and re-scorings) are kept by content key (default
            ``run_dir/relax_cache``); runs that relax the same structures may share one.

    Returns:
        ``relaxed.csv``: one row per candidate with the best template's results.
    """
    run_dir = Path(run_dir)
    out_path = run_dir / RELAXED_FILE
    if out_path.exists() and not overwrite:
        log.info("%s exists; not redone (use overwrite)", out_path)
        return read_stage_table(out_path)
    table_path = run_dir / STRUCTURES_FILE
    if not table_path.is_file():
        raise InputError(f"no {STRUCTURES_FILE} (run `gapforge structure` first)", path=run_dir)
    table = read_table(table_path)
    if table.empty:
        raise InputError(f"{STRUCTURES_FILE} has no rows", path=table_path)
    for col in (C.FORMULA, C.CANDIDATE_ROW):
        if col not in table.columns:
            raise InputError(f"{STRUCTURES_FILE} has no {col} column", path=table_path)
    table = _restore_types(table)
    refs = (
        references if isinstance(references, ElementalReferences) else load_elemental_references(references)
    )
    hull = _hull_reference(run_dir, library, hull)

    todo = [i for i in range(len(table)) if _has_cif(table, i)]
    structures, ok_idx = [], []
    for i in todo:
        try:
            structures.append(read_cif(run_dir / str(table.loc[i, C.CIF_PATH])))
            ok_idx.append(i)
        except Exception as exc:
            table.loc[i, C.REASON] = f"cannot read CIF: {type(exc).__name__}: {exc}"
    results = run_relaxations(
        structures,
        settings,
        workers=workers,
        executor=executor,
        cache_dir=run_dir / RELAX_CACHE_DIR if cache_dir is None else Path(cache_dir),
        desc="relax",
    )
    rescore = selection.rescore(settings.device, settings.num_threads)

    for col in (
        C.RELAXED_CIF_PATH,
        C.SYMMETRIZED_CIF_PATH,
        C.RELAXED_SPACEGROUP_SYMBOL,
        C.REASON,
        C.CONVERGED,
    ):
        if col not in table.columns:
            table[col] = None
        table[col] = table[col].astype(object)
    for col in (C.ENERGY_PER_ATOM, C.RELAX_STEPS, C.WALL_TIME_S, C.MAX_FORCE, C.RELAXED_SPACEGROUP):
        table[col] = np.nan
    for i, res in zip(ok_idx, results, strict=True):
        if isinstance(res, TaskFailure):
            table.loc[i, C.REASON] = res.reason
            continue
        _record_relaxation(table, i, res, run_dir, settings)
    if rescore is not None:
        _rescore(table, ok_idx, results, rescore, workers, executor, cache_dir or run_dir / RELAX_CACHE_DIR)
    _add_stability(table, refs, hull)
    write_json(
        {
            "settings": asdict(settings),
            "selection": asdict(selection),
            "references": refs.source,
            "hull_reference": None if hull is None else hull[1],
        },
        run_dir / RELAX_SETTINGS_FILE,
    )
    write_table(table, run_dir / RELAXED_ALL_FILE)
    energy_col = C.ENERGY_PER_ATOM if rescore is None else C.SELECTION_ENERGY_PER_ATOM
    best = select_best(table, selection.margin, energy_column=energy_col)
    _add_dimensionality(best, run_dir)
    write_table(best, out_path)
    warn_below_known_hull(best)
    n_done = sum(not isinstance(r, TaskFailure) for r in results)
    log.info(
        "relax stage: %d of %d structures relaxed; %d candidates, %d with negative formation energy",
        n_done,
        len(ok_idx),
        len(best),
        int(best[C.NEGATIVE_FORMATION].fillna(False).astype(bool).sum()),
    )
    return best


def select_best(
    table: pd.DataFrame, margin: float = SELECTION_MARGIN, *, energy_column: str = C.ENERGY_PER_ATOM
) -> pd.DataFrame:
    """One row per candidate: the kept template (:func:`~gapforge.structure.selection.pick_template`).

    The first-ranked relaxed template unless another relaxed lower by more than
    ``margin`` eV/atom in ``energy_column`` (CHGNet's, or the re-scoring potential's
    :data:`~gapforge.columns.SELECTION_ENERGY_PER_ATOM`; converged relaxations first;
    ``margin`` 0 keeps the lowest energy). A candidate with no relaxed template keeps its
    first row and reason.
    """
    energy = (
        pd.to_numeric(table[energy_column], errors="coerce")
        if energy_column in table
        else pd.Series(np.nan, index=table.index)
    )
    converged = (
        table[C.CONVERGED].fillna(False).astype(bool)
        if C.CONVERGED in table
        else pd.Series(False, index=table.index)
    )
    rank = pd.to_numeric(table.get(C.TEMPLATE_RANK, 0), errors="coerce").fillna(0)
    keep = []
    for _, rows in table.groupby(C.CANDIDATE_ROW, sort=True).groups.items():
        relaxed = [i for i in rows if np.isfinite(energy[i])]
        if not relaxed:
            keep.append(rows[0])
            continue
        # by position in the ranked list (ties of template rank keep table order)
        ordered = sorted(relaxed, key=lambda i: (rank[i], list(rows).index(i)))
        pick = pick_template(
            {pos: energy[i] for pos, i in enumerate(ordered, start=1)},
            margin,
            converged={pos: bool(converged[i]) for pos, i in enumerate(ordered, start=1)},
        )
        keep.append(ordered[pick - 1])
    best = table.loc[keep].copy()
    if C.ENERGY_PER_ATOM in table:
        counts = table.groupby(C.CANDIDATE_ROW)[C.ENERGY_PER_ATOM].count()
        best[C.N_TEMPLATES_RELAXED] = best[C.CANDIDATE_ROW].map(counts).fillna(0).astype(int)
    return best.reset_index(drop=True)


def _rescore(
    table: pd.DataFrame,
    ok_idx: list[int],
    results: list[Any],
    rescore: Any,
    workers: int | None,
    executor: Executor | ExecutorSettings | None,
    cache_dir: str | Path,
) -> None:
    """Write :data:`~gapforge.columns.SELECTION_ENERGY_PER_ATOM` for every CHGNet-relaxed structure."""
    rows = [i for i, res in zip(ok_idx, results, strict=True) if isinstance(res, RelaxResult)]
    structures = [res.final_structure for res in results if isinstance(res, RelaxResult)]
    table[C.SELECTION_ENERGY_PER_ATOM] = np.nan
    table[C.SELECTION_ENERGY_MODEL] = pd.Series([None] * len(table), index=table.index, dtype=object)
    scored = run_rescoring(
        structures, rescore, workers=workers, executor=executor, cache_dir=cache_dir, desc="rescore"
    )
    for i, res in zip(rows, scored, strict=True):
        if isinstance(res, RescoreResult):
            table.loc[i, C.SELECTION_ENERGY_PER_ATOM] = res.energy_per_atom
            table.loc[i, C.SELECTION_ENERGY_MODEL] = str(rescore.model)
        else:  # not scored: this template cannot be chosen by the re-scoring energy
            log.warning("row %d: %s could not score it (%s)", i, rescore.model, res.reason)


# --------------------------------------------------------------------------- helpers


def _cif_name(row: int, formula: str, rank: int, material_id: str) -> str:
    safe_id = re.sub(r"[^A-Za-z0-9_.-]", "_", material_id)
    return f"{row:05d}_{formula}_{rank}_{safe_id}.cif"


def _order_columns(table: pd.DataFrame, input_columns: pd.Index) -> pd.DataFrame:
    first = [C.FORMULA, C.CANDIDATE_ROW]
    carried = [c for c in input_columns if c in table.columns and c not in first and c != C.REASON]
    ours = [
        C.TEMPLATE_RANK,
        C.TEMPLATE_ID,
        C.TEMPLATE_FORMULA,
        C.TEMPLATE_SPACEGROUP,
        C.TEMPLATE_WYCKOFF,
        C.ELMD,
        C.PROTOTYPE_SHARE,
        C.SAME_PROTOTYPE,
        C.SUBSTITUTION,
        C.OXIDATION_CONSISTENT,
        C.VOLUME_SCALE,
        C.NSITES,
        C.CIF_PATH,
        C.REASON,
    ]
    for col in ours:
        if col not in table.columns:
            table[col] = None
    return table[first + carried + ours]


_NUMERIC_COLUMNS = (
    C.CANDIDATE_ROW,
    C.TEMPLATE_RANK,
    C.TEMPLATE_SPACEGROUP,
    C.ELMD,
    C.PROTOTYPE_SHARE,
    C.RELAXED_SPACEGROUP,
    C.VOLUME_SCALE,
    C.NSITES,
    C.ENERGY_PER_ATOM,
    C.SELECTION_ENERGY_PER_ATOM,
    C.RELAX_STEPS,
    C.WALL_TIME_S,
    C.MAX_FORCE,
    C.FORMATION_ENERGY_PER_ATOM,
    C.E_ABOVE_HULL,
    C.HULL_KNOWN_PHASES,
    C.N_TEMPLATES_RELAXED,
    C.DIMENSIONALITY,
    C.BAND_GAP_MEAN,
    C.BAND_GAP_STD,
)
_BOOL_COLUMNS = (
    C.SAME_PROTOTYPE,
    C.OXIDATION_CONSISTENT,
    C.CONVERGED,
    C.NEGATIVE_FORMATION,
    C.BELOW_KNOWN_HULL,
)
_TEXT_COLUMNS = (
    C.REASON,
    C.CIF_PATH,
    C.SUBSTITUTION,
    C.TEMPLATE_ID,
    C.TEMPLATE_FORMULA,
    C.TEMPLATE_WYCKOFF,
    C.RELAXED_CIF_PATH,
    C.DECOMPOSITION,
    C.SYMMETRIZED_CIF_PATH,
    C.RELAXED_SPACEGROUP_SYMBOL,
    C.SELECTION_ENERGY_MODEL,
)


def read_stage_table(path: str | Path) -> pd.DataFrame:
    """Read ``structures.csv`` / ``relaxed.csv`` back with their types (numbers, booleans, missing)."""
    return _restore_types(read_table(path))


def _restore_types(table: pd.DataFrame) -> pd.DataFrame:
    """CSV keeps empty cells as empty strings (``NaN`` is sodium nitride); type our columns again."""
    table = table.copy()
    for col in _NUMERIC_COLUMNS:
        if col in table.columns:
            table[col] = pd.to_numeric(table[col].replace("", np.nan), errors="coerce")
    for col in _BOOL_COLUMNS:
        if col in table.columns:
            table[col] = (
                table[col]
                .map(lambda v: v if isinstance(v, bool) else {"True": True, "False": False}.get(str(v)))
                .astype(object)
            )
    for col in _TEXT_COLUMNS:
        if col in table.columns:
            table[col] = table[col].astype(object).where(table[col].astype(str).str.len() > 0, None)
    return table


def _has_cif(table: pd.DataFrame, i: int) -> bool:
    cif = table.loc[i, C.CIF_PATH] if C.CIF_PATH in table.columns else None
    reason = table.loc[i, C.REASON] if C.REASON in table.columns else None
    return isinstance(cif, str) and bool(cif) and not (isinstance(reason, str) and reason)


def _record_relaxation(
    table: pd.DataFrame, i: int, res: RelaxResult, run_dir: Path, settings: RelaxSettings
) -> None:
    rel = Path(RELAXED_CIF_DIR) / Path(str(table.loc[i, C.CIF_PATH])).name
    write_cif(res.final_structure, run_dir / rel)
    table.loc[i, C.RELAXED_CIF_PATH] = rel.as_posix()
    sym = symmetrize(res.final_structure)
    if sym is not None:
        sym_rel = Path(SYMMETRIZED_CIF_DIR) / rel.name
        with atomic_path(run_dir / sym_rel) as tmp:
            tmp.write_text(sym.cif)
        table.loc[i, C.SYMMETRIZED_CIF_PATH] = sym_rel.as_posix()
        table.loc[i, C.RELAXED_SPACEGROUP] = sym.number
        table.loc[i, C.RELAXED_SPACEGROUP_SYMBOL] = sym.symbol
    table.loc[i, C.ENERGY_PER_ATOM] = res.energy_per_atom
    table.loc[i, C.RELAX_STEPS] = res.steps
    table.loc[i, C.CONVERGED] = res.converged
    table.loc[i, C.WALL_TIME_S] = res.wall_time_s
    table.loc[i, C.MAX_FORCE] = res.max_force
    if not res.converged:
        table.loc[i, C.REASON] = (
            f"not converged in {settings.max_steps} steps (max force {res.max_force:.3f} eV/Å)"
        )


def bonded_dimensionality(structure: Any) -> int | None:
    """Dimensionality of the bonded network: 0 molecular, 1 chains, 2 layers, 3 framework.

    Larsen et al., npj Comput. Mater. 5, 2019 (pymatgen ``get_dimensionality_larsen``) on
    the bonds CrystalNN finds. A wide-gap "discovery" of dimensionality 0 is a molecular
    crystal (PF3, COF2): a real substance, rarely the solid a user is after. None when
    the bonding analysis fails.
    """
    from pymatgen.analysis.dimensionality import get_dimensionality_larsen
    from pymatgen.analysis.local_env import CrystalNN

    try:
        with warnings.catch_warnings():  # CrystalNN falls back to covalent radii, with a warning
            warnings.simplefilter("ignore", UserWarning)
            return int(get_dimensionality_larsen(CrystalNN().get_bonded_structure(structure)))
    except Exception as exc:  # CrystalNN gives up on some distorted or sparse cells
        log.debug("no dimensionality for %s: %s", structure.composition.reduced_formula, exc)
        return None


def _add_dimensionality(best: pd.DataFrame, run_dir: Path) -> None:
    """Write :data:`~gapforge.columns.DIMENSIONALITY` for each kept relaxed structure."""
    dims = []
    for path in best.get(C.RELAXED_CIF_PATH, pd.Series([None] * len(best))):
        dim = None
        if isinstance(path, str) and path:
            try:
                dim = bonded_dimensionality(read_cif(run_dir / path))
            except Exception as exc:
                log.debug("cannot read %s: %s", path, exc)
        dims.append(np.nan if dim is None else float(dim))
    best[C.DIMENSIONALITY] = dims


@dataclass(frozen=True)
class Symmetrized:
    """Space group of a structure and its CIF written with the symmetry operations."""

    number: int
    symbol: str
    cif: str


def symmetrize(structure: Any, symprec: float = SYMPREC) -> Symmetrized | None:
    """Space group (pymatgen ``SpacegroupAnalyzer``) and symmetrised CIF; None when spglib fails."""
    from pymatgen.io.cif import CifWriter
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        sga = SpacegroupAnalyzer(structure, symprec=symprec)
        refined = sga.get_refined_structure()
        return Symmetrized(
            int(sga.get_space_group_number()),
            str(sga.get_space_group_symbol()),
            str(CifWriter(refined, symprec=symprec)),
        )
    except Exception as exc:  # spglib gives up on some distorted cells
        log.debug("no symmetry for %s: %s", structure.composition.reduced_formula, exc)
        return None


def with_aflow_prototypes(library: TemplateLibrary) -> TemplateLibrary:
    """The library with pymatgen's AFLOW prototypes appended (once)."""
    from gapforge.structure.prototypes import AFLOW_ID_PREFIX, aflow_prototype_library

    ids = library.table[C.MATERIAL_ID].astype(str)
    if ids.str.startswith(AFLOW_ID_PREFIX).any():
        return library
    table = pd.concat([library.table, aflow_prototype_library()], ignore_index=True)
    return TemplateLibrary(table, source=f"{library.source} + aflow-prototypes")


def _prototype_counts() -> Any:
    from gapforge.structure.prototypes import PrototypeCounts

    try:
        return PrototypeCounts.load()
    except GapforgeError as exc:
        log.warning("no prototype counts (%s); templates ranked by ElMD only", exc)
        return None


def _hull_reference(
    run_dir: Path, library: TemplateLibrary | str | Path | None, hull: HullReference | str | Path | None
) -> tuple[HullReference, str] | None:
    from gapforge.data.registry import REGISTRY

    if isinstance(hull, HullReference):
        return hull, hull.source
    if hull is not None:
        ref = (
            HullReference.from_dataset(str(hull)) if str(hull) in REGISTRY else HullReference.from_table(hull)
        )
        return ref, ref.source
    if isinstance(library, TemplateLibrary):
        return HullReference.from_library(library), str(library.source)
    if library is not None:
        lib = load_library(library)
        return HullReference.from_library(lib), str(lib.source)
    try:
        ref = HullReference.from_dataset(DEFAULT_HULL_DATASET)
        return ref, ref.source
    except GapforgeError as exc:
        log.warning("no %s hull reference (%s); trying the template library", DEFAULT_HULL_DATASET, exc)
    try:
        recorded = json.loads((run_dir / SETTINGS_FILE).read_text())["library"]
    except (OSError, KeyError, ValueError):
        recorded = None
    try:
        lib = load_library(recorded)
    except GapforgeError as exc:
        log.warning("no library for the energy above hull (%s); e_above_hull left empty", exc)
        return None
    return HullReference.from_library(lib), str(lib.source)


def _add_stability(
    table: pd.DataFrame, refs: ElementalReferences, hull: tuple[HullReference, str] | None
) -> None:
    for col in (C.FORMATION_ENERGY_PER_ATOM, C.E_ABOVE_HULL, C.HULL_KNOWN_PHASES):
        table[col] = np.nan
    for col in (C.NEGATIVE_FORMATION, C.BELOW_KNOWN_HULL, C.DECOMPOSITION):
        table[col] = pd.Series([None] * len(table), index=table.index, dtype=object)
    if C.ENERGY_PER_ATOM not in table.columns:
        return
    for i in range(len(table)):
        e = pd.to_numeric(table.loc[i, C.ENERGY_PER_ATOM], errors="coerce")
        if not np.isfinite(e):
            continue
        formula = str(table.loc[i, C.FORMULA])
        try:
            ef = formation_energy_per_atom(formula, float(e), refs)
        except GapforgeError as exc:
            table.loc[i, C.REASON] = str(exc)
            continue
        table.loc[i, C.FORMATION_ENERGY_PER_ATOM] = ef
        table.loc[i, C.NEGATIVE_FORMATION] = bool(ef < 0)
        if hull is None:
            continue
        res = hull[0].e_above_hull(formula, ef)
        table.loc[i, C.HULL_KNOWN_PHASES] = res.n_known_phases
        if not np.isfinite(res.e_above_hull):
            reason = table.loc[i, C.REASON] if C.REASON in table.columns else None
            if not (isinstance(reason, str) and reason):
                table.loc[i, C.REASON] = f"no energy above hull: {res.reason}"
            continue
        table.loc[i, C.E_ABOVE_HULL] = res.e_above_hull
        table.loc[i, C.DECOMPOSITION] = res.decomposition_text
        table.loc[i, C.BELOW_KNOWN_HULL] = res.below_known_hull


def warn_below_known_hull(best: pd.DataFrame) -> int:
    """Log one warning per candidate more than 0.05 eV/atom below the known hull; return how many."""
    if C.BELOW_KNOWN_HULL not in best.columns:
        return 0
    flagged = best[best[C.BELOW_KNOWN_HULL].map(lambda v: v is True or str(v) == "True")]
    for _, row in flagged.iterrows():
        log.warning(
            "%s lies %.3f eV/atom below the known hull (decomposition %s): "
            "the reference may be missing a phase",
            row[C.FORMULA],
            -float(row[C.E_ABOVE_HULL]),
            row.get(C.DECOMPOSITION, ""),
        )
    return len(flagged)

"""Where each stage of ``gapforge discover`` writes its tables inside a run directory.

Every path here is relative to the run directory ``RUN``. The report reads the
same names, so any table written by hand (or by another tool) in the same shape
shows up in it.

=====================================  =====================================================
file                                   columns / content
=====================================  =====================================================
``data/initial.csv``                   formula, band_gap (eV), source: the initial labelled set
``data/holdout.csv``                   formula, band_gap: never trained on; scores the screening model
``oracle/oracle.json``                 the oracle model used (directory, kind, card metrics)
``autoencoder/autoencoder.json``       the autoencoder used (directory, latent size, card)
``campaign/iterations.csv``            iteration, n_proposed, n_valid, valid_rate,
                                       n_new, best_gap, best_so_far, n_hits, n_labelled
``campaign/labelled.csv``              formula, band_gap, source (initial/campaign), iteration
``campaign/latent_map.csv``            formula, band_gap, x, y (2-D projection of the latent
                                       code), kind (labelled/proposal), iteration
``screening_model/parity.csv``         formula, band_gap, band_gap_mean, band_gap_std (hold-out)
``screening_model/metrics.json``       r2, mae, rmse, n on the hold-out
``generate/generated.parquet``         formula, n_generated, n_atoms, n_elements
``generate/stats.json``                n_samples, n_decodable, n_unique, seconds, ...
``screen/screened.parquet``            every distinct generated formula with its prediction and flags
``screen/candidates.csv``              formula, band_gap_mean, band_gap_std, n_atoms,
                                       n_elements, in_window, simple, smact_valid, novel, rank
``screen/funnel.json``                 {"steps": [{"filter", "description", "n_in",
                                       "n_out", "removed"}]}
``structure/structures.csv``           one row per candidate x template, cif_path (relative
                                       to ``structure/``)
``structure/relaxed.csv``              best template per candidate: energy_per_atom,
                                       formation_energy_per_atom, e_above_hull, relaxed_cif_path
``stability/discoveries.csv``          the ranked final table (see :func:`assemble_candidates`)
``dft/dft.csv``                        formula, dft_band_gap (eV), status, cif_path
=====================================  =====================================================
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gapforge import columns as C
from gapforge.io import read_table

INITIAL = "data/initial.csv"
HOLDOUT = "data/holdout.csv"
ORACLE_CARD = "oracle/oracle.json"
AUTOENCODER_CARD = "autoencoder/autoencoder.json"
CAMPAIGN_DIR = "campaign"
CAMPAIGN_ITERATIONS = "campaign/iterations.csv"
CAMPAIGN_LABELLED = "campaign/labelled.csv"
LATENT_MAP = "campaign/latent_map.csv"
SCREENING_MODEL_DIR = "screening_model/model"
SCREENING_PARITY = "screening_model/parity.csv"
SCREENING_METRICS = "screening_model/metrics.json"
GENERATED = "generate/generated.parquet"
GENERATOR_STATS = "generate/stats.json"
CANDIDATES = "screen/candidates.csv"
SCREENED = "screen/screened.parquet"
FUNNEL = "screen/funnel.json"
STRUCTURE_DIR = "structure"
STRUCTURES = "structure/structures.csv"
RELAXED = "structure/relaxed.csv"
DISCOVERIES = "stability/discoveries.csv"
DFT_DIR = "dft"
DFT_TABLE = "dft/dft.csv"
REPORT = "report.html"

# column names of the tables above (aliases of gapforge.columns where the structure/DFT stages share them)
IN_WINDOW = "in_window"
SIMPLE = "simple"
SMACT_VALID = "smact_valid"
NOVEL = "novel"
RANK = "rank"
N_ATOMS = "n_atoms"
N_ELEMENTS = "n_elements"
FORMATION_ENERGY = C.FORMATION_ENERGY_PER_ATOM  # eV/atom
E_ABOVE_HULL = C.E_ABOVE_HULL  # eV/atom
DFT_BAND_GAP = C.DFT_BAND_GAP  # eV
CIF_LINK = "cif"  # path of the best CIF, relative to RUN
TEMPLATE_FORMULA = C.TEMPLATE_FORMULA

#: Columns of the final candidate table, in display order (those present are shown).
CANDIDATE_COLUMNS = (
    RANK,
    C.FORMULA,
    C.BAND_GAP_MEAN,
    C.BAND_GAP_STD,
    C.P_IN_WINDOW,
    FORMATION_ENERGY,
    E_ABOVE_HULL,
    C.P_STABLE,
    C.DECOMPOSITION,
    C.BELOW_KNOWN_HULL,
    C.DIMENSIONALITY,
    DFT_BAND_GAP,
    TEMPLATE_FORMULA,
    N_ATOMS,
    N_ELEMENTS,
    SMACT_VALID,
    NOVEL,
    CIF_LINK,
    C.REASON,
)


#: Probabilities are compared at this resolution before the next key breaks the tie.
P_RESOLUTION = 0.01


def rank_discoveries(table: pd.DataFrame) -> pd.DataFrame:
    """Rank candidates by the probability of being what was asked for: in the window and stable.

    Where the energy above hull is known, the key is ``p_in_window`` x ``p_stable``
    (:func:`gapforge.structure.stability.p_stable`; the gap and the stability taken as
    independent), rounded to :data:`P_RESOLUTION`, highest first; ties go to the lower
    energy above hull, then to the screen's rank. Candidates without an energy above hull
    (not relaxed, or elements the hull reference lacks) follow, by ``p_in_window``.

    A table without ``p_in_window`` (a screen from before it existed) is ranked by
    stability, then by the screen's order. Writes ``p_stable`` and renumbers ``rank`` 1..n.
    """
    from gapforge.structure.stability import p_stable

    cand = table.reset_index(drop=True)
    n = len(cand)
    screen_rank = (
        pd.to_numeric(cand[RANK], errors="coerce").fillna(np.inf).to_numpy()
        if RANK in cand.columns
        else np.arange(n, dtype=float)
    )
    if C.P_IN_WINDOW in cand.columns:
        p = pd.to_numeric(cand[C.P_IN_WINDOW], errors="coerce").fillna(0.0).to_numpy()
    else:
        p = np.ones(n)
    if E_ABOVE_HULL in cand.columns:
        ehull = pd.to_numeric(cand[E_ABOVE_HULL], errors="coerce").to_numpy()
    else:
        ehull = np.full(n, np.nan)
    e_missing = np.isnan(ehull)
    ps = p_stable(ehull)
    joint = np.where(e_missing, p, p * ps)
    p_key = -np.round(joint / P_RESOLUTION)
    order = np.lexsort((screen_rank, np.where(e_missing, np.inf, ehull), p_key, e_missing))
    cand = cand.assign(**{C.P_STABLE: ps}).iloc[order].reset_index(drop=True)
    cand[RANK] = np.arange(1, n + 1)
    return cand


#: Columns of :data:`CANDIDATE_COLUMNS` that hold numbers (NaN where a stage gave no value).
NUMERIC_CANDIDATE_COLUMNS = (
    C.BAND_GAP_MEAN,
    C.BAND_GAP_STD,
    C.P_IN_WINDOW,
    FORMATION_ENERGY,
    E_ABOVE_HULL,
    C.P_STABLE,
    C.DIMENSIONALITY,
    DFT_BAND_GAP,
)


#: Columns of :data:`CANDIDATE_COLUMNS` that hold yes/no flags (empty where a stage gave no value).
FLAG_CANDIDATE_COLUMNS = tuple(c for c in (SMACT_VALID, NOVEL, C.BELOW_KNOWN_HULL) if c in CANDIDATE_COLUMNS)


def with_full_schema(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with every column of :data:`CANDIDATE_COLUMNS` (missing ones added empty), in order.

    The ranked ``stability/discoveries.csv`` is written through this, so a run
    with no discoveries (or whose structure stages were skipped) still has every
    column a reader indexes, with zero rows or empty values.
    """
    out = table.copy()
    for col in CANDIDATE_COLUMNS:
        if col not in out.columns:
            if col in NUMERIC_CANDIDATE_COLUMNS or col == RANK:
                out[col] = np.nan
            elif col in FLAG_CANDIDATE_COLUMNS:
                out[col] = pd.Series([None] * len(out), index=out.index, dtype=object)
            else:
                out[col] = ""
    if len(out) == 0:  # typed, so that sums and comparisons on the empty table give 0, not ""
        for col in NUMERIC_CANDIDATE_COLUMNS:
            out[col] = out[col].astype(float)
        for col in FLAG_CANDIDATE_COLUMNS:
            out[col] = out[col].astype(bool)
    rest = [c for c in out.columns if c not in CANDIDATE_COLUMNS]
    return out[list(CANDIDATE_COLUMNS) + rest]


def assemble_candidates(run_dir: str | Path) -> pd.DataFrame | None:
    """Join the screen's candidates with their structures, stability and DFT gaps.

    Reads ``screen/candidates.csv`` and, where present, ``structure/relaxed.csv``
    and ``dft/dft.csv`` (joined on ``formula``). CIF paths are made relative to
    the run directory (the relaxed CIF when there is one). Ranked by
    :func:`rank_discoveries`: the probability that the gap lies in the window and
    the candidate is stable, where the energy above hull is known.

    Returns:
        The table (columns of :data:`CANDIDATE_COLUMNS` that are available), or
        ``None`` when the screen has not run.
    """
    run_dir = Path(run_dir)
    path = run_dir / CANDIDATES
    if not path.is_file():
        return None
    cand = read_table(path)
    cand[C.FORMULA] = cand[C.FORMULA].astype(str)
    if RANK not in cand.columns:
        cand[RANK] = np.arange(1, len(cand) + 1)
    relaxed_path = run_dir / RELAXED
    if relaxed_path.is_file():
        rel = read_table(relaxed_path)
        rel[C.FORMULA] = rel[C.FORMULA].astype(str)
        keep = {C.FORMULA: rel[C.FORMULA]}
        for col in (FORMATION_ENERGY, E_ABOVE_HULL):
            if col in rel.columns:
                keep[col] = pd.to_numeric(rel[col], errors="coerce")
        for col in (C.HULL_KNOWN_PHASES, C.DIMENSIONALITY):
            if col in rel.columns:
                keep[col] = pd.to_numeric(rel[col], errors="coerce")
        for col in (TEMPLATE_FORMULA, C.DECOMPOSITION, C.BELOW_KNOWN_HULL):
            if col in rel.columns:
                keep[col] = rel[col]
        link = pd.Series([None] * len(rel), dtype=object)
        for col in (C.CIF_PATH, C.RELAXED_CIF_PATH):  # the relaxed one wins where it exists
            if col in rel.columns:
                vals = rel[col].astype(object)
                ok = vals.map(lambda v: isinstance(v, str) and v.strip() != "")
                link[ok.to_numpy()] = [f"{Path(STRUCTURE_DIR, v).as_posix()}" for v in vals[ok]]
        keep[CIF_LINK] = link.to_numpy()
        if C.REASON in rel.columns:
            keep["structure_reason"] = rel[C.REASON].astype(object)
        rel_df = pd.DataFrame(keep).drop_duplicates(C.FORMULA)
        cand = cand.drop(columns=[c for c in rel_df.columns if c != C.FORMULA and c in cand.columns])
        cand = cand.merge(rel_df, on=C.FORMULA, how="left")
        if "structure_reason" in cand.columns:
            reason = (
                cand[C.REASON].astype(object) if C.REASON in cand.columns else pd.Series([""] * len(cand))
            )
            sr = cand.pop("structure_reason")
            cand[C.REASON] = [
                r if isinstance(r, str) and r else (s if isinstance(s, str) else "")
                for r, s in zip(reason, sr, strict=True)
            ]
    dft_path = run_dir / DFT_TABLE
    if dft_path.is_file():
        dft = read_table(dft_path)
        if DFT_BAND_GAP in dft.columns and C.FORMULA in dft.columns:
            dft = dft[[C.FORMULA, DFT_BAND_GAP]].copy()
            dft[C.FORMULA] = dft[C.FORMULA].astype(str)
            dft[DFT_BAND_GAP] = pd.to_numeric(dft[DFT_BAND_GAP], errors="coerce")
            dft = dft.dropna().drop_duplicates(C.FORMULA)
            cand = cand.drop(columns=[DFT_BAND_GAP], errors="ignore").merge(dft, on=C.FORMULA, how="left")
    cand = rank_discoveries(cand)
    cols = [c for c in CANDIDATE_COLUMNS if c in cand.columns]
    rest = [c for c in cand.columns if c not in cols]
    return cand[cols + rest]


__all__ = [
    "CANDIDATES",
    "CANDIDATE_COLUMNS",
    "DISCOVERIES",
    "FUNNEL",
    "GENERATED",
    "GENERATOR_STATS",
    "LATENT_MAP",
    "REPORT",
    "assemble_candidates",
    "rank_discoveries",
    "with_full_schema",
]

"""``gapforge structure`` and ``gapforge relax``: from candidate formulas to relaxed crystals."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gapforge import columns as C
from gapforge.cli._app import ExecutorOpt, app, executor_settings, out_option
from gapforge.cli._policy import choice


@app.command("structure")
def structure_cmd(
    input: Annotated[
        Path, typer.Option("--input", help="Candidate table (CSV/Parquet) with a formula column.")
    ],
    out: Annotated[
        Path, out_option("Output directory: structures.csv and cifs/ (an existing table is reused).")
    ],
    library: Annotated[
        Path | None,
        typer.Option("--library", help="Template library (CSV/Parquet); default: the offline MP library."),
    ] = None,
    top_k: Annotated[
        int, typer.Option("--top-k", help="Templates kept per candidate (relaxed; the lowest energy wins).")
    ] = 5,
    max_template_e_above_hull: Annotated[
        float, typer.Option("--max-template-ehull", help="Skip templates above this e_above_hull (eV/atom).")
    ] = 0.1,
    aflow: Annotated[
        bool, typer.Option("--aflow/--no-aflow", help="Add pymatgen's 288 AFLOW prototypes to the templates.")
    ] = True,
    prototype_ranking: Annotated[
        bool,
        typer.Option(
            "--prototype-ranking/--no-prototype-ranking",
            help="Rank distinct prototypes by ElMD and how common they are among MP entries.",
        ),
    ] = True,
    ranking: Annotated[
        str,
        typer.Option(
            "--ranking",
            help="Prototype order: 'learned' (the shipped ranker) or 'rule' (ElMD + prototype share).",
        ),
    ] = "learned",
    slots: Annotated[
        str | None,
        typer.Option(
            "--slots",
            help="What the k templates are with the learned ranking: 'structure_type' (distinct structure "
            "types: prototypes split by Wyckoff sites) or 'prototype' (distinct space groups); "
            "default: the library's (SearchSettings).",
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Build again even if OUT/structures.csv exists (else it is used)."),
    ] = False,
) -> None:
    """Find templates by ElMD, substitute elements and write one CIF per candidate and template."""
    from gapforge.structure.pipeline import STRUCTURES_FILE, StructureSettings, build_structures
    from gapforge.structure.ranker import PrototypeRanking
    from gapforge.structure.templates import SearchSettings, SlotFilling

    if top_k < 1:
        raise typer.BadParameter("--top-k must be at least 1")
    order = choice("--ranking", ranking, PrototypeRanking)
    fill = SearchSettings().slots if slots is None else choice("--slots", slots, SlotFilling)
    settings = StructureSettings(
        search=SearchSettings(top_k=top_k, ranking=order, slots=fill),
        max_template_e_above_hull=max_template_e_above_hull,
        aflow_prototypes=aflow,
        prototype_ranking=prototype_ranking,
    )
    existed = (out / STRUCTURES_FILE).exists() and not overwrite
    table = build_structures(input, out, library=library, settings=settings, overwrite=overwrite)
    if existed:
        typer.echo(f"{out / STRUCTURES_FILE} already exists; not redone (use --overwrite)")
    has_cif = table[C.CIF_PATH].notna() & table[C.CIF_PATH].astype(str).str.len().gt(0)
    n_cand = table[C.CANDIDATE_ROW].nunique()
    with_cif = table.loc[has_cif, C.CANDIDATE_ROW].nunique()
    typer.echo(
        f"{n_cand} candidates, {with_cif} with at least one substituted structure; "
        f"{int(has_cif.sum())} CIFs -> {out / STRUCTURES_FILE}"
    )


@app.command("relax")
def relax_cmd(
    input: Annotated[Path, typer.Option("--input", help="Run directory written by `gapforge structure`.")],
    library: Annotated[
        Path | None,
        typer.Option("--library", help="Measure e_above_hull against this template library only."),
    ] = None,
    hull: Annotated[
        str | None,
        typer.Option(
            "--hull",
            help="Known phases for e_above_hull: a dataset name or a table of formula + "
            "formation_energy_per_atom (default: mp-e-form, every Materials Project formation energy).",
        ),
    ] = None,
    fmax: Annotated[float, typer.Option("--fmax", help="Force convergence threshold (eV/Å).")] = 0.05,
    steps: Annotated[int, typer.Option("--steps", help="Maximum optimiser steps per structure.")] = 500,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="Structures relaxed at once, one process each. Default: one per core this process "
            "may use (os.sched_getaffinity).",
            min=1,
        ),
    ] = None,
    selection_energy: Annotated[
        str,
        typer.Option(
            "--selection-energy",
            help="Whose energy chooses among each candidate's relaxed templates: 'chgnet' (the "
            "relaxation's own) or 'sevennet-0' (SevenNet-0 re-scores every CHGNet-relaxed structure; "
            "pip install 'gapforge[sevennet]').",
        ),
    ] = "chgnet",
    selection_margin: Annotated[
        float | None,
        typer.Option(
            "--selection-margin",
            help="Keep the first-ranked template unless another lies lower by more than this (eV/atom; "
            "0 = lowest energy). Default: gapforge.structure.selection.SELECTION_MARGIN (0.075, chosen "
            "on known materials with CHGNet energies).",
            min=0.0,
        ),
    ] = None,
    rescore_steps: Annotated[
        int,
        typer.Option(
            "--rescore-steps",
            help="With --selection-energy sevennet-0: its own FIRE steps from each CHGNet-relaxed "
            "structure before the energy is read (0 = one evaluation).",
            min=0,
        ),
    ] = 0,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Relax again even if INPUT/relaxed.csv exists (else it is reused)."),
    ] = False,
    executor: ExecutorOpt = None,
) -> None:
    """Relax every substituted structure with CHGNet; formation energy and e_above_hull per candidate.

    Each relaxation is stored in INPUT/relax_cache/ as it finishes: a killed run resumes there.
    """
    from gapforge.structure.pipeline import RELAXED_FILE, relax_structures
    from gapforge.structure.relax import RelaxSettings
    from gapforge.structure.rescore import SelectionEnergy
    from gapforge.structure.selection import SELECTION_MARGIN, SelectionSettings

    energy = choice("--selection-energy", selection_energy, SelectionEnergy)
    if rescore_steps and energy == SelectionEnergy.CHGNET:
        raise typer.BadParameter("--rescore-steps needs --selection-energy other than chgnet")
    selection = SelectionSettings(
        energy,
        SELECTION_MARGIN if selection_margin is None else selection_margin,
        rescore_steps,
    )
    existed = (input / RELAXED_FILE).exists() and not overwrite
    best = relax_structures(
        input,
        settings=RelaxSettings(fmax=fmax, max_steps=steps),
        library=library,
        hull=hull,
        executor=executor_settings(executor, workers),
        overwrite=overwrite,
        selection=selection,
    )
    if existed:
        typer.echo(f"{input / RELAXED_FILE} already exists; not redone (use --overwrite)")
    cols = [
        C.FORMULA,
        C.TEMPLATE_FORMULA,
        C.ENERGY_PER_ATOM,
        C.FORMATION_ENERGY_PER_ATOM,
        C.E_ABOVE_HULL,
        C.DECOMPOSITION,
        C.DIMENSIONALITY,
        C.CONVERGED,
        C.REASON,
    ]
    shown = best[[c for c in cols if c in best.columns]]
    typer.echo(shown.to_string(index=False, na_rep="", float_format=lambda x: f"{x:.3f}"))
    neg = best[C.NEGATIVE_FORMATION].astype(str).str.lower().eq("true").sum()
    typer.echo(f"{len(best)} candidates, {neg} with negative formation energy -> {input / RELAXED_FILE}")

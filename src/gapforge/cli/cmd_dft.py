"""``gapforge dft``: PBE band gap and total energy of relaxed structures with GPAW."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gapforge.cli._app import ExecutorOpt, app, executor_settings, out_option
from gapforge.structure.dft import RESULTS_FILE, DFTSettings, format_results, run_dft

_DEFAULT = DFTSettings()


@app.command("dft")
def dft(
    input_path: Annotated[
        Path,
        typer.Option(
            "--input",
            help="Directory of CIFs, a run directory with relaxed.csv, or a table with a "
            "relaxed_cif_path/cif_path column.",
        ),
    ],
    out: Annotated[Path, out_option("Output directory: dft.csv, one folder per structure, cache/.")],
    top: Annotated[
        int | None,
        typer.Option(
            "--top", help="Only the first N structures (table order, or CIFs by name). Default: all."
        ),
    ] = None,
    ecut: Annotated[float, typer.Option("--ecut", help="Plane-wave cutoff (eV).")] = _DEFAULT.ecut,
    kpt_density: Annotated[
        float, typer.Option("--kpt-density", help="k-point density (points per Å⁻¹, 2π included).")
    ] = _DEFAULT.kpt_density,
    spinpol: Annotated[
        bool, typer.Option("--spinpol/--no-spinpol", help="Spin-polarised.")
    ] = _DEFAULT.spinpol,
    band_path_points: Annotated[
        int,
        typer.Option("--band-path-points", help="k-points of the band-structure path (0: grid only)."),
    ] = _DEFAULT.band_path_points,
    time_budget: Annotated[
        float, typer.Option("--time-budget", help="Wall-clock seconds per structure before it is stopped.")
    ] = _DEFAULT.time_budget,
    maxiter: Annotated[int, typer.Option("--maxiter", help="Maximum SCF iterations.")] = _DEFAULT.maxiter,
    cache: Annotated[
        Path | None,
        typer.Option("--cache", help="Cache directory (default: OUT/cache); share it between runs."),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", help="Structures computed at once, one process each (default: 1).")
    ] = 1,
    executor: ExecutorOpt = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Recompute every structure, ignoring the cache (else cached results are used).",
        ),
    ] = False,
) -> None:
    """Compute the PBE band gap (and total energy) of each structure with GPAW.

    Results are cached by structure fingerprint + settings, so a rerun only computes
    what is new; --overwrite recomputes everything.
    """
    settings = DFTSettings(
        ecut=ecut,
        kpt_density=kpt_density,
        spinpol=spinpol,
        band_path_points=band_path_points,
        time_budget=time_budget,
        maxiter=maxiter,
    )
    table = run_dft(
        input_path,
        out,
        top=top,
        settings=settings,
        # --workers left at 1 keeps an --executor file's own worker count
        executor=executor_settings(executor, None if executor is not None and workers == 1 else workers),
        overwrite=overwrite,
        cache_dir=cache,
    )
    typer.echo(format_results(table))
    typer.echo(f"wrote {out / RESULTS_FILE}")

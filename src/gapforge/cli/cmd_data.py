"""``gapforge data``: list the registry and show what a dataset holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gapforge.cli._app import OverwriteOpt, data_app
from gapforge.cli._policy import refuse_existing
from gapforge.data.loaders import load_dataset
from gapforge.data.registry import REGISTRY, resolve
from gapforge.data.summary import summarize_dataset
from gapforge.errors import DatasetNotFoundError
from gapforge.io import write_json


@data_app.command("list")
def data_list() -> None:
    """List the named datasets and where each resolves on this machine."""
    for entry in REGISTRY.values():
        try:
            where = str(resolve(entry.name, download=False))
        except DatasetNotFoundError:
            where = "(not local; downloads on first use)"
        typer.echo(f"{entry.name:<12} {entry.description}\n{'':<12} {where}")


@data_app.command("show")
def data_show(
    name: Annotated[
        str, typer.Argument(help="Dataset name (gapforge data list) or a CSV/JSON/Parquet file.")
    ],
    duplicates: Annotated[
        str | None,
        typer.Option(
            "--duplicates",
            help="Policy for a formula with different gaps: error|mean|median|min|max|first|keep "
            "(default: median for the one-row-per-structure sets mp-gap, expt-gap, oqmd-gap, aflow-gap; "
            "error otherwise).",
        ),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the summary as JSON to this file.")
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Rows, distinct formulas, elements, band-gap statistics and how many formulas are encodable."""
    if duplicates not in (None, "error", "mean", "median", "min", "max", "first", "keep"):
        raise typer.BadParameter(f"unknown policy {duplicates!r}", param_hint="--duplicates")
    refuse_existing(json_out, overwrite=overwrite)
    df = load_dataset(name, duplicates=duplicates)  # type: ignore[arg-type]
    s = summarize_dataset(df, name=name)
    typer.echo(f"dataset            {s.name}")
    typer.echo(f"rows               {s.rows:,}")
    typer.echo(f"distinct formulas  {s.distinct_formulas:,}")
    typer.echo(f"elements           {s.n_elements}")
    typer.echo(
        f"band gap (eV)      min {s.gap_min:.3f}  median {s.gap_median:.3f}  mean {s.gap_mean:.3f}  "
        f"max {s.gap_max:.3f}  sd {s.gap_std:.3f}"
    )
    typer.echo("histogram (eV)")
    width = max(s.gap_histogram.values(), default=1) or 1
    for label, n in s.gap_histogram.items():
        typer.echo(f"  {label:<12} {n:>8,}  {'#' * round(40 * n / width)}")
    share = s.encodable / s.rows if s.rows else 0.0
    typer.echo(
        f"encodable          {s.encodable:,} ({share:.1%}; counts 1..{s.n_levels}, {s.n_elements} elements)"
    )
    if s.not_encodable:
        typer.echo(f"not encodable      {s.not_encodable:,}")
        for reason, n in s.not_encodable_reasons.items():
            typer.echo(f"  {n:>8,}  {reason}")
    if json_out is not None:
        write_json(s.to_dict(), json_out)

"""``gapforge discover`` (the whole pipeline) and ``gapforge report`` (the HTML page)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from gapforge.cli._app import OutOpt, OverwriteOpt, app


@app.command("discover")
def discover_cmd(
    out: OutOpt,
    gap_min: Annotated[
        float | None, typer.Option("--gap-min", help="Lower edge of the target band-gap window (eV).")
    ] = None,
    gap_max: Annotated[
        float | None,
        typer.Option("--gap-max", help="Upper edge of the window (eV); leave out for an open window."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Settings file (TOML, JSON or YAML) overriding the preset."),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Small budgets: minutes on 2 cores with the shipped models.")
    ] = False,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed (default 0).")] = None,
    overwrite: OverwriteOpt = False,
    until: Annotated[str | None, typer.Option("--until", help="Stop after this stage.")] = None,
    redo: Annotated[
        list[str] | None, typer.Option("--redo", help="Run this stage (and every later one) again.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the resolved settings and the stages; run nothing.")
    ] = False,
) -> None:
    """Run every stage, from labelled data to a ranked, relaxed candidate list and RUN/report.html.

    A rerun into the same --out resumes: completed stages are not redone.
    """
    from gapforge.discover import resolve_config
    from gapforge.discover.stages import DISCOVER_STAGES, discover

    cfg = resolve_config(gap_min=gap_min, gap_max=gap_max, seed=seed, quick=quick, config_file=config)
    if dry_run:
        typer.echo(json.dumps(cfg.to_dict(), indent=2))
        for stage in DISCOVER_STAGES:
            typer.echo(f"{stage.name:16s} {stage.description}")
        return
    result = discover(out, cfg, overwrite=overwrite, until=until, redo=tuple(redo or ()))
    typer.echo(f"{'stage':16s} {'status':8s} {'wall time (s)':>13s}  summary")
    for rec in result.stages:
        secs = "" if rec.seconds is None else f"{rec.seconds:.1f}"
        note = rec.reason or ", ".join(
            f"{k}={v}" for k, v in list(rec.summary.items())[:4] if isinstance(v, int | float | str | bool)
        )
        typer.echo(f"{rec.name:16s} {rec.status:8s} {secs:>13s}  {note}")
    report = Path(out) / "report.html"
    if report.is_file():
        typer.echo(f"report: {report}")
    empty = _empty_result_message(Path(out), cfg)
    if empty:
        typer.echo(empty, err=True)
        raise typer.Exit(code=1)


def _empty_result_message(run_dir: Path, cfg) -> str:
    """A loud message when the run ended without a ranked discovery ("" otherwise)."""
    from gapforge.discover import layout as L
    from gapforge.discover.stages import empty_screen_advice

    funnel = run_dir / L.FUNNEL
    if not funnel.is_file():
        return ""
    data = json.loads(funnel.read_text())
    if data.get("n_kept", 0) > 0:
        return ""
    return f"NO DISCOVERIES: no generated formula passed the screen for {cfg.window}. " + empty_screen_advice(
        data.get("steps", []), cfg
    )


@app.command("report")
def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by `gapforge discover`.")],
    output: Annotated[
        Path | None, typer.Option("--output", help="Page to write (default RUN/report.html).")
    ] = None,
) -> None:
    """Write RUN/report.html: candidates, parity plot, campaign traces, latent map, generator, funnel."""
    from gapforge.report import build_report

    typer.echo(str(build_report(run_dir, output)))

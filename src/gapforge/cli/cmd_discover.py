"""``gapforge discover`` (the whole pipeline) and ``gapforge report`` (the HTML page)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from gapforge.cli._app import ExecutorOpt, OverwriteOpt, app, out_option
from gapforge.cli._policy import refuse_existing

#: The stage names --until and --redo accept, in order (kept in step with DISCOVER_STAGES by a test).
STAGE_NAMES = (
    "data",
    "oracle",
    "autoencoder",
    "campaign",
    "screening_model",
    "generate",
    "screen",
    "structure",
    "relax",
    "stability",
    "dft",
    "report",
)
_STAGE_NAMES = ", ".join(STAGE_NAMES)


@app.command("discover")
def discover_cmd(
    out: Annotated[Path, out_option("Run directory (created; a rerun with the same settings resumes it).")],
    gap_min: Annotated[
        float | None,
        typer.Option(
            "--gap-min",
            help="Lower edge of the target band-gap window (eV); required unless the settings file sets it.",
        ),
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
    seed: Annotated[
        int | None, typer.Option("--seed", help="Random seed. Default: the settings file's, else 0.")
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Start afresh: delete the run directory's contents first."),
    ] = False,
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            metavar="STAGE",
            help=f"Stop after this stage; default: run every stage ({_STAGE_NAMES}).",
        ),
    ] = None,
    redo: Annotated[
        list[str] | None,
        typer.Option(
            "--redo",
            metavar="STAGE",
            help=f"Run this stage and every later one again; repeatable ({_STAGE_NAMES}).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the resolved settings and the stages; run nothing.")
    ] = False,
    fidelity: Annotated[
        str | None,
        typer.Option(
            "--fidelity",
            help="Which gap the window means: pbe (default, the paper's) or experiment "
            "(the oracle's experimental-gap head labels everything).",
        ),
    ] = None,
    executor: ExecutorOpt = None,
) -> None:
    """Run every stage, from labelled data to a ranked, relaxed candidate list and RUN/report.html.

    A rerun into the same --out resumes: completed stages are not redone, and a
    relaxation already finished is not redone either (also on another --executor).
    """
    from gapforge.discover import resolve_config
    from gapforge.discover.config import resolve_executor
    from gapforge.discover.stages import DISCOVER_STAGES, discover

    cfg = resolve_config(
        gap_min=gap_min, gap_max=gap_max, seed=seed, quick=quick, config_file=config, fidelity=fidelity
    )
    where = resolve_executor(config_file=config, executor_file=executor)
    if dry_run:
        typer.echo(json.dumps(cfg.to_dict(), indent=2))
        for stage in DISCOVER_STAGES:
            typer.echo(f"{stage.name:16s} {stage.description}")
        shown = ", ".join(f"{k}={v}" for k, v in where.to_dict().items() if v not in (None, [], ()))
        typer.echo(f"executor (not part of the run's settings): {shown}")
        return
    result = discover(out, cfg, overwrite=overwrite, until=until, redo=tuple(redo or ()), executor=where)
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
        Path | None,
        typer.Option(
            "--output",
            help="Another file to write the page to. Default: RUN/report.html, the run's own page, "
            "which is always refreshed.",
        ),
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Write RUN/report.html: candidates, parity plot, campaign traces, latent map, generator, funnel."""
    from gapforge.report import build_report

    refuse_existing(output, overwrite=overwrite)

    typer.echo(str(build_report(run_dir, output)))

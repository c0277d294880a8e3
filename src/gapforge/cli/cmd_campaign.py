"""``gapforge campaign run|resume|ask|tell|status`` and ``gapforge reproduce table1``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from gapforge.cli._app import (
    ExecutorOpt,
    OutOpt,
    OverwriteOpt,
    SeedOpt,
    WorkersOpt,
    campaign_app,
    executor_settings,
    out_option,
    reproduce_app,
)
from gapforge.cli._policy import check_table_output, refuse_existing

RunArg = Annotated[Path, typer.Argument(help="Campaign run directory.")]


def _threads(workers: int | None) -> None:
    import torch

    torch.set_num_threads(int(workers) if workers else 1)


def _print_summary(result) -> None:
    s = result.summary()
    typer.echo(
        f"{s['iterations']} iterations, {s['proposed']} proposals, "
        f"valid decodes {0 if s['valid_decode_rate'] is None else s['valid_decode_rate']:.1%}, "
        f"{s['new_labels']} new labels, {s['duplicates']} duplicates, {s['invalid']} invalid; "
        f"best {s['best_formula']} {s['best_gap']:.3f} eV"
    )
    if result.run_dir is not None:
        typer.echo(f"state in {result.run_dir}")


@campaign_app.command("run")
def run_cmd(
    config: Annotated[Path, typer.Option("--config", help="Campaign config (.yaml, .json or .toml).")],
    out: Annotated[Path, out_option("Campaign run directory (created; state saved after every iteration).")],
    overwrite: OverwriteOpt = False,
    workers: WorkersOpt = 1,
) -> None:
    """Start a campaign from a config file and run it (state saved after every iteration)."""
    from gapforge.active.campaign import run_campaign

    _threads(workers)
    _print_summary(run_campaign(config, out, overwrite=overwrite))


@campaign_app.command("resume")
def resume_cmd(
    run: RunArg,
    iterations: Annotated[
        int | None,
        typer.Option("--iterations", help="Run this many more iterations (default: up to the config's)."),
    ] = None,
    workers: WorkersOpt = 1,
) -> None:
    """Continue a campaign from its last completed iteration."""
    from gapforge.active.campaign import resume_campaign

    _threads(workers)
    _print_summary(resume_campaign(run, iterations=iterations))


@campaign_app.command("ask")
def ask_cmd(
    run: RunArg,
    output: Annotated[
        Path | None, typer.Option("--output", help="Also write the proposals to this CSV/Parquet file.")
    ] = None,
    workers: WorkersOpt = 1,
    overwrite: OverwriteOpt = False,
) -> None:
    """Write the next proposals for an external oracle to RUN/pending.csv (asking twice: same batch)."""
    from gapforge.active.campaign import Campaign
    from gapforge.io import write_table

    check_table_output(output, overwrite=overwrite)
    _threads(workers)
    camp = Campaign.open(run)
    table = camp.ask()
    if output is not None:
        write_table(table.assign(band_gap=float("nan")), output)
    for f in table["formula"]:
        typer.echo(f)
    typer.echo(
        f"{len(table)} formulas to label: fill band_gap (eV) in {run / 'pending.csv'} and run 'tell'",
        err=True,
    )


@campaign_app.command("tell")
def tell_cmd(
    run: RunArg,
    input_file: Annotated[Path, typer.Option("--input", help="Measured labels: formula, band_gap (eV).")],
) -> None:
    """Read measured band gaps of the pending proposals and complete the iteration."""
    from gapforge.active.campaign import Campaign
    from gapforge.io import read_table

    camp = Campaign.open(run)
    rec = camp.tell(read_table(input_file), path=input_file)
    typer.echo(
        f"iteration {rec.iteration}: {rec.n_labelled} labelled, {rec.n_unlabelled} left unlabelled; "
        f"best {rec.best_formula} {rec.best_gap:.3f} eV"
    )


@campaign_app.command("status")
def status_cmd(run: RunArg) -> None:
    """Show a campaign's progress."""
    from gapforge.active.state import STATE_FILE
    from gapforge.errors import InputError

    path = run / STATE_FILE
    if not path.is_file():
        raise InputError("not a campaign run directory (no state.json)", path=run)
    meta = json.loads(path.read_text())
    typer.echo(
        f"iteration {meta['iteration']}, status {meta['status']}, {meta['n_labelled']} labelled, "
        f"pending: {'yes' if meta.get('pending') else 'no'}"
    )


@reproduce_app.command("table1")
def table1_cmd(
    out: OutOpt,
    repeats: Annotated[int, typer.Option("--repeats", help="Repeats of every experiment (paper: 10).")] = 10,
    budget: Annotated[
        int, typer.Option("--budget", help="Latent proposals per AL run (paper: 1000).")
    ] = 1000,
    q: Annotated[int, typer.Option("--q", help="Latent points proposed per BO iteration.")] = 20,
    experiments: Annotated[
        str, typer.Option("--experiments", help="Comma-separated subset of exp1,exp2,exp3,exp4.")
    ] = "exp1,exp2,exp3,exp4",
    oracle: Annotated[
        str,
        typer.Option(
            "--oracle",
            help="Oracle model directory, 'oracle-exp1' (the paper's setting: Roost on mp-bandgap, "
            "the default here) or 'default' (the shipped gated oracle on every MP label).",
        ),
    ] = "oracle-exp1",
    codec: Annotated[
        str,
        typer.Option("--codec", help="'autoencoder' (shipped model), an autoencoder directory, or 'linear'."),
    ] = "autoencoder",
    pool: Annotated[
        str,
        typer.Option(
            "--pool",
            help="Screening pool: 'gan' (the paper's kind of generator), 'rnn' (the autoregressive one) "
            "or 'mp' (stand-in: MP formulas).",
        ),
    ] = "gan",
    pool_size: Annotated[int, typer.Option("--pool-size", help="Formulas in the screening pool.")] = 200_000,
    screening: Annotated[
        str,
        typer.Option(
            "--screening",
            help="Screening model of every row: forest (random forest), hgb (gradient boosting), "
            "roost (one-member Roost, the paper's choice; slower) or roost3 (three-member Roost "
            "ensemble; 3x roost).",
        ),
    ] = "forest",
    paper_sets: Annotated[
        bool,
        typer.Option(
            "--paper-sets", help="Also score the paper's own Exp2/Exp3 BS and AL training sets (PAPER-BS/AL)."
        ),
    ] = False,
    validity: Annotated[
        str,
        typer.Option(
            "--validity",
            help="What a campaign proposal must decode to before it is labelled: 'decodable' (any "
            "formula, the paper's rule) or 'smact' (also SMACT-valid).",
        ),
    ] = "decodable",
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
    workers: WorkersOpt = 1,
    executor: ExecutorOpt = None,
) -> None:
    """Reproduce the paper's Table 1 with BS, AL and random-label controls (mean ± sd over repeats).

    Every (experiment, repeat) is an independent task (in this process, or on --executor's
    workers); rows are saved as each ends and a rerun into the same --out runs only the missing ones.
    """
    from gapforge.experiments.table1 import Table1Settings, reproduce_table1

    _threads(workers)
    settings = Table1Settings(
        repeats=repeats,
        budget=budget,
        q=q,
        experiments=tuple(e.strip() for e in experiments.split(",") if e.strip()),
        oracle=oracle,
        codec=codec,
        pool=pool,
        pool_size=pool_size,
        screening=screening,
        paper_sets=paper_sets,
        validity=validity,
        seed=seed,
    )
    where = None if executor is None else executor_settings(executor)
    result = reproduce_table1(settings, out, overwrite=overwrite, executor=where)
    typer.echo(result.markdown)
    typer.echo(f"written to {out}")


@reproduce_app.command("merge-table1")
def merge_table1_cmd(
    runs: Annotated[
        list[Path],
        typer.Argument(metavar="RUN", help="Output directories of 'gapforge reproduce table1'."),
    ],
    out: OutOpt,
    overwrite: OverwriteOpt = False,
) -> None:
    """Combine table-1 runs made in parallel (e.g. one experiment each) into one table."""
    from gapforge.experiments.table1 import merge_table1

    refuse_existing(*(out / name for name in ("runs.csv", "table1.json", "table1.md")), overwrite=overwrite)

    typer.echo(merge_table1(runs, out).markdown)


@reproduce_app.command("rediscovery")
def rediscovery_cmd(
    out: OutOpt,
    draws: Annotated[int, typer.Option("--draws", help="Hold-out draws (seeds seed..seed+draws-1).")] = 5,
    holdout_fraction: Annotated[
        float, typer.Option("--holdout-fraction", help="Share of chemical systems held out per draw.")
    ] = 0.1,
    targets: Annotated[
        str,
        typer.Option("--targets", help="Windows, ';'-separated: 'LO' (open, >= LO eV) or 'LO-HI' (eV)."),
    ] = "4;2-3",
    generator_epochs: Annotated[
        int, typer.Option("--generator-epochs", help="Epochs of the retrained generator.")
    ] = 6,
    n_samples: Annotated[
        int, typer.Option("--samples", help="Generator samples per draw and target.")
    ] = 100_000,
    campaign_iterations: Annotated[int, typer.Option("--iterations", help="Campaign iterations.")] = 5,
    seed: SeedOpt = 0,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="Task workers: 1 runs the tasks in this process, N on N local Dask workers, 0 on every "
            "core (default: --executor's, else every core).",
        ),
    ] = None,
    executor: ExecutorOpt = None,
    rerank: Annotated[
        bool,
        typer.Option(
            "--rerank/--no-rerank",
            help="Then give each draw's top --rerank-candidates screen candidates structures (templates "
            "without the held-out systems), relax them with CHGNet and rank them as discover does "
            "(P(in window) x P(stable)); writes OUT/stability_rerank.md.",
        ),
    ] = False,
    rerank_candidates: Annotated[
        int | None,
        typer.Option(
            "--rerank-candidates",
            help="Top of each screen re-ranked [default: the quick preset's structure.max_candidates].",
        ),
    ] = None,
    rerank_templates: Annotated[
        int, typer.Option("--rerank-templates", help="Templates relaxed per re-ranked candidate.")
    ] = 1,
) -> None:
    """Hold out chemical systems, retrain, run discover and four controls, count held-out materials found.

    Each draw's two models, then each (draw, target) with its five rankings, are independent tasks
    on the executor (default: a local Dask cluster on every core). Resumable: a rerun with the same
    --out submits only the tasks not done yet.
    """
    from gapforge.errors import InputError
    from gapforge.experiments.rediscovery import (
        RediscoverySettings,
        RerankSettings,
        render_rerank_markdown,
        run_rediscovery,
        run_stability_rerank,
    )
    from gapforge.io import write_json, write_text

    windows = []
    for part in targets.split(";"):
        lo, _, hi = part.strip().partition("-")
        windows.append((float(lo), float(hi) if hi else None))
    settings = RediscoverySettings(
        draws=draws,
        holdout_fraction=holdout_fraction,
        seed=seed,
        targets=tuple(windows),
        generator_epochs=generator_epochs,
        n_samples=n_samples,
        campaign_iterations=campaign_iterations,
    )
    # checked before hours of draws, not after
    for flag, value in (("--rerank-candidates", rerank_candidates), ("--rerank-templates", rerank_templates)):
        if value is not None and value < 1:
            raise InputError(f"{flag} must be >= 1", value=value)
    top = {} if rerank_candidates is None else {"n_candidates": rerank_candidates}
    rerank_settings = RerankSettings(**top, templates=rerank_templates, seed=seed)
    where = executor_settings(executor, workers)
    run_rediscovery(settings, out, executor=where)
    typer.echo((Path(out) / "rediscovery.md").read_text())
    if rerank:
        summary = run_stability_rerank(
            out,
            rerank_settings,
            draws=range(draws),
            windows=settings.windows,
            executor=where,
        )
        md = render_rerank_markdown(summary, {"command": "gapforge reproduce rediscovery --rerank"})
        write_json(summary, Path(out) / "stability_rerank.json")
        write_text(md, Path(out) / "stability_rerank.md")
        typer.echo(md)

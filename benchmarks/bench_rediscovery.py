"""Rediscovery benchmark: hold out chemical systems, run discover and its controls, count what comes back.

Runs :func:`gapforge.experiments.rediscovery.run_rediscovery` into a work directory
(models, discover runs: not committed) and copies the light results into
``benchmarks/results/rediscovery/``: ``rediscovery.md`` / ``.json`` (mean ± sd over
draws, every per-run row, the command, the machine load), ``runs/*.json`` (one file
per draw, target and variant, written as each finishes) and the held-out chemical
systems of draw 0. The draws' tasks run on the executor (``--executor FILE`` or
``--workers N``; default a local Dask cluster on every core). Resumable: rerun the
same command after an interruption; only the missing tasks are submitted.

    GAPFORGE_DATA_PATH=../shared/data OMP_NUM_THREADS=1 \
        python benchmarks/bench_rediscovery.py --work /tmp/rediscovery --draws 5
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from _common import RESULTS, machine
from gapforge.executor import ExecutorSettings, load_executor_settings
from gapforge.experiments.rediscovery import (
    RediscoverySettings,
    RerankSettings,
    collect_runs,
    render_rerank_markdown,
    run_rediscovery,
    run_stability,
    run_stability_rerank,
    write_summary,
)
from gapforge.io import write_json, write_text
from gapforge.window import GapWindow


def _copy_results(work: Path, dest: Path) -> None:
    (dest / "runs").mkdir(parents=True, exist_ok=True)
    for p in (work / "runs").glob("*.json"):
        shutil.copy2(p, dest / "runs" / p.name)
    for name in ("heldout_systems_draw0.txt", "settings.json"):
        if (work / name).is_file():
            shutil.copy2(work / name, dest / name)


def _windows(text: str) -> list[GapWindow]:
    out = []
    for part in text.split(";"):
        lo, _, hi = part.strip().partition("-")
        out.append(GapWindow(float(lo), float(hi) if hi else None))
    return out


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="work directory (models, runs; not committed)")
    ap.add_argument("--results", type=Path, default=RESULTS / "rediscovery")
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--generator-epochs", type=int, default=6)
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--stability-pairs",
        type=int,
        default=0,
        help="after the draws: relax this many held-out + as many other candidates of draw 0 per "
        "--stability-windows window and measure the ROC-AUC of their energy above hull against the "
        "hull without their own formula (0: skip)",
    )
    ap.add_argument(
        "--stability-windows",
        default="4",
        help="windows of the stability measure, ';'-separated: 'LO' (>= LO eV) or 'LO-HI' (default: 4)",
    )
    ap.add_argument("--stability-only", action="store_true", help="skip the draws (they are done)")
    ap.add_argument(
        "--rerank",
        action="store_true",
        help="after the draws: give the top --rerank-candidates of each draw's screen structures, "
        "relax them, take their energy above hull (own formula left out) and rank them as discover "
        "does (P(in window) x P(stable)); writes stability_rerank.{json,md}",
    )
    ap.add_argument(
        "--rerank-candidates",
        type=int,
        default=RerankSettings.n_candidates,
        help="top of the screen re-ranked (default: the quick preset's max_candidates, %(default)s)",
    )
    ap.add_argument("--rerank-templates", type=int, default=1, help="templates relaxed per candidate (1)")
    ap.add_argument("--rerank-draws", default=None, help="draws re-ranked, comma-separated (default: all)")
    ap.add_argument("--rerank-windows", default="4;2-3", help="windows re-ranked, as --stability-windows")
    ap.add_argument(
        "--executor",
        type=Path,
        default=None,
        help="executor settings file ([executor] table or its keys): where the tasks run (default: local)",
    )
    ap.add_argument(
        "--workers",
        type=int,
        default=None,
        help="1: tasks in this process; N: N local Dask workers; 0: every core (default: every core)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = RediscoverySettings(
        draws=args.draws,
        seed=args.seed,
        n_samples=args.samples,
        generator_epochs=args.generator_epochs,
        campaign_iterations=args.iterations,
    )
    where = (
        ExecutorSettings.from_workers(args.workers)
        if args.executor is None
        else load_executor_settings(args.executor).with_workers(args.workers or None)
    )
    command = "python benchmarks/bench_rediscovery.py " + " ".join(sys.argv[1:] if argv is None else argv)
    t0 = time.time()

    def summary() -> str:
        _copy_results(args.work, args.results)
        meta = {
            "command": command,
            "machine": machine(),
            "load_average": os.getloadavg(),
            "wall_minutes_this_call": (time.time() - t0) / 60,
        }
        return write_summary(collect_runs(args.results), settings, args.results, meta)

    md = ""
    if not args.stability_only:  # every draw's tasks on one executor; resumable per task
        run_rediscovery(settings, args.work, executor=where)
        md = summary()
    if args.stability_pairs:
        for window in _windows(args.stability_windows):
            run_stability(
                args.work, draw=0, window=window, n_each=args.stability_pairs, seed=args.seed, executor=where
            )
            md = summary()
    if args.rerank:
        md = _rerank(args, where, command)
    print(md)
    return 0


def _rerank(args: argparse.Namespace, where: ExecutorSettings, command: str) -> str:
    t0, start, load0 = time.time(), datetime.now(UTC), _uptime()
    settings = RerankSettings(n_candidates=args.rerank_candidates, templates=args.rerank_templates)
    draws = [int(d) for d in args.rerank_draws.split(",")] if args.rerank_draws else list(range(args.draws))
    summary = run_stability_rerank(
        args.work, settings, draws=draws, windows=_windows(args.rerank_windows), executor=where
    )
    meta = {
        "command": command,
        "date": start.strftime("%Y-%m-%d %H:%M UTC"),
        "wall_minutes": (time.time() - t0) / 60,
        "machine": "{cpu_count} cores, {platform}, python {python}".format(**machine()),
        "uptime_start": load0,
        "uptime_end": _uptime(),
        "work": str(args.work),
    }
    _copy_results(args.work, args.results)
    write_json({**meta, **summary}, args.results / "stability_rerank.json")
    md = render_rerank_markdown(summary, meta)
    write_text(md, args.results / "stability_rerank.md")
    return md


if __name__ == "__main__":
    raise SystemExit(main())

"""Wall time of the rediscovery draws and Table 1 repeats against the number of workers (issue 20).

Both experiments are independent tasks on :mod:`gapforge.executor`. This runs a
deliberately small configuration of each, from scratch, three ways: ``serial``
(every task in this process), ``local1`` (a local Dask cluster of 1 worker) and
``local2`` (2 workers), and checks that the result tables are identical (every
column but the timings). Wall time is given with and without the start-up (the
cluster's workers started and the tasks' modules imported in each); the load
average (``os.getloadavg``) is recorded beside every figure.

- rediscovery: ``--draws`` draws of both targets (>= 4 eV, 2-3 eV) with tiny budgets,
  on a fixed random subset of the known materials (``--known`` formulas);
- table1: ``--repeats`` repeats of Exp3 (BS, AL, RND-latent, RND-known) at small size.

Writes ``results/bench_engine_campaigns.json`` and ``.md``.

Usage::

    GAPFORGE_DATA_PATH=../shared/data OMP_NUM_THREADS=1 \
        python benchmarks/bench_engine_campaigns.py --work /tmp/bench_campaigns
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from _common import write_results
from gapforge import columns as C
from gapforge.executor import ExecutorSettings, open_executor
from gapforge.experiments import rediscovery, table1

MODES = {
    "serial": ExecutorSettings.serial(),
    "local1": ExecutorSettings.local(1),
    "local2": ExecutorSettings.local(2),
}


def load() -> float:
    return round(os.getloadavg()[0], 2)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


#: What the tasks import; imported in every process before the clock runs for the tasks
#: (timed as start-up), so the tasks' wall time is the work, not first imports.
WARM_MODULES = (
    "torch",
    "botorch",
    "sklearn.ensemble",
    "gapforge.models.forest",
    "gapforge.models.formula_rnn",
    "gapforge.discover.stages",
    "gapforge.active.campaign",
    "gapforge.screening.screen",
    "gapforge.experiments.rediscovery",
    "gapforge.experiments.table1",
)


def warm_up() -> int:
    """Import what the tasks use (in this process or a worker); returns the process id."""
    import importlib

    for name in WARM_MODULES:
        importlib.import_module(name)
    return os.getpid()


def small_known(work: Path, n: int, seed: int) -> pd.DataFrame:
    """A fixed random subset of the known materials (the full table is built once and cached)."""
    known = rediscovery.build_known(work / "known_full.parquet")
    return known.sample(n=n, random_state=seed).sort_values(C.FORMULA).reset_index(drop=True)


def comparable(table: pd.DataFrame, sort: list[str]) -> pd.DataFrame:
    """The result table without timings, in a fixed order (lists made hashable)."""
    t = table.drop(columns=[c for c in table.columns if "seconds" in c or c == "seconds"])
    t = t.map(lambda v: tuple(v) if isinstance(v, list) else v)
    return t.sort_values(sort).reset_index(drop=True)


def run_rediscovery(executor, out: Path, args, known: pd.DataFrame) -> pd.DataFrame:
    settings = rediscovery.RediscoverySettings(
        draws=args.draws,
        seed=args.seed,
        generator_epochs=args.generator_epochs,
        oracle_estimators=args.oracle_estimators,
        n_samples=args.samples,
        campaign_iterations=args.iterations,
        campaign_batch=args.batch,
        screening_estimators=args.screening_estimators,
    )
    rows = rediscovery.run_rediscovery(settings, out, executor=executor, known=known)
    return comparable(rows, ["draw", "target", "variant"])


def run_table1(executor, out: Path, args, known: Any) -> pd.DataFrame:
    settings = table1.Table1Settings(
        repeats=args.repeats,
        budget=args.budget,
        q=args.q,
        experiments=("exp3",),
        pool_size=args.pool_size,
        n_estimators=args.n_estimators,
        seed=args.seed,
    )
    result = table1.reproduce_table1(settings, out, overwrite=True, executor=executor)
    return comparable(result.runs, ["experiment", "variant", "repeat"])


def task_seconds(what: str, out: Path) -> float:
    """Sum of the wall times measured inside the tasks: grows with workers when the cores are not free."""
    if what == "rediscovery":
        files = (out / "work" / "tasks").glob("*.json")
        return round(sum(json.loads(p.read_text())["result"]["seconds"] for p in files), 1)
    runs = pd.read_csv(out / "runs.csv")  # Table 1 times its evaluations and the AL campaign only
    return round(float(runs["seconds"].sum() + runs.get("campaign_seconds", pd.Series(0.0)).sum()), 1)


def one(what: str, mode: str, args, known) -> tuple[dict, pd.DataFrame]:
    out = args.work / f"{what}_{mode}"
    if out.exists():
        shutil.rmtree(out)
    fn = run_rediscovery if what == "rediscovery" else run_table1
    before = load()
    t0 = time.perf_counter()
    startup = 0.0
    if mode == "serial":
        warm_up()  # a no-op after the first mode: this process stays warm
        startup = time.perf_counter() - t0
        table = fn(MODES[mode], out, args, known)
    else:
        with open_executor(MODES[mode], make_current=False) as ex:
            ex.client.wait_for_workers(MODES[mode].workers, timeout=120)
            ex.client.run(warm_up)
            startup = time.perf_counter() - t0
            table = fn(ex, out, args, known)
    wall = time.perf_counter() - t0
    rec = {
        "what": what,
        "mode": mode,
        "workers": 0 if mode == "serial" else MODES[mode].workers,
        "wall_s": round(wall, 1),
        "startup_s": round(startup, 1),
        "tasks_wall_s": round(wall - startup, 1),
        "sum_in_task_s": task_seconds(what, out),
        "rows": len(table),
        "load_before": before,
        "load_after": load(),
    }
    print(rec, flush=True)
    return rec, table


def markdown(records: list[dict], meta: dict) -> str:
    lines = [
        "# Rediscovery draws and Table 1 repeats as tasks: wall time against workers",
        "",
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']}",
        f"- `uptime` before: `{meta['uptime_before']}`; after: `{meta['uptime_after']}`",
        f"- rediscovery: {meta['rediscovery']}",
        f"- table1: {meta['table1']}",
        "- wall = start-up + tasks; start-up = the cluster's workers started and the tasks' modules "
        "imported in each (serial: in this process; warm after the first mode). Speed-up = serial / this. "
        "Load = 1-min load average before / after the run (2 cores; other jobs shared them).",
        "",
        "- sum in tasks = the wall times measured inside the tasks, summed: it stays flat as workers "
        "are added when each has a free core, and grows when they share one (Table 1: its evaluations "
        "and AL campaigns; the random-latent campaign is not timed).",
        "",
        "| experiment | mode | wall (s) | start-up (s) | tasks (s) | speed-up (wall) | speed-up (tasks) "
        "| sum in tasks (s) | rows | identical to serial | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    serial = {r["what"]: r for r in records if r["mode"] == "serial"}
    for r in records:
        s = serial.get(r["what"])
        up = f"{s['wall_s'] / r['wall_s']:.2f}" if s else "-"
        up_t = f"{s['tasks_wall_s'] / r['tasks_wall_s']:.2f}" if s else "-"
        lines.append(
            f"| {r['what']} | {r['mode']} | {r['wall_s']:.1f} | {r['startup_s']:.1f} | "
            f"{r['tasks_wall_s']:.1f} | {up} | {up_t} | {r['sum_in_task_s']:.1f} | {r['rows']} | "
            f"{r.get('identical', '-')} | "
            f"{r['load_before']} / {r['load_after']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="scratch directory (runs are redone there)")
    ap.add_argument("--what", nargs="+", default=["rediscovery", "table1"], choices=["rediscovery", "table1"])
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="bench_engine_campaigns")
    g = ap.add_argument_group("rediscovery (small)")
    g.add_argument("--draws", type=int, default=4)
    g.add_argument("--known", type=int, default=8000, help="known formulas (random subset)")
    g.add_argument("--generator-epochs", type=int, default=1)
    g.add_argument("--oracle-estimators", type=int, default=10)
    g.add_argument("--samples", type=int, default=3000)
    g.add_argument("--iterations", type=int, default=2)
    g.add_argument("--batch", type=int, default=5)
    g.add_argument("--screening-estimators", type=int, default=20)
    g = ap.add_argument_group("table1 (small)")
    g.add_argument("--repeats", type=int, default=4)
    g.add_argument("--budget", type=int, default=120)
    g.add_argument("--q", type=int, default=20)
    g.add_argument("--pool-size", type=int, default=3000)
    g.add_argument("--n-estimators", type=int, default=20)
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    given = sys.argv[1:] if argv is None else argv
    command = "python benchmarks/bench_engine_campaigns.py " + " ".join(given)
    meta = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "uptime_before": uptime(),
        "rediscovery": {
            k: getattr(args, k)
            for k in (
                "draws",
                "known",
                "generator_epochs",
                "oracle_estimators",
                "samples",
                "iterations",
                "batch",
                "screening_estimators",
            )
        }
        | {"targets": "≥ 4 eV and 2-3 eV"},
        "table1": {k: getattr(args, k) for k in ("repeats", "budget", "q", "pool_size", "n_estimators")}
        | {"experiments": "exp3"},
    }
    known = small_known(args.work, args.known, args.seed) if "rediscovery" in args.what else None
    records: list[dict] = []
    for what in args.what:
        reference = None
        for mode in args.modes:
            rec, table = one(what, mode, args, known)
            if reference is None:
                reference = table
                rec["identical"] = "(reference)"
            else:
                try:
                    pd.testing.assert_frame_equal(table, reference)
                    rec["identical"] = "yes"
                except AssertionError as exc:
                    rec["identical"] = "NO"
                    rec["difference"] = str(exc).splitlines()[:6]
            records.append(rec)
    meta["uptime_after"] = uptime()
    md = markdown(records, meta)
    write_results(args.name, {**meta, "records": records}, md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

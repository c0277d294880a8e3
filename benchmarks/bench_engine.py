"""Benchmark of the executor seam (issue 20): speed-up, per-task overhead, CPU time in a worker.

Writes ``results/bench_engine.json`` and ``results/bench_engine.md``:

1. 16 CHGNet relaxations (cells of 4-24 atoms built from the shipped CIFs in
   ``tests/files/executor``, strained and rattled with a fixed seed) serially in
   this process and on a local Dask cluster of ``--workers`` workers; wall time
   with and without the cluster's start-up, energies compared bit for bit;
2. the engine's overhead per task: a trivial task through ``run_tasks`` on the
   open cluster (and serially), minus the task's own time;
3. the relaxations' CPU time in a worker against the same tasks serially, and
   (``--malloc-control``) on workers left with Dask's default
   ``MALLOC_TRIM_THRESHOLD_=65536``, which gapforge removes.

The load average (``os.getloadavg``) is recorded beside every figure: other
jobs share the machine.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_engine.py --workers 2 --repeats 2 --malloc-control
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from _common import write_results
from gapforge.executor import DaskExecutor, ExecutorSettings, open_executor, run_tasks
from gapforge.structure.relax import RelaxItem, RelaxSettings, relax_task, warm_up_chgnet

CIFS = Path(__file__).resolve().parents[1] / "tests" / "files" / "executor"


def structures(seed: int = 0) -> list[Structure]:
    """16 cells of 4-24 atoms: 4 rock salts x (primitive x2, conventional, x2, x3), strained and rattled."""
    rng = np.random.default_rng(seed)
    out = []
    for cif in sorted(CIFS.glob("*.cif")):
        prim = Structure.from_file(cif)
        conv = prim.to_conventional()
        for cell in (prim * (2, 1, 1), conv, conv * (2, 1, 1), conv * (3, 1, 1)):
            s = cell.copy()
            s.apply_strain(rng.uniform(0.02, 0.05))
            s.perturb(0.08, min_distance=0.02)
            out.append(s)
    return out


def timed_relax(item: RelaxItem, settings: RelaxSettings) -> dict:
    """The relax task, with the CPU time it took in the process that ran it."""
    cpu = time.process_time()
    wall = time.perf_counter()
    res = relax_task(item, settings)
    return {
        "energy_per_atom": res.energy_per_atom,
        "steps": res.steps,
        "cpu_s": time.process_time() - cpu,
        "wall_s": time.perf_counter() - wall,
        "pid": os.getpid(),
    }


def trivial(x: int) -> int:
    return x


def load() -> float:
    return round(os.getloadavg()[0], 2)


def relax_run(executor, items, settings) -> dict:
    import functools

    load0 = load()
    t0 = time.perf_counter()
    run = run_tasks(
        functools.partial(timed_relax, settings=settings),
        items,
        executor=executor,
        cost=lambda item: len(item.structure),  # as run_relaxations: biggest first
        desc="bench",
    )
    wall = time.perf_counter() - t0
    res = run.results
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(sum(r["cpu_s"] for r in res), 2),
        "energies": [r["energy_per_atom"] for r in res],
        "steps": [r["steps"] for r in res],
        "load_before": load0,
        "load_after": load(),
    }


def overhead(executor, n: int) -> dict:
    t0 = time.perf_counter()
    for i in range(n):
        trivial(i)
    direct = time.perf_counter() - t0
    load0 = load()
    t0 = time.perf_counter()
    run_tasks(trivial, range(n), executor=executor, desc="overhead")
    wall = time.perf_counter() - t0
    return {"n": n, "ms_per_task": round(1000 * (wall - direct) / n, 3), "load": load0}


def dask_default_cluster(workers: int):
    """A LocalCluster with Dask's own worker environment (MALLOC_TRIM_THRESHOLD_=65536): the control."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=":0")
    client = Client(cluster, set_as_default=False)
    return cluster, client


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=60)
    p.add_argument("--overhead-tasks", type=int, default=500)
    p.add_argument("--malloc-control", action="store_true")
    p.add_argument("--name", default="bench_engine")
    args = p.parse_args()

    settings = RelaxSettings(max_steps=args.max_steps)
    items = [RelaxItem(s) for s in structures()]
    sizes = [len(it.structure) for it in items]
    warm_up_chgnet()  # the serial side's model load is not part of its relaxations either
    reps = []
    for rep in range(args.repeats):
        print(f"repeat {rep + 1}/{args.repeats}: serial", file=sys.stderr)
        serial = relax_run(ExecutorSettings.serial(), items, settings)
        print("local cluster", file=sys.stderr)
        t0 = time.perf_counter()
        load_start = load()
        with open_executor(ExecutorSettings.local(args.workers)) as ex:
            ex.prepare("bench-warm", warm_up_chgnet)
            startup = time.perf_counter() - t0
            local = relax_run(ex, items, settings)
            ovh_local = overhead(ex, args.overhead_tasks)
        ovh_serial = overhead(ExecutorSettings.serial(), args.overhead_tasks)
        entry = {
            "serial": serial,
            "local": {**local, "startup_s": round(startup, 2), "load_at_start": load_start},
            "identical_energies": serial["energies"] == local["energies"]
            and serial["steps"] == local["steps"],
            "overhead_local": ovh_local,
            "overhead_serial": ovh_serial,
        }
        if args.malloc_control:
            print("control: Dask's default worker environment", file=sys.stderr)
            cluster, client = dask_default_cluster(args.workers)
            try:
                ex = DaskExecutor(client, ExecutorSettings.local(args.workers))
                ex.prepare("bench-warm", warm_up_chgnet)
                entry["dask_default_env"] = relax_run(ex, items, settings)
                entry["dask_default_env"]["malloc_setting"] = sorted(
                    set(client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values())
                )
            finally:
                client.close()
                cluster.close()
        reps.append(entry)
        print(
            f"  serial {serial['wall_s']} s, local {local['wall_s']} s (+{startup:.1f} s start-up), "
            f"overhead {ovh_local['ms_per_task']} ms/task",
            file=sys.stderr,
        )

    def stat(values):
        return {
            "mean": round(statistics.mean(values), 3),
            "sd": round(statistics.stdev(values), 3) if len(values) > 1 else None,
        }

    ratio = [r["local"]["wall_s"] / r["serial"]["wall_s"] for r in reps]
    ratio_start = [(r["local"]["wall_s"] + r["local"]["startup_s"]) / r["serial"]["wall_s"] for r in reps]
    cpu_ratio = [r["local"]["cpu_s"] / r["serial"]["cpu_s"] for r in reps]
    summary = {
        "wall_ratio_local_over_serial": stat(ratio),
        "wall_ratio_including_startup": stat(ratio_start),
        "cpu_ratio_worker_over_serial": stat(cpu_ratio),
        "overhead_ms_per_task_local": stat([r["overhead_local"]["ms_per_task"] for r in reps]),
        "overhead_ms_per_task_serial": stat([r["overhead_serial"]["ms_per_task"] for r in reps]),
        "identical_energies_every_repeat": all(r["identical_energies"] for r in reps),
    }
    if args.malloc_control:
        summary["cpu_ratio_dask_default_env_over_serial"] = stat(
            [r["dask_default_env"]["cpu_s"] / r["serial"]["cpu_s"] for r in reps]
        )
    command = "OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "") + " python " + " ".join(sys.argv)
    payload = {
        "command": command,
        "n_structures": len(items),
        "atoms": sizes,
        "settings": {"max_steps": args.max_steps, "workers": args.workers, "repeats": args.repeats},
        "summary": summary,
        "repeats": reps,
    }
    lines = [
        "# Executor benchmark (issue 20)",
        "",
        f"`{command}`  ",
        f"{len(items)} CHGNet relaxations (cells of {min(sizes)}-{max(sizes)} atoms, at most "
        f"{args.max_steps} FIRE steps) serially and on a local Dask cluster of {args.workers} workers "
        "x 1 thread; load average (1 min) beside each figure: other jobs shared the 2 cores.",
        "",
        "| repeat | serial wall (s) | local wall (s) | local start-up (s) | ratio | serial CPU (s) | "
        "worker CPU (s) | CPU ratio | overhead local (ms/task) | overhead serial (ms/task) | identical | "
        "load (serial / local) |" + (" Dask-default-env CPU (s) |" if args.malloc_control else ""),
        "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if args.malloc_control else ""),
    ]
    for i, r in enumerate(reps, 1):
        s, loc = r["serial"], r["local"]
        row = (
            f"| {i} | {s['wall_s']} | {loc['wall_s']} | {loc['startup_s']} | "
            f"{loc['wall_s'] / s['wall_s']:.2f} | "
            f"{s['cpu_s']} | {loc['cpu_s']} | {loc['cpu_s'] / s['cpu_s']:.2f} | "
            f"{r['overhead_local']['ms_per_task']} | {r['overhead_serial']['ms_per_task']} | "
            f"{r['identical_energies']} | {s['load_before']}-{s['load_after']} / "
            f"{loc['load_before']}-{loc['load_after']} |"
        )
        if args.malloc_control:
            row += f" {r['dask_default_env']['cpu_s']} (load {r['dask_default_env']['load_before']}) |"
        lines.append(row)
    lines += ["", "Summary (mean ± sd over repeats):", ""]
    for k, v in summary.items():
        lines.append(
            f"- {k}: {v['mean'] if isinstance(v, dict) else v}"
            + (f" ± {v['sd']}" if isinstance(v, dict) and v["sd"] is not None else "")
        )
    write_results(args.name, payload, "\n".join(lines))


if __name__ == "__main__":
    main()

"""Benchmark: how the band-gap models' test error falls with the number of training formulas.

Usage::

    GAPFORGE_DATA_PATH=../shared/data OMP_NUM_THREADS=1 python benchmarks/bench_learning_curve.py \
        --models roost rf --fractions 0.075 0.15 0.3 0.6 --seed 0 [--roost-members 1]

The table is mp-bandgap minus test-500, split 60/20/20 with the seed as in
``bench_models.py``; validation (Roost's early stopping) and test parts stay
fixed and the training part is cut to ``fraction`` of the whole table (0.6 =
all of it). For each model the script fits ``MAE = a * n**-b`` (a power law
without floor, the optimistic reading) to the points and reports how many
training formulas it would need for the oracle goal of issue 3 (test MAE
<= 0.30 eV), next to the 42,169 formulas that exist.

Writes ``benchmarks/results/bench_learning_curve.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from gapforge import columns as C
from gapforge.data import load_dataset, split_dataset
from gapforge.data.splits import Split
from gapforge.models.registry import evaluate_on, fit_on_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_models import make_model

log = logging.getLogger("bench_learning_curve")
RESULTS = Path(__file__).parent / "results"
GOAL_MAE = 0.30


def power_law(n: np.ndarray, mae: np.ndarray) -> dict[str, float]:
    """Least-squares fit of ``log MAE = log a - b log n``; ``n`` needed for the goal."""
    b, log_a = np.polyfit(np.log(n), np.log(mae), 1)
    a, b = float(np.exp(log_a)), float(-b)
    need = (a / GOAL_MAE) ** (1 / b) if b > 0 else float("inf")
    return {"a": a, "b": b, "n_for_goal": need}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["roost", "rf"])
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.075, 0.15, 0.3, 0.6])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--roost-members", type=int, default=1)
    ap.add_argument("--roost-epochs", type=int, default=40)
    ap.add_argument("--roost-patience", type=int, default=6)
    ap.add_argument("--out", type=Path, default=RESULTS / "bench_learning_curve")
    args = ap.parse_args()
    if any(not 0 < f <= 0.6 for f in args.fractions):
        ap.error("fractions must be in (0, 0.6]")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    full = load_dataset("mp-bandgap")
    t500 = load_dataset("test-500")
    data = full[~full[C.FORMULA].isin(set(t500[C.FORMULA]))].reset_index(drop=True)
    split = split_dataset(data, (0.6, 0.2, 0.2), args.seed)
    rows = []
    for name in args.models:
        for f in sorted(args.fractions):
            n = round(f * len(data))
            part = Split(split.train.iloc[:n].reset_index(drop=True), split.val, split.test)
            model = make_model(name, args.seed, args)
            t = time.perf_counter()
            fit_on_split(model, part)
            seconds = time.perf_counter() - t
            m = evaluate_on(model, split.test).metrics.to_dict()
            rows.append({"model": name, "fraction": f, "n_train": n, "seconds": round(seconds, 1), **m})
            log.info("%s n=%d: %s", name, n, m)
    fits = {}
    for name in args.models:
        pts = [r for r in rows if r["model"] == name]
        if len(pts) >= 2:
            fits[name] = power_law(
                np.array([r["n_train"] for r in pts]), np.array([r["mae_eV"] for r in pts])
            )
    record = {
        "command": shlex.join(["python", "benchmarks/bench_learning_curve.py", *sys.argv[1:]]),
        "load_average_at_start": os.getloadavg(),
        "n_rows": len(data),
        "seed": args.seed,
        "roost": {
            "members": args.roost_members,
            "epochs": args.roost_epochs,
            "patience": args.roost_patience,
        },
        "goal_mae_eV": GOAL_MAE,
        "rows": rows,
        "power_law_fits": fits,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(record))
    print(f"wrote {args.out.with_suffix('.md')}")


def markdown(r: dict[str, Any]) -> str:
    lines = [
        "# Band-gap models: test error against training-set size",
        "",
        f"`{r['command']}`. mp-bandgap minus test-500 ({r['n_rows']:,} rows), split 60/20/20 with seed "
        f"{r['seed']}; validation and test parts fixed, the training part cut to a fraction of the table. "
        f"Roost: {r['roost']['members']} member(s), <= {r['roost']['epochs']} epochs, patience "
        f"{r['roost']['patience']}, compact widths.",
        "",
        "| model | fraction | training formulas | test MAE (eV) | test RMSE (eV) | test R² "
        "| train time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for x in r["rows"]:
        lines.append(
            f"| {x['model']} | {x['fraction']:g} | {x['n_train']:,} | {x['mae_eV']:.3f} | {x['rmse_eV']:.3f} "
            f"| {x['r2']:.3f} | {x['seconds']:.0f} |"
        )
    lines += [
        "",
        f"Power law `MAE = a n^-b` fitted to each model's points; training formulas it would need for "
        f"test MAE <= {r['goal_mae_eV']} eV (issue 3's oracle goal), against the {r['n_rows']:,} that exist:",
        "",
        "| model | a | b | formulas for the goal |",
        "|---|---|---|---|",
    ]
    for name, fit in r["power_law_fits"].items():
        lines.append(f"| {name} | {fit['a']:.2f} | {fit['b']:.3f} | {fit['n_for_goal']:,.0f} |")
    lines += [
        "",
        "A power law without a floor is the optimistic reading: error curves flatten as they approach "
        "the noise of the labels (one PBE gap per composition, though polymorphs of a composition "
        "can differ in gap).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

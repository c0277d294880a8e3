"""Speed and coverage of the hull reference (mp-e-form on the MP2020 scale).

1. Speed: the reference is built once (parse of 132,752 rows), then
   ``e_above_hull`` is called for ``--n`` compositions of ``mp-bandgap`` (real
   chemical systems; formation energy: the known one + 0.05 eV/atom) in a cold
   cache, then again in a warm one.
2. Coverage on discover runs given with ``--run`` (read only): every relaxed
   candidate of ``RUN/structure/relaxed.csv`` placed against the hull (CHGNet
   energy -> formation energy with the MP 2023 elemental references): how many
   get a finite energy above hull, their decomposition, how many land more than
   0.05 eV/atom below it.

Usage::

    GAPFORGE_DATA_PATH=../shared/data python benchmarks/bench_hull.py --n 2000 --run /tmp/d16/wide6
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, publish, quoted_command
from gapforge.data import load_dataset
from gapforge.structure.hull import HullReference
from gapforge.structure.stability import formation_energy_per_atom, load_elemental_references


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run", type=Path, action="append", default=[])
    p.add_argument("--name", default="hull")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    ref = HullReference.from_dataset()
    t_build = time.perf_counter() - t0
    formulas = load_dataset("mp-bandgap")["formula"].sample(n=args.n, random_state=args.seed).tolist()
    energies = [ref.formation_energy(f) + 0.05 for f in formulas]
    energies = [e if np.isfinite(e) else -1.0 for e in energies]
    t1 = time.perf_counter()
    cold = ref.e_above_hull_many(formulas, energies)
    t_cold = time.perf_counter() - t1
    t2 = time.perf_counter()
    ref.e_above_hull_many(formulas, energies)
    t_warm = time.perf_counter() - t2
    n_systems = len({frozenset(r.decomposition) for r in cold})
    speed = {
        "n": args.n,
        "build_s": t_build,
        "cold_s": t_cold,
        "cold_ms_per_candidate": 1000 * t_cold / args.n,
        "warm_ms_per_candidate": 1000 * t_warm / args.n,
        "share_finite": float(np.mean([np.isfinite(r.e_above_hull) for r in cold])),
        "n_distinct_decompositions": n_systems,
    }
    runs = []
    refs = load_elemental_references()
    for run in args.run:
        t = pd.read_csv(run / "structure" / "relaxed.csv", keep_default_na=False, na_values=[""])
        t = t[pd.to_numeric(t["energy_per_atom"], errors="coerce").notna()]
        rows = []
        for f, e in zip(t["formula"], t["energy_per_atom"], strict=True):
            ef = formation_energy_per_atom(f, float(e), refs)
            r = ref.e_above_hull(f, ef)
            rows.append(
                {
                    "formula": f,
                    "e_form": ef,
                    "e_above_hull": r.e_above_hull,
                    "hull_known_phases": r.n_known_phases,
                    "decomposition": r.decomposition_text,
                    "below_known_hull": r.below_known_hull,
                }
            )
        runs.append({"run": str(run), "n_relaxed": len(rows), "rows": rows})
    payload = {
        "command": command_line(),
        "speed": speed,
        "runs": runs,
        "load_average": os.getloadavg(),
    }
    lines = [
        "# Hull reference: speed and coverage",
        "",
        f"{quoted_command(payload['command'])} (load average {payload['load_average'][0]:.1f}, "
        "other helpers' jobs running)",
        "",
        "| build (s) | candidates | cold cache (ms each) | warm cache (ms each) | finite |",
        "|---|---|---|---|---|",
        f"| {t_build:.1f} | {args.n} | {speed['cold_ms_per_candidate']:.1f} "
        f"| {speed['warm_ms_per_candidate']:.2f} | {speed['share_finite']:.1%} |",
    ]
    for r in runs:
        n_fin = sum(np.isfinite(x["e_above_hull"]) for x in r["rows"])
        n_below = sum(bool(x["below_known_hull"]) for x in r["rows"])
        lines += [
            "",
            f"Run `{r['run']}`: {r['n_relaxed']} relaxed candidates, {n_fin} with a finite energy above "
            f"hull, {n_below} more than 0.05 eV/atom below it.",
            "",
            "| formula | e_form | e_above_hull | known phases | decomposition |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {x['formula']} | {x['e_form']:.3f} | {x['e_above_hull']:.3f} | {x['hull_known_phases']} "
            f"| {x['decomposition']} |"
            for x in r["rows"]
        ]
    publish(args.name, payload, lines)


if __name__ == "__main__":
    main()

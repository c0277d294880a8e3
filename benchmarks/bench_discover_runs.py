"""What finished ``gapforge discover`` runs hand the user, side by side (for the quick-preset notes).

Per run (``--run NAME=RUN_DIR``): ranked discoveries, how many have an energy above hull, how
many lie within 0.1 eV/atom of the hull (all, and among the first 20 of the ranked list), how
many are molecular crystals (``dimensionality`` 0), the relax stage's FIRE steps and summed
relaxation wall time over every relaxed template, and the first five formulas. With two runs of
the same screen (``--pair A B``) also the candidates whose energy above hull moved by more than
0.01 eV/atom. Writes ``results/NAME.{json,md}``.

    python benchmarks/bench_discover_runs.py --run rls=/work/runs/quick_s6/q4 \\
        --run increments=/work/runs/vol/q4inc/run --pair rls increments --name discover_volume_q4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, command_line
from gapforge import columns as C
from gapforge.discover import layout as L
from gapforge.io import read_table, write_json, write_text

WITHIN = 0.1
FIRST = 20


def summarise(run: Path) -> dict:
    d = read_table(run / L.DISCOVERIES).sort_values(L.RANK)
    relaxed = read_table(run / "structure" / "relaxed_all.csv")
    e, first = d[C.E_ABOVE_HULL], d.head(FIRST)
    return {
        "ranked": len(d),
        "with_e_above_hull": int(e.notna().sum()),
        "within_0.1": int((e <= WITHIN).sum()),
        "within_0.1_first20": int((first[C.E_ABOVE_HULL] <= WITHIN).sum()),
        "molecular": int((d[C.DIMENSIONALITY] == 0).sum()),
        "molecular_first20": int((first[C.DIMENSIONALITY] == 0).sum()),
        "relax_steps": float(relaxed[C.RELAX_STEPS].sum()),
        "relax_wall_time_s_summed": float(relaxed[C.WALL_TIME_S].sum()),
        "first_five": [f"{r[C.FORMULA]} ({r[C.E_ABOVE_HULL]:.3f})" for _, r in d.head(5).iterrows()],
    }


def paired(a: Path, b: Path) -> dict:
    ea = read_table(a / L.DISCOVERIES).set_index(C.FORMULA)[C.E_ABOVE_HULL]
    eb = read_table(b / L.DISCOVERIES).set_index(C.FORMULA)[C.E_ABOVE_HULL]
    both = pd.concat([ea, eb], axis=1, keys=["a", "b"], join="inner").dropna()
    diff = both["b"] - both["a"]
    return {
        "n_shared": len(both),
        "lower_in_b": sorted(diff.index[diff < -0.01]),
        "higher_in_b": sorted(diff.index[diff > 0.01]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", action="append", required=True, help="NAME=RUN_DIR (repeatable)")
    p.add_argument("--pair", nargs=2, metavar=("A", "B"), help="two run names with the same screen")
    p.add_argument("--name", required=True, help="results/NAME.{json,md}")
    args = p.parse_args()
    runs = dict(r.split("=", 1) for r in args.run)
    res: dict = {"command": command_line(), "runs": {k: summarise(Path(v)) for k, v in runs.items()}}
    if args.pair:
        res["pair"] = {"a": args.pair[0], "b": args.pair[1], **paired(*(Path(runs[n]) for n in args.pair))}
    lines = [
        "# Discover runs side by side",
        "",
        f"Command: `{res['command']}`",
        "",
        "| run | ranked | with e_above_hull | within 0.1 (all / first 20) | 0D (all / first 20) "
        "| FIRE steps | relaxation wall, summed (s) | first five |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k, s in res["runs"].items():
        lines.append(
            f"| {k} | {s['ranked']} | {s['with_e_above_hull']} "
            f"| {s['within_0.1']} / {s['within_0.1_first20']} "
            f"| {s['molecular']} / {s['molecular_first20']} | {s['relax_steps']:.0f} "
            f"| {s['relax_wall_time_s_summed']:.0f} | {', '.join(s['first_five'])} |"
        )
    if "pair" in res:
        q = res["pair"]
        lines += [
            "",
            f"{q['b']} against {q['a']}, {q['n_shared']} shared formulas: energy above hull lower by more "
            f"than 0.01 eV/atom for {len(q['lower_in_b'])} ({', '.join(q['lower_in_b'])}), higher for "
            f"{len(q['higher_in_b'])} ({', '.join(q['higher_in_b'])}).",
        ]
    text = "\n".join(lines) + "\n"
    write_json(res, RESULTS / f"{args.name}.json")
    write_text(text, RESULTS / f"{args.name}.md")
    print(text)


if __name__ == "__main__":
    main()

"""How common are molecular crystals among known materials of a gap window, and among discoveries?

The relax stage writes each kept structure's bonded-network dimensionality
(``gapforge.structure.pipeline.bonded_dimensionality``: 0 molecular, 1 chains, 2 layers,
3 framework). This script measures the same quantity on the real Materials Project
structures of the template library in each window (``band_gap`` column, PBE), so that the
share of 0D candidates in a discover run can be read against the known materials of the
window, and optionally on the ``stability/discoveries.csv`` of discover runs.

    GAPFORGE_DATA_PATH=../shared/data python benchmarks/bench_dimensionality.py \
        --run 4=RUN_GE4 --run 2-3=RUN_2_3

Writes ``results/dimensionality.{json,md}``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from _common import command_line, publish, quoted_command, run_facts
from gapforge import columns as C
from gapforge.discover.layout import DISCOVERIES
from gapforge.structure.library import load_library
from gapforge.structure.pipeline import bonded_dimensionality
from gapforge.structure.substitution import read_cif
from gapforge.window import GapWindow

WINDOWS = {"4": GapWindow(4.0, None), "2-3": GapWindow(2.0, 3.0)}
LABELS = ("0D", "1D", "2D", "3D", "n/a")


def shares(dims: list[float]) -> dict[str, float]:
    """Share of each dimensionality (``n/a`` where the analysis gave none)."""
    arr = np.asarray(dims, dtype=float)
    n = max(len(arr), 1)
    out = {f"{d}D": float(np.sum(arr == d)) / n for d in range(4)}
    out["n/a"] = float(np.sum(np.isnan(arr))) / n
    return out


def known(window: GapWindow, max_e_above_hull: float) -> dict:
    lib = load_library(max_e_above_hull=max_e_above_hull).table
    gap = pd.to_numeric(lib[C.BAND_GAP], errors="coerce")  # PBE, eV
    rows = lib[window.contains(gap.to_numpy())]
    dims = []
    for cif in tqdm(rows[C.CIF], desc=f"known {window}", disable=None):
        from pymatgen.core import Structure

        dim = bonded_dimensionality(Structure.from_str(cif, fmt="cif"))
        dims.append(np.nan if dim is None else dim)
    zero = [f for f, d in zip(rows[C.REDUCED_FORMULA], dims, strict=True) if d == 0]
    return {"n": len(rows), "shares": shares(dims), "zero_d_examples": zero[:15]}


def discovered(run: Path) -> dict:
    table = pd.read_csv(run / DISCOVERIES)
    rel = pd.read_csv(run / "structure" / "relaxed.csv")
    dims = []
    for path in rel[C.RELAXED_CIF_PATH].dropna():
        dim = bonded_dimensionality(read_cif(run / "structure" / path))
        dims.append(np.nan if dim is None else dim)
    return {"run": str(run), "n_discoveries": len(table), "n_relaxed": len(dims), "shares": shares(dims)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", default=[], help="WINDOW=RUN_DIR (WINDOW: 4 or 2-3)")
    ap.add_argument("--max-e-above-hull", type=float, default=0.1, help="known materials: eV/atom")
    args = ap.parse_args()
    start = time.time()
    out: dict = {"command": command_line(), "known": {}, "discover": {}}
    for key, window in WINDOWS.items():
        out["known"][key] = known(window, args.max_e_above_hull)
    for spec in args.run:
        key, run = spec.split("=", 1)
        out["discover"].setdefault(key, []).append(discovered(Path(run)))
    out.update(run_facts(start))
    lines = [
        "# Bonded-network dimensionality: known materials of a window vs discover's relaxed candidates",
        "",
        quoted_command(out["command"]),
        "",
        f"{time.strftime('%Y-%m-%d')}, {out['seconds']:.0f} s, load {out['load_average'][0]:.1f}. "
        "Larsen et al. 2019 on CrystalNN bonds (`structure.pipeline.bonded_dimensionality`). Known: the "
        f"template library's MP structures within {args.max_e_above_hull} eV/atom of the hull, PBE gap in "
        "the window. Discover: every relaxed candidate structure kept by the relax stage.",
        "",
        "| window | set | n | " + " | ".join(LABELS) + " |",
        "|---|---|---|" + "---|" * len(LABELS),
    ]
    for key in WINDOWS:
        k = out["known"][key]
        lines.append(
            f"| {key} | known (MP) | {k['n']} | " + " | ".join(f"{k['shares'][c]:.2f}" for c in LABELS) + " |"
        )
        for d in out["discover"].get(key, []):
            lines.append(
                f"| {key} | `{Path(d['run']).name}` | {d['n_relaxed']} | "
                + " | ".join(f"{d['shares'][c]:.2f}" for c in LABELS)
                + " |"
            )
    lines += ["", "0D known examples: " + "; ".join(
        f"{key}: {', '.join(out['known'][key]['zero_d_examples'])}" for key in WINDOWS)]  # fmt: skip
    publish("dimensionality", out, lines)


if __name__ == "__main__":
    main()

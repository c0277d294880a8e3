"""GPAW PBE band gaps of small known materials next to their Materials Project gaps.

Takes a handful of 2-atom materials from the template library
(``shared/data/structures/mp_template_library.csv.gz``; MP-relaxed PBE cells),
runs ``gapforge``'s DFT stage on them with its default protocol, and writes
``bench_dft.json`` and ``bench_dft.md`` (GPAW gap, MP gap, difference, wall time).

Each structure is one serial GPAW process (GPAW built without MPI); BLAS may use
the second core. The machine's load average is recorded beside the timings.

Usage::

    python benchmarks/bench_dft.py                      # default 6 materials, default settings
    python benchmarks/bench_dft.py --ids mp-22862 mp-1519 --ecut 300
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from gapforge.io import write_json, write_text
from gapforge.structure import dft

HERE = Path(__file__).resolve().parent
LIBRARY = HERE.parent.parent / "shared" / "data" / "structures" / "mp_template_library.csv.gz"

#: Small (2-atom), non-magnetic, light-to-medium materials spanning 0.8-6.3 eV MP gaps.
DEFAULT_IDS = (
    "mp-22905",  # LiCl, rock salt
    "mp-22862",  # NaCl, rock salt
    "mp-1500",  # BaS, rock salt
    "mp-1958",  # SrTe, rock salt
    "mp-1519",  # CaTe, rock salt
    "mp-19717",  # PbTe, rock salt
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", nargs="+", default=list(DEFAULT_IDS), help="MP ids from the library.")
    parser.add_argument("--library", type=Path, default=LIBRARY)
    parser.add_argument("--out", type=Path, default=HERE / "results", help="Where the JSON and markdown go.")
    parser.add_argument("--work", type=Path, default=None, help="Work dir (CIFs, cache, GPAW logs).")
    parser.add_argument("--ecut", type=float, default=dft.DFTSettings.ecut)
    parser.add_argument("--kpt-density", type=float, default=dft.DFTSettings.kpt_density)
    parser.add_argument("--band-path-points", type=int, default=dft.DFTSettings.band_path_points)
    parser.add_argument("--time-budget", type=float, default=dft.DFTSettings.time_budget)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    work = args.work or args.out / "bench_dft_work"
    cif_dir = work / "cifs"
    cif_dir.mkdir(parents=True, exist_ok=True)
    for old in cif_dir.glob("*.cif"):  # only this run's materials (results stay in the cache)
        old.unlink()
    lib = pd.read_csv(args.library, keep_default_na=False, na_values=[])
    lib = {row["material_id"]: row for row in lib.to_dict("records")}
    missing = [i for i in args.ids if i not in lib]
    if missing:
        raise SystemExit(f"not in {args.library}: {', '.join(missing)}")
    for i, mpid in enumerate(args.ids):
        structure = Structure.from_str(lib[mpid]["cif"], fmt="cif")
        structure.to(filename=str(cif_dir / f"{i:02d}_{mpid}.cif"))

    settings = dft.DFTSettings(
        ecut=args.ecut,
        kpt_density=args.kpt_density,
        band_path_points=args.band_path_points,
        time_budget=args.time_budget,
    )
    load_before = os.getloadavg()
    start = time.perf_counter()
    table = dft.run_dft(cif_dir, work / "run", settings=settings, workers=1)
    total = time.perf_counter() - start
    load_after = os.getloadavg()

    rows = []
    for (_, res), mpid in zip(table.iterrows(), args.ids, strict=True):
        mp_gap = float(pd.to_numeric(lib[mpid]["band_gap"], errors="coerce"))
        gap = float(res[dft.DFT_BAND_GAP])
        rows.append(
            {
                "material_id": mpid,
                "formula": lib[mpid]["reduced_formula"],
                "nsites": int(res[dft.NSITES]),
                "mp_band_gap": mp_gap,
                "gpaw_band_gap": gap,
                "gpaw_band_gap_scf_grid": float(res[dft.DFT_BAND_GAP_SCF]),
                "difference": gap - mp_gap,
                "kpts": res[dft.KPTS],
                "converged": bool(res[dft.CONVERGED]),
                "status": res[dft.STATUS],
                "wall_time_s": float(res[dft.WALL_TIME_S]),
                "cpu_time_s": float(res[dft.CPU_TIME_S]),
                "cached": bool(res[dft.CACHED]),
            }
        )
    diffs = np.array([r["difference"] for r in rows if np.isfinite(r["difference"])])
    summary = {
        "n": len(rows),
        "n_ok": sum(r["status"] == "ok" for r in rows),
        "mae_ev": float(np.abs(diffs).mean()) if diffs.size else None,
        "max_abs_diff_ev": float(np.abs(diffs).max()) if diffs.size else None,
        "mean_signed_diff_ev": float(diffs.mean()) if diffs.size else None,
        "total_wall_time_s": round(total, 1),
    }
    import gpaw  # only for the version (run_dft already required it)

    meta = {
        "settings": settings.physics() | {"time_budget": settings.time_budget},
        "gpaw_version": gpaw.__version__,
        "cpu_count": os.cpu_count(),
        "processes": 1,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "platform": platform.platform(),
        "library": str(args.library),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json({"summary": summary, "meta": meta, "rows": rows}, args.out / "bench_dft.json")
    write_text(_markdown(rows, summary, meta), args.out / "bench_dft.md")
    print(_markdown(rows, summary, meta))


def _markdown(rows: list[dict], summary: dict, meta: dict) -> str:
    s = meta["settings"]
    lines = [
        "# GPAW PBE band gap vs Materials Project",
        "",
        f"GPAW {meta['gpaw_version']}, PBE, plane waves {s['ecut']:g} eV, k-point density "
        f"{s['kpt_density']:g} /Å⁻¹ (Γ-centred), band path {s['band_path_points']} points, "
        f"spin-unpolarised; one serial process on a {meta['cpu_count']}-core machine "
        f"(1-min load average before/after: {meta['load_average_before'][0]:.1f} / "
        f"{meta['load_average_after'][0]:.1f}).",
        "",
        "| material | formula | atoms | MP gap (eV) | GPAW gap (eV) | GPAW − MP (eV) | k-grid | converged "
        "| wall time (s) | CPU time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cached = " (cached)" if r["cached"] else ""
        lines.append(
            f"| {r['material_id']} | {r['formula']} | {r['nsites']} | {r['mp_band_gap']:.3f} | "
            f"{r['gpaw_band_gap']:.3f} | {r['difference']:+.3f} | {r['kpts']} | {r['converged']} | "
            f"{r['wall_time_s']:.1f}{cached} | {r['cpu_time_s']:.1f} |"
        )
    if summary["mae_ev"] is not None:
        lines += [
            "",
            f"MAE {summary['mae_ev']:.3f} eV, max |diff| {summary['max_abs_diff_ev']:.3f} eV, "
            "mean signed diff "
            f"{summary['mean_signed_diff_ev']:+.3f} eV over {summary['n_ok']} of {summary['n']} materials; "
            f"total wall time {summary['total_wall_time_s']:.0f} s.",
        ]
    lines += ["", "Command: `python benchmarks/bench_dft.py`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""One energy scale: MP2020-corrected formation energies against the mp-e-form hull reference.

CHGNet (trained on MPtrj) and today's Materials Project give formation energies
with the MP2020 corrections; ``mp-e-form`` (matbench, MP 2018-19) carries the
legacy corrections. No relaxation is needed to measure the offset: the template
library holds MP 2023 formation energies (MP2020 scheme).

1. Offset per anion class, on ground states (MP 2023 ``e_above_hull`` = 0) whose
   reduced formula is in ``mp-e-form``: difference MP 2023 - mp-e-form (lowest
   polymorph), per atom and per anion atom (median, bootstrap 95 % CI, MAD).
2. 2-fold cross-validation of the per-anion-atom model: mean absolute
   difference per class before and after the correction (fit on one half,
   scored on the other, both ways).
3. The hull check: every library row with an MP 2023 formation energy placed
   against the mp-e-form hull with its own formula left out, its energy above
   hull (clipped at 0) against MP 2023's ``e_above_hull``: MAE and agreement on
   "within 0.1 eV/atom", without and with the correction (the shipped constants
   of ``gapforge.structure.energy_scale``).

Writes ``energy_scale.json`` / ``energy_scale.md`` to ``benchmarks/results``.

Usage::

    GAPFORGE_DATA_PATH=../shared/data python benchmarks/bench_energy_scale.py
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, publish, quoted_command, run_facts
from gapforge import columns as C
from gapforge.structure.energy_scale import (
    LEGACY_TO_MP2020_PER_ANION_ATOM,
    anion_class,
    anion_fraction,
    anion_of,
)
from gapforge.structure.hull import HullReference
from gapforge.structure.library import load_library


def _median_ci(d: np.ndarray, rng: np.random.Generator) -> list[float]:
    boots = [float(np.median(rng.choice(d, len(d)))) for _ in range(1000)]
    return [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))]


def _hull_check(t: pd.DataFrame, ref: HullReference) -> dict:
    pred, true = [], []
    for f, e, eh in zip(t[C.REDUCED_FORMULA], t[C.FORMATION_ENERGY_PER_ATOM], t[C.E_ABOVE_HULL], strict=True):
        r = ref.e_above_hull(f, e, leave_out=[f])
        if np.isfinite(r.e_above_hull) and np.isfinite(eh):
            pred.append(max(r.e_above_hull, 0.0))
            true.append(eh)
    p, y = np.array(pred), np.array(true)
    pos_p, pos_y = p <= 0.1, y <= 0.1
    tp = int((pos_p & pos_y).sum())
    prec = tp / max(int(pos_p.sum()), 1)
    rec = tp / max(int(pos_y.sum()), 1)
    return {
        "n": len(p),
        "mae": float(np.mean(np.abs(p - y))),
        "agreement_within_0.1": float(np.mean(pos_p == pos_y)),
        "precision": prec,
        "recall": rec,
        "f1": 2 * prec * rec / max(prec + rec, 1e-12),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="energy_scale")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    start = time.time()
    rng = np.random.default_rng(args.seed)
    lib = load_library(None)
    t_all = lib.table[lib.table[C.FORMATION_ENERGY_PER_ATOM].notna()]
    t = t_all[t_all[C.E_ABOVE_HULL] <= 1e-6]
    legacy = HullReference.from_dataset(to_mp2020=False)
    rows = []
    for f, e23 in zip(t[C.REDUCED_FORMULA], t[C.FORMATION_ENERGY_PER_ATOM], strict=True):
        e18 = legacy.formation_energy(f)
        if np.isfinite(e18):
            rows.append(
                {
                    "formula": f,
                    "class": anion_class(f),
                    "anion": anion_of(f),
                    "x": anion_fraction(f),
                    "d": e23 - e18,
                }
            )
    df = pd.DataFrame(rows).drop_duplicates("formula").reset_index(drop=True)
    df["per_anion_atom"] = df["d"] / df["x"].replace(0.0, np.nan)

    per_class = {}
    for cls, g in df.groupby("class"):
        d = g["d"].to_numpy()
        entry = {
            "n": len(g),
            "median_per_atom": float(np.median(d)),
            "mean_abs_per_atom": float(np.mean(np.abs(d))),
        }
        pa = g["per_anion_atom"].dropna().to_numpy()
        if len(pa):
            entry["median_per_anion_atom"] = float(np.median(pa))
            entry["median_per_anion_atom_ci95"] = _median_ci(pa, rng)
            entry["mad_per_anion_atom"] = float(np.median(np.abs(pa - np.median(pa))))
        per_class[cls] = entry
    # the fit the module ships: one constant per anion (its +U class pooled in)
    offset = {
        a: float(np.median(g["per_anion_atom"])) for a, g in df.dropna(subset=["anion"]).groupby("anion")
    }

    # 2-fold cross-validation of the per-anion-atom model
    half = np.zeros(len(df), bool)
    half[rng.permutation(len(df))[: len(df) // 2]] = True
    cv_rows = []
    for fit_mask in (half, ~half):
        fit = df[fit_mask].dropna(subset=["anion"]).groupby("anion")["per_anion_atom"].median()
        test = df[~fit_mask]
        corr = test["anion"].map(fit).fillna(0.0).to_numpy() * test["x"].to_numpy()
        cv_rows.append(
            pd.DataFrame(
                {"class": test["class"], "before": test["d"].abs(), "after": (test["d"] - corr).abs()}
            )
        )
    cv = pd.concat(cv_rows).groupby("class")[["before", "after"]].mean()
    cv_all = pd.concat(cv_rows)[["before", "after"]].mean()

    corrected = HullReference.from_dataset(to_mp2020=True)
    hull_before = _hull_check(t_all, legacy)
    hull_after = _hull_check(t_all, corrected)

    payload = {
        "command": command_line(),
        "what": "MP 2023 (MP2020 corrections) minus mp-e-form (legacy corrections) formation energy, eV/atom",
        "n_library_ground_states": len(t),
        "n_matched": len(df),
        "per_class": per_class,
        "offset_per_anion_atom": offset,
        "shipped_offset_per_anion_atom": LEGACY_TO_MP2020_PER_ANION_ATOM,
        "cv_mean_abs_difference": {
            c: {"before": float(r.before), "after": float(r.after)} for c, r in cv.iterrows()
        },
        "cv_mean_abs_difference_all": {"before": float(cv_all.before), "after": float(cv_all.after)},
        "hull_check_legacy_scale": hull_before,
        "hull_check_mp2020_scale": hull_after,
        **run_facts(start),
    }
    lines = [
        "# Energy scale: MP 2023 (MP2020 corrections) minus mp-e-form (legacy corrections)",
        "",
        f"{quoted_command(payload['command'])} — {len(df)} ground-state formulas of the "
        f"template library also in mp-e-form; {payload['seconds']:.0f} s, load average "
        f"{payload['load_average'][0]:.1f} (other helpers' jobs running).",
        "",
        "Difference per class (eV/atom) and per atom of the class's anion (eV per anion atom); "
        "2-fold cross-validated mean absolute difference before / after the per-anion-atom correction.",
        "",
        "| class | n | median /atom | median /anion atom [95 % CI] | MAD /anion atom | CV before "
        "| CV after |",
        "|---|---|---|---|---|---|---|",
    ]
    for cls, s in sorted(per_class.items(), key=lambda kv: -kv[1]["n"]):
        pa = (
            f"{s['median_per_anion_atom']:+.3f} [{s['median_per_anion_atom_ci95'][0]:+.3f}, "
            f"{s['median_per_anion_atom_ci95'][1]:+.3f}]"
            if "median_per_anion_atom" in s
            else "-"
        )
        mad = f"{s['mad_per_anion_atom']:.3f}" if "mad_per_anion_atom" in s else "-"
        lines.append(
            f"| {cls} | {s['n']} | {s['median_per_atom']:+.3f} | {pa} | {mad} | "
            f"{cv.loc[cls, 'before']:.3f} | {cv.loc[cls, 'after']:.3f} |"
        )
    lines.append(f"| **all** | {len(df)} | | | | {cv_all.before:.3f} | {cv_all.after:.3f} |")
    lines += [
        "",
        f"Hull check: {hull_before['n']} library rows with an MP 2023 formation energy, each against the "
        "mp-e-form hull with its own formula left out; energy above hull clipped at 0 against MP 2023's.",
        "",
        "| hull reference | MAE (eV/atom) | agreement on <= 0.1 | precision | recall | F1 |",
        "|---|---|---|---|---|---|",
    ]
    for label, h in (
        ("mp-e-form as is (legacy corrections)", hull_before),
        ("mp-e-form on the MP2020 scale", hull_after),
    ):
        lines.append(
            f"| {label} | {h['mae']:.4f} | {h['agreement_within_0.1']:.1%} | {h['precision']:.3f} | "
            f"{h['recall']:.3f} | {h['f1']:.3f} |"
        )
    publish(args.name, payload, lines)


if __name__ == "__main__":
    main()

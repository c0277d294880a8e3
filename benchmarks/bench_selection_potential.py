"""Does another potential choose the right structure among the CHGNet-relaxed templates? (issue 17)

Reads the per-material records ``bench_structure.py --selection-energy sevennet-0`` writes: for
every material the CHGNet energy of each of its k relaxed templates (``energies_by_rank``), the
re-scoring potential's energy of the same CHGNet-relaxed structures (``selection_energies_by_rank``;
one evaluation or a few of its own steps, ``--rescore-steps``), the StructureMatcher verdict of
each (``matches_by_rank``) and the re-scored energy of the true MP structure.

Rules compared, all "the first-ranked template unless another lies lower by more than a margin"
(:func:`gapforge.structure.selection.pick_template`, converged relaxations first):

- ``chgnet``: CHGNet energies (the stage's rule until now, margin 0.075 eV/atom);
- ``<label>``: the re-scored energies of each record set given with ``--rescored``;
- ``<label> + chgnet``: the mean of the two energies.

Each rule's margin is chosen on the development sample only (highest match rate; ties: the
smallest margin) and then read once on the test sample, with a bootstrap 95 % interval and the
paired count of materials it gains (+) and loses (-) against the CHGNet rule.

Also the re-scoring potential's energy above hull against MP's (its energies are on the
uncorrected MPtrj scale: the MP2020 correction of the composition is added first) on the true
structure and on the kept rebuilt one, beside CHGNet's.

Usage::

    GAPFORGE_DATA_PATH=../shared/data python benchmarks/bench_selection_potential.py \\
        --rescored sevennet-0=benchmarks/results/selection_7net_dev_records.json,...test_records.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from gapforge.io import write_json, write_text
from gapforge.structure.selection import SELECTION_MARGIN, pick_template

MARGINS = (0.0, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, float("inf"))
BOOT = 2000
CHGNET = "chgnet"


def _ints(d: dict | None) -> dict[int, object]:
    return {int(k): v for k, v in (d or {}).items()}


def energies(rec: dict, source: str) -> dict[int, float]:
    """Per template rank: the energy a rule compares (CHGNet, re-scored or their mean)."""
    chg = {k: float(v) for k, v in _ints(rec.get("energies_by_rank")).items()}
    if source == CHGNET:
        return chg
    other = {k: float(v) for k, v in _ints(rec.get("selection_energies_by_rank")).items()}
    if source == "rescored":
        return {k: other[k] for k in chg if k in other}
    return {k: 0.5 * (chg[k] + other[k]) for k in chg if k in other}  # "mean"


def hits(records: list[dict], source: str, margin: float) -> np.ndarray:
    """Per material: 1 where the rule's kept template matches the true structure."""
    out = []
    for r in records:
        e = energies(r, source)
        if not e:
            out.append(False)
            continue
        conv = {k: bool(v) for k, v in _ints(r.get("converged_by_rank")).items()}
        out.append(bool(_ints(r.get("matches_by_rank")).get(pick_template(e, margin, converged=conv), False)))
    return np.array(out, dtype=float)


def boot_ci(x: np.ndarray, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(BOOT, len(x)))].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def boot_diff_ci(a: np.ndarray, b: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Paired bootstrap interval of mean(a) - mean(b) (same materials resampled)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(BOOT, len(a)))
    d = a[idx].mean(axis=1) - b[idx].mean(axis=1)
    return float(np.quantile(d, 0.025)), float(np.quantile(d, 0.975))


def choose_margin(records: list[dict], source: str) -> tuple[float, dict[str, float]]:
    rates = {m: float(hits(records, source, m).mean()) for m in MARGINS}
    best = max(rates.values())
    return min(m for m, v in rates.items() if v == best), {str(m): v for m, v in rates.items()}


def misses_below_true(records: list[dict], source: str) -> tuple[int, int, int, float | None]:
    """Lowest-energy misses with a match among the k; how many of them the energy puts below the true
    structure's own energy (no energy rule recovers those); how many are intermetallics (no MP2020
    anion); the median energy of the matching template above the lowest (eV/atom)."""
    from gapforge.structure.energy_scale import anion_of

    miss = below = inter = 0
    gaps = []
    for r in records:
        e = energies(r, source)
        m = _ints(r.get("matches_by_rank"))
        if not e or not any(m.values()):
            continue
        low = min(e, key=lambda k: (e[k], k))
        if m.get(low, False):
            continue
        miss += 1
        true = r.get("energy_per_atom_true") if source == CHGNET else r.get("selection_energy_true")
        below += bool(true is not None and e[low] < float(true))
        inter += anion_of(r["formula"]) is None
        gaps.append(
            min(e[k] for k, v in m.items() if v and k in e) - e[low]
            if any(v and k in e for k, v in m.items())
            else np.nan
        )
    return miss, below, inter, float(np.nanmedian(gaps)) if gaps else None


def hull_figures(records: list[dict]) -> dict[str, float]:
    """Energy above hull MAE against MP: CHGNet and the re-scoring potential (+ MP2020 correction)."""
    from gapforge.structure.hull import HullReference
    from gapforge.structure.stability import formation_energy_per_atom, load_elemental_references

    refs = load_elemental_references()
    hull = HullReference.from_dataset()

    def ehull(formula: str, e: float | None, corr: float) -> float:
        if e is None or not np.isfinite(e):
            return np.nan
        ef = formation_energy_per_atom(formula, float(e) + corr, refs)
        return float(hull.e_above_hull(formula, ef, leave_out=[formula]).e_above_hull)

    rows = {
        "chgnet_true": [],
        "rescored_true": [],
        "rescored_true_no_correction": [],
        "chgnet_kept": [],
        "rescored_kept": [],
        "mp": [],
    }
    for r in records:
        corr = float(r.get("mp2020_correction_per_atom") or 0.0)
        # the structure the stage keeps (CHGNet rule), scored by either potential
        kept = None
        if energies(r, CHGNET):
            conv = {k: bool(v) for k, v in _ints(r.get("converged_by_rank")).items()}
            kept = pick_template(energies(r, CHGNET), SELECTION_MARGIN, converged=conv)
        rescored = {k: float(v) for k, v in _ints(r.get("selection_energies_by_rank")).items()}
        rows["chgnet_kept"].append(
            ehull(r["formula"], energies(r, CHGNET)[kept], 0.0) if kept is not None else np.nan
        )
        rows["rescored_kept"].append(ehull(r["formula"], rescored.get(kept), corr))
        rows["chgnet_true"].append(ehull(r["formula"], r.get("energy_per_atom_true"), 0.0))
        rows["rescored_true"].append(ehull(r["formula"], r.get("selection_energy_true"), corr))
        rows["rescored_true_no_correction"].append(ehull(r["formula"], r.get("selection_energy_true"), 0.0))
        rows["mp"].append(float(r.get("e_above_hull_mp", np.nan)))
    mp = np.array(rows.pop("mp"))
    out = {}
    for key, vals in rows.items():
        v = np.array(vals)
        ok = np.isfinite(v) & np.isfinite(mp)
        out[f"e_above_hull_mae_{key}"] = (
            float(np.abs(np.clip(v[ok], 0, None) - mp[ok]).mean()) if ok.any() else None
        )
        out[f"n_{key}"] = int(ok.sum())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--rescored",
        action="append",
        required=True,
        help="LABEL=DEV_RECORDS,TEST_RECORDS (bench_structure.py --selection-energy ... records); repeatable",
    )
    p.add_argument("--no-test", action="store_true", help="dev only (while the rule is being chosen)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--name", default="selection_potential")
    args = p.parse_args()
    t0 = time.perf_counter()

    sets: dict[str, tuple[list[dict], list[dict] | None, str, str | None]] = {}
    for spec in args.rescored:
        label, paths = spec.split("=", 1)
        dev_path, _, test_path = paths.partition(",")
        dev = json.loads(Path(dev_path).read_text())
        test = json.loads(Path(test_path).read_text()) if test_path and not args.no_test else None
        sets[label] = (
            dev["records"],
            test["records"] if test else None,
            dev["command"],
            test and test["command"],
        )

    rules = []
    reference: tuple[np.ndarray, np.ndarray | None] | None = None
    first = next(iter(sets.values()))
    for label, source, (dev, test, _, _) in [
        (CHGNET, CHGNET, first),
        *[(lab, "rescored", v) for lab, v in sets.items()],
        *[(f"{lab} + chgnet (mean)", "mean", v) for lab, v in sets.items()],
    ]:
        margin, dev_rates = choose_margin(dev, source)
        if source == CHGNET:
            margin = SELECTION_MARGIN  # the stage's rule, chosen on the same dev sample earlier
        dev_hit = hits(dev, source, margin)
        test_hit = hits(test, source, margin) if test is not None else None
        if reference is None:
            reference = (dev_hit, test_hit)
        rule = {
            "rule": label,
            "energy": source,
            "margin_chosen_on_dev": margin,
            "dev_rates_by_margin": dev_rates,
            "dev_match": float(dev_hit.mean()),
            "dev_gained_vs_chgnet": int(((dev_hit == 1) & (reference[0] == 0)).sum()),
            "dev_lost_vs_chgnet": int(((dev_hit == 0) & (reference[0] == 1)).sum()),
            "dev_lowest_energy_misses": misses_below_true(dev, source),
        }
        if test_hit is not None and reference[1] is not None:
            rule.update(
                {
                    "test_match": float(test_hit.mean()),
                    "test_ci95": boot_ci(test_hit),
                    "test_diff_vs_chgnet_ci95": boot_diff_ci(test_hit, reference[1]),
                    "test_gained_vs_chgnet": int(((test_hit == 1) & (reference[1] == 0)).sum()),
                    "test_lost_vs_chgnet": int(((test_hit == 0) & (reference[1] == 1)).sum()),
                    "test_lowest_energy": float(hits(test, source, 0.0).mean()),
                    "test_lowest_energy_misses": misses_below_true(test, source),
                }
            )
        rules.append(rule)

    hull = {
        lab: {"dev": hull_figures(dev), **({"test": hull_figures(test)} if test else {})}
        for lab, (dev, test, _, _) in sets.items()
    }
    report = {
        "benchmark": "selection potential among the CHGNet-relaxed templates (issue 17)",
        "command": "python benchmarks/bench_selection_potential.py " + shlex.join(sys.argv[1:]),
        "record_commands": {lab: {"dev": v[2], "test": v[3]} for lab, v in sets.items()},
        "n_dev": len(first[0]),
        "n_test": len(first[1]) if first[1] is not None else None,
        "any_of_k": {
            "dev": float(np.mean([any(_ints(r.get("matches_by_rank")).values()) for r in first[0]])),
            "test": float(np.mean([any(_ints(r.get("matches_by_rank")).values()) for r in first[1]]))
            if first[1] is not None
            else None,
        },
        "rules": rules,
        "energy_above_hull": hull,
        "wall_time_s": time.perf_counter() - t0,
        "load_average": os.getloadavg(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(report, args.out / f"{args.name}.json")
    write_text(markdown(report), args.out / f"{args.name}.md")
    print(markdown(report))


def _f(x: object, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec) if isinstance(x, float) else str(x)


def markdown(r: dict) -> str:
    has_test = r["n_test"] is not None
    lines = [
        "# Which potential chooses among the CHGNet-relaxed templates",
        "",
        f"`GAPFORGE_DATA_PATH=../shared/data {r['command']}` ({r['wall_time_s']:.0f} s; load average "
        f"{r['load_average'][0]:.2f}). Records from:",
        "",
    ]
    for lab, cmds in r["record_commands"].items():
        lines.append(f"- {lab}, dev: `{cmds['dev']}`")
        if cmds["test"]:
            lines.append(f"- {lab}, test: `{cmds['test']}`")
    lines += [
        "",
        "Rule: the first-ranked template unless another lies lower by more than the margin, in the named "
        "energy (margin chosen on dev, highest match, ties the smallest; CHGNet keeps the stage's 0.075). "
        "+/-: materials gained / lost against the CHGNet rule (paired). "
        f"Any of the k (oracle pick): dev {_f(r['any_of_k']['dev'])}"
        + (f", test {_f(r['any_of_k']['test'])}." if has_test else "."),
        "",
        "| rule | margin | dev match | dev +/- | "
        + (
            "test match (95 % CI) | test +/- | test diff vs CHGNet (95 % CI) | test lowest energy |"
            if has_test
            else ""
        )
        + " lowest-energy misses with a match among k: put below the true structure / intermetallic / median "
        "gap to the matching one (eV/atom) |",
        "|---|---|---|---|" + ("---|---|---|---|" if has_test else "") + "---|",
    ]
    for x in r["rules"]:
        cells = [
            x["rule"],
            _f(x["margin_chosen_on_dev"]),
            _f(x["dev_match"]),
            f"+{x['dev_gained_vs_chgnet']} / -{x['dev_lost_vs_chgnet']}",
        ]
        if has_test:
            lo, hi = x["test_ci95"]
            dlo, dhi = x["test_diff_vs_chgnet_ci95"]
            cells += [
                f"{x['test_match']:.3f} ({lo:.3f}-{hi:.3f})",
                f"+{x['test_gained_vs_chgnet']} / -{x['test_lost_vs_chgnet']}",
                f"{x['test_match'] - r['rules'][0]['test_match']:+.3f} ({dlo:+.3f} to {dhi:+.3f})",
                _f(x["test_lowest_energy"]),
            ]
        m = x["test_lowest_energy_misses"] if has_test else x["dev_lowest_energy_misses"]
        cells.append(f"{m[0]}: {m[1]} / {m[2]} / {_f(m[3])}" + (" (test)" if has_test else " (dev)"))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Dev match by margin:",
        "",
        "| margin | " + " | ".join(x["rule"] for x in r["rules"]) + " |",
        "|---|" + "---|" * len(r["rules"]),
    ]
    for m in r["rules"][0]["dev_rates_by_margin"]:
        lines.append(f"| {m} | " + " | ".join(_f(x["dev_rates_by_margin"][m]) for x in r["rules"]) + " |")
    lines += [
        "",
        "Energy above hull of the true MP structure against MP's (MAE, eV/atom; ours clipped at 0; own "
        "formula left out of the mp-e-form hull). The re-scoring potential's energy gets the composition's "
        "MP2020 correction added (it predicts uncorrected energies); without it for comparison.",
        "",
        "| records | sample | CHGNet | re-scoring potential + MP2020 | same, uncorrected | kept rebuilt "
        "structure (CHGNet rule): CHGNet | same structure: re-scoring potential + MP2020 |",
        "|---|---|---|---|---|---|---|",
    ]
    for lab, by_sample in r["energy_above_hull"].items():
        for sample, h in by_sample.items():
            lines.append(
                f"| {lab} | {sample} | {_f(h['e_above_hull_mae_chgnet_true'])} | "
                f"{_f(h['e_above_hull_mae_rescored_true'])} | "
                f"{_f(h['e_above_hull_mae_rescored_true_no_correction'])} | "
                f"{_f(h['e_above_hull_mae_chgnet_kept'])} | {_f(h['e_above_hull_mae_rescored_kept'])} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

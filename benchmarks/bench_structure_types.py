"""Which template slots hold the true structure before relaxation: prototypes vs structure types.

A prototype (anonymised formula + space group) can hold several structure types
(other Wyckoff sites in the same space group). This benchmark measures, without
any relaxation, how often one of the first k templates of the search, substituted
with the material's elements as the structure stage does (``substitute``: site
assignment and volume), already matches the material's true structure by
pymatgen's ``StructureMatcher`` (default tolerances), for several ways of filling
the k slots (``SearchSettings.slots`` and ``type_share_power``):

- ``prototype``: k distinct prototypes by the learned ranker, each by its ElMD-nearest
  template (the stage so far);
- ``structure_type:POWER``: k distinct structure types (Wyckoff label merged by
  StructureMatcher), slot 1 as above, the others by the ranker's P(prototype) x
  P(type | prototype)^POWER.

Beside them, the caps: the true prototype among the usable templates at all, and
the true structure type (some template of the true prototype, its ElMD-nearest of
each type, matches unrelaxed).

Materials: ``--set dev`` is the learned ranker's dev (600) and ``bench_structure``'s
dev (100) formulas (never ranker training queries), each by its ground-state
library entry (lowest energy above hull, <= 8 sites); ``--set test`` the
benchmark's 200 test materials (reported once, after the choice on dev). The
own formula is left out of the templates and the prototype counts, as in the
validation. StructureMatcher verdicts are cached by (formula, template id) in
``--cache`` (resumable).

Usage::

    GAPFORGE_DATA_PATH=../shared/data python benchmarks/bench_structure_types.py --set dev
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, publish, quoted_command, run_facts
from bench_prototype_ranker import benchmark_sets
from gapforge import columns as C
from gapforge.structure.library import load_library
from gapforge.structure.prototypes import PrototypeCounts, structure_types
from gapforge.structure.substitution import SubstitutionSettings, substitute
from gapforge.structure.templates import SearchSettings, SlotFilling, search_templates
from gapforge.structure.validation import _template_subset, prototype_in_templates

KS = (1, 2, 3, 5, 8)
STRATEGIES = {
    "prototype": SearchSettings(slots=SlotFilling.PROTOTYPE),
    "structure_type:1": SearchSettings(slots=SlotFilling.STRUCTURE_TYPE, type_share_power=1.0),
    "structure_type:0.5": SearchSettings(slots=SlotFilling.STRUCTURE_TYPE, type_share_power=0.5),
    "structure_type:2": SearchSettings(slots=SlotFilling.STRUCTURE_TYPE, type_share_power=2.0),
    "structure_type:0": SearchSettings(slots=SlotFilling.STRUCTURE_TYPE, type_share_power=0.0),
}
BOOT = 2000


def ground_state(library, formulas: set[str], max_sites: int) -> pd.DataFrame:
    """Each formula's lowest-energy-above-hull library entry with at most ``max_sites`` sites."""
    t = library.table
    pool = t[t[C.REDUCED_FORMULA].isin(formulas) & (t[C.NSITES] <= max_sites)]
    pool = pool.assign(_e=pool[C.E_ABOVE_HULL].fillna(np.inf)).sort_values(["_e", C.MATERIAL_ID])
    return pool.drop_duplicates(C.REDUCED_FORMULA).drop(columns="_e")


class Fits:
    """Unrelaxed StructureMatcher verdicts of (formula, template id), cached in a JSON file."""

    def __init__(self, path: Path, library, templates) -> None:
        from pymatgen.analysis.structure_matcher import StructureMatcher

        self.path = path
        self.cache: dict[str, bool] = json.loads(path.read_text()) if path.is_file() else {}
        self.library, self.templates = library, templates
        self.matcher = StructureMatcher()
        self.row_of = {m: i for i, m in enumerate(library.table[C.MATERIAL_ID].astype(str))}
        self.new = 0

    def __call__(self, formula: str, truth_id: str, template_row: int) -> bool:
        tid = str(self.templates.table[C.MATERIAL_ID].iloc[template_row])
        key = f"{formula}|{truth_id}|{tid}"
        if key not in self.cache:
            true = self.library.structure(self.row_of[truth_id])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    sub = substitute(formula, self.templates.structure(template_row), SubstitutionSettings())
                    ok = bool(self.matcher.fit(sub.structure, true))
                except Exception:  # a failed substitution or fit is no match
                    ok = False
            self.cache[key] = ok
            self.new += 1
            if self.new % 200 == 0:
                self.save()
        return self.cache[key]

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.cache))
        tmp.replace(self.path)


#: Why a material's true structure is or is not reachable before relaxation (first that applies).
CAP_CLASSES = (
    "no template of the true prototype",
    "the nearest template of some type of it matches",
    "another template of such a type matches",
    "a template has the true Wyckoff label, none matches",
    "no template has the true Wyckoff label",
)


def type_ceiling(row, templates, fits: Fits, max_members: int = 40) -> tuple[str, int]:
    """Cap class (:data:`CAP_CLASSES`) of one material and how many structure types its true prototype
    has among the usable templates (own formula left out)."""
    from gapforge.structure.elmd import cumulative_matrix, elmd_matrix
    from gapforge.structure.prototypes import wyckoff_label

    t = templates.table
    same = np.flatnonzero(
        (t[C.ANONYMIZED_FORMULA].to_numpy() == row[C.ANONYMIZED_FORMULA])
        & (t[C.SPACEGROUP_NUMBER].to_numpy(dtype=float) == float(row[C.SPACEGROUP_NUMBER]))
        & (t[C.REDUCED_FORMULA].to_numpy() != row[C.REDUCED_FORMULA])
    )
    if len(same) == 0:
        return CAP_CLASSES[0], 0
    d = elmd_matrix(cumulative_matrix([row[C.REDUCED_FORMULA]]), templates.cumulative[same])[0]
    members = same[np.argsort(d, kind="stable")]
    types = structure_types(templates, members.tolist())
    first: dict[str, int] = {}
    for r, ty in zip(members, types, strict=True):
        first.setdefault(ty, int(r))
    formula, mid = row[C.REDUCED_FORMULA], row[C.MATERIAL_ID]
    if any(fits(formula, mid, r) for r in first.values()):
        return CAP_CLASSES[1], len(first)
    if any(fits(formula, mid, int(r)) for r in members[:max_members]):
        return CAP_CLASSES[2], len(first)
    true_label = wyckoff_label(fits.library.structure(fits.row_of[mid]))
    if true_label in {templates.wyckoff_label(int(r)) for r in members}:
        return CAP_CLASSES[3], len(first)
    return CAP_CLASSES[4], len(first)


def library_reach(library, vset, targets: pd.DataFrame) -> dict[str, dict]:
    """Share of ``targets`` whose prototype a template of another formula has, per template filter."""
    from dataclasses import replace

    out = {}
    for label, settings in (
        ("<= 8 sites, e_above_hull <= 0.1", vset),
        ("<= 8 sites, any e_above_hull", replace(vset, max_template_e_above_hull=None)),
        ("<= 20 sites, e_above_hull <= 0.1", replace(vset, max_sites=20)),
        ("every library entry", replace(vset, max_sites=10**6, max_template_e_above_hull=None)),
    ):
        t = _template_subset(library, settings)
        hits = [
            prototype_in_templates(
                r[C.REDUCED_FORMULA], r[C.ANONYMIZED_FORMULA], float(r[C.SPACEGROUP_NUMBER]), t
            )
            for _, r in targets.iterrows()
        ]
        out[label] = {"templates": len(t), "share": float(np.mean(hits))}
    return out


def boot_ci(x: np.ndarray, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(BOOT, len(x)))].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", choices=("dev", "test"), default="dev")
    p.add_argument("--n", type=int, default=None, help="first n materials only (a quick look)")
    p.add_argument("--strategies", nargs="*", default=list(STRATEGIES)[:4], choices=list(STRATEGIES))
    p.add_argument("--cache", type=Path, default=Path("runs/bench_structure_types_fits.json"))
    p.add_argument("--name", default=None)
    args = p.parse_args()
    warnings.simplefilter("ignore")
    start = time.time()
    library = load_library(None)
    vset, test, dev600, sdev = benchmark_sets(library, 200, 600, 8, 0)
    templates = _template_subset(library, vset)
    counts = PrototypeCounts.load()
    if args.set == "dev":
        targets = ground_state(library, set(dev600[C.REDUCED_FORMULA]) | set(sdev[C.REDUCED_FORMULA]), 8)
    else:
        targets = test
    if args.n:
        targets = targets.iloc[: args.n]
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    fits = Fits(args.cache, library, templates)
    formulas = targets[C.REDUCED_FORMULA].tolist()
    sg_of = templates.table[C.SPACEGROUP_NUMBER].to_numpy(dtype=float)
    per: dict[str, dict] = {}
    for name in args.strategies:
        t0 = time.time()
        settings = SearchSettings(
            top_k=max(KS),
            fallback_nearest=False,
            exclude_same_formula=True,
            slots=STRATEGIES[name].slots,
            type_share_power=STRATEGIES[name].type_share_power,
        )
        found = search_templates(formulas, templates, settings, prototypes=counts)
        search_s = time.time() - t0
        match = np.zeros((len(targets), len(KS)), dtype=bool)
        proto = np.zeros((len(targets), len(KS)), dtype=bool)
        for i, ((_, row), ms) in enumerate(
            tqdm(zip(targets.iterrows(), found, strict=True), total=len(targets), desc=name, disable=None)
        ):
            hits = [fits(row[C.REDUCED_FORMULA], row[C.MATERIAL_ID], m.index) for m in ms]
            phits = [sg_of[m.index] == float(row[C.SPACEGROUP_NUMBER]) for m in ms]
            match[i] = [any(hits[:k]) for k in KS]
            proto[i] = [any(phits[:k]) for k in KS]
        per[name] = {
            "search_seconds": search_s,
            **{f"match_top{k}": float(match[:, j].mean()) for j, k in enumerate(KS)},
            **{f"match_top{k}_ci": boot_ci(match[:, j].astype(float)) for j, k in enumerate(KS)},
            **{f"prototype_top{k}": float(proto[:, j].mean()) for j, k in enumerate(KS)},
            "_match": match,
        }
        print(name, {k: v for k, v in per[name].items() if not k.startswith("_")}, flush=True)
        fits.save()
    ceiling_proto, cap_class, n_types = [], [], []
    for _, row in tqdm(targets.iterrows(), total=len(targets), desc="ceilings", disable=None):
        ceiling_proto.append(
            prototype_in_templates(
                row[C.REDUCED_FORMULA], row[C.ANONYMIZED_FORMULA], float(row[C.SPACEGROUP_NUMBER]), templates
            )
        )
        cls, n = type_ceiling(row, templates, fits)
        cap_class.append(cls)
        n_types.append(n)
    ceiling_type = [c == CAP_CLASSES[1] for c in cap_class]
    fits.save()
    reach = library_reach(library, vset, targets)
    base = per.get("prototype")
    paired = {}
    if base is not None:
        for name, r in per.items():
            if name == "prototype":
                continue
            j = KS.index(5)
            gained = int((r["_match"][:, j] & ~base["_match"][:, j]).sum())
            lost = int((~r["_match"][:, j] & base["_match"][:, j]).sum())
            paired[name] = {"gained_top5": gained, "lost_top5": lost}
    n_types_arr = np.array(n_types)
    with_types = n_types_arr[n_types_arr > 0]
    results = {
        "command": command_line(),
        "set": args.set,
        "n": len(targets),
        "strategies": {n: {k: v for k, v in r.items() if not k.startswith("_")} for n, r in per.items()},
        "paired_vs_prototype": paired,
        "ceiling_prototype_in_templates": float(np.mean(ceiling_proto)),
        "ceiling_structure_type_unrelaxed": float(np.mean(ceiling_type)),
        "true_prototype_types_mean": float(with_types.mean()) if len(with_types) else 0.0,
        "true_prototype_with_several_types": float(np.mean(n_types_arr > 1)),
        "library_reach": reach,
        "cap_classes": {c: float(np.mean([x == c for x in cap_class])) for c in CAP_CLASSES},
        "fits_cached": len(fits.cache),
        **run_facts(start),
    }
    lines = [
        f"# Template slots: prototypes vs structure types (unrelaxed, {args.set}, {len(targets)} materials)",
        "",
        f"{quoted_command(results['command'])} — {results['seconds']:.0f} s, load average "
        f"{results['load_average'][0]:.1f} (other helpers' jobs running).",
        "",
        "A match: the template, substituted with the material's elements as the structure stage does, fits "
        "the true structure by StructureMatcher before any relaxation (bootstrap 95 % intervals). "
        "Prototype: the template has the true anonymised formula and space group.",
        "",
        "| slots | " + " | ".join(f"match top-{k}" for k in KS) + " | prototype top-1 | prototype top-5 |",
        "|---|" + "---|" * len(KS) + "---|---|",
    ]
    for name, r in per.items():
        cells = " | ".join(
            f"{r[f'match_top{k}']:.3f} ({r[f'match_top{k}_ci'][0]:.2f}-{r[f'match_top{k}_ci'][1]:.2f})"
            for k in KS
        )
        lines.append(f"| {name} | {cells} | {r['prototype_top1']:.3f} | {r['prototype_top5']:.3f} |")
    lines += [
        "",
        "| caps | value |",
        "|---|---|",
        f"| true prototype among the usable templates | {results['ceiling_prototype_in_templates']:.3f} |",
        "| true structure type among them (the ElMD-nearest template of some type of the true prototype "
        f"matches unrelaxed) | {results['ceiling_structure_type_unrelaxed']:.3f} |",
        f"| structure types of the true prototype (mean, where it exists) | "
        f"{results['true_prototype_types_mean']:.2f} |",
        f"| materials whose true prototype holds more than one type | "
        f"{results['true_prototype_with_several_types']:.3f} |",
    ]
    lines += [
        "",
        "Why the true structure is or is not reachable before relaxation (share of materials; first "
        "class that applies; 'another template' tries the 40 ElMD-nearest of the true prototype):",
        "",
        "| class | share |",
        "|---|---|",
        *[f"| {c} | {v:.3f} |" for c, v in results["cap_classes"].items()],
    ]
    lines += [
        "",
        "The true prototype among the templates with other template filters (the runs above: <= 8 sites, "
        "e_above_hull <= 0.1 eV/atom):",
        "",
        "| templates | count | true prototype among them |",
        "|---|---|---|",
        *[f"| {k} | {v['templates']} | {v['share']:.3f} |" for k, v in reach.items()],
    ]
    if paired:
        lines += ["", "Paired against `prototype` at k = 5 (materials):", ""]
        lines += [f"- {n}: +{v['gained_top5']} / -{v['lost_top5']}" for n, v in paired.items()]
    publish(args.name or f"structure_types_{args.set}", results, lines)


if __name__ == "__main__":
    main()

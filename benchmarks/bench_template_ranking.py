"""Template ranking without relaxation: prototype prior weight, AFLOW prototypes, the ceiling.

Cheap (no CHGNet): a known material is rebuilt from its formula by substitution
into each of its top-k templates, and the *unrelaxed* result is compared with
the true structure by pymatgen's StructureMatcher (default tolerances; it
rescales volumes). The relaxed match rate of ``bench_structure.py`` tracked the
unrelaxed one closely before (0.510 vs 0.505 at top-1), so this is the proxy used
to choose ``SearchSettings.prototype_weight``.

The weight is chosen on a DEVELOPMENT set of library materials disjoint (by
formula) from the TEST sample of ``bench_structure.py`` (``sample_known`` with the
same seed and size), then both sets are reported. Also the ceiling: the share of
materials whose true prototype (anonymised formula + space group) is among the
usable templates at all, own formula left out.

Usage::

    GAPFORGE_DATA_PATH=../shared/data python benchmarks/bench_template_ranking.py --dev 300
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
from pymatgen.analysis.structure_matcher import StructureMatcher

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results

from gapforge import columns as C
from gapforge.errors import GapforgeError
from gapforge.structure.library import TemplateLibrary, load_library
from gapforge.structure.prototypes import PrototypeCounts, aflow_prototype_library
from gapforge.structure.substitution import SubstitutionSettings, substitute
from gapforge.structure.templates import SearchSettings, search_templates
from gapforge.structure.validation import ValidationSettings, _template_subset, sample_known

WEIGHTS = (0.0, 1.0, 4.0)


def _with_aflow(library: TemplateLibrary) -> TemplateLibrary:
    table = pd.concat([library.table, aflow_prototype_library()], ignore_index=True)
    return TemplateLibrary(table, source=f"{library.source} + aflow")


def _ceiling(targets: pd.DataFrame, templates: TemplateLibrary) -> float:
    t = templates.table
    keys = {}
    for f, a, sg in zip(t[C.REDUCED_FORMULA], t[C.ANONYMIZED_FORMULA], t[C.SPACEGROUP_NUMBER], strict=True):
        if np.isfinite(sg):
            keys.setdefault((a, int(sg)), set()).add(f)
    hit = 0
    for f, a, sg in zip(
        targets[C.REDUCED_FORMULA], targets[C.ANONYMIZED_FORMULA], targets[C.SPACEGROUP_NUMBER], strict=True
    ):
        owners = keys.get((a, int(sg)), set()) if np.isfinite(sg) else set()
        hit += bool(owners - {f})
    return hit / len(targets)


class Scorer:
    """Unrelaxed match of (material, template) pairs, memoised across settings."""

    def __init__(self, library: TemplateLibrary, templates: TemplateLibrary) -> None:
        self.library, self.templates = library, templates
        self.matcher = StructureMatcher()
        self.cache: dict[tuple[str, str], bool] = {}
        self.sub = SubstitutionSettings()

    def match(self, row: pd.Series, t_index: int) -> bool:
        key = (row[C.MATERIAL_ID], self.templates.table.loc[t_index, C.MATERIAL_ID])
        if key not in self.cache:
            true = self.library.structure(int(row["_lib_index"]))
            try:
                sub = substitute(row[C.REDUCED_FORMULA], self.templates.structure(t_index), self.sub)
                ok = bool(self.matcher.fit(sub.structure, true))
            except (GapforgeError, ValueError, RuntimeError):
                ok = False
            self.cache[key] = ok
        return self.cache[key]


def evaluate(targets, templates, scorer, counts, weight, top_k) -> dict:
    settings = SearchSettings(
        top_k=top_k, fallback_nearest=False, exclude_same_formula=True, prototype_weight=weight
    )
    found = search_templates(targets[C.REDUCED_FORMULA].tolist(), templates, settings, prototypes=counts)
    top1, anyk = [], []
    for (_, row), matches in zip(targets.iterrows(), found, strict=True):
        hits = [scorer.match(row, m.index) for m in matches]
        top1.append(bool(hits[:1] and hits[0]))
        anyk.append(any(hits))
    return {
        "weight": weight,
        "top1_unrelaxed": float(np.mean(top1)),
        f"any_of_{top_k}_unrelaxed": float(np.mean(anyk)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--dev", type=int, default=300)
    p.add_argument("--max-sites", type=int, default=8)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="template_ranking")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    start = time.time()
    library = load_library(None)
    library.table["_lib_index"] = np.arange(len(library))
    vset = ValidationSettings(
        n_materials=args.n_test, max_sites=args.max_sites, seed=args.seed, top_k=args.top_k
    )
    test = sample_known(library, vset)
    t = library.table
    pool = t[(t[C.NSITES] <= args.max_sites) & ~t[C.REDUCED_FORMULA].isin(set(test[C.REDUCED_FORMULA]))]
    pool = pool.drop_duplicates(C.REDUCED_FORMULA)
    dev = pool.sample(n=min(args.dev, len(pool)), random_state=args.seed + 1)
    counts = PrototypeCounts.load()
    base = _template_subset(library, vset)
    variants = {"mp": base, "mp+aflow": _with_aflow(base)}
    variants["mp+aflow"] = variants["mp+aflow"].subset(variants["mp+aflow"].table[C.NSITES] <= args.max_sites)
    results: dict = {"command": " ".join(["python", *sys.argv]), "n_test": len(test), "n_dev": len(dev)}
    for vname, templates in variants.items():
        scorer = Scorer(library, templates)
        results[vname] = {
            "n_templates": len(templates),
            "ceiling_test": _ceiling(test, templates),
            "ceiling_dev": _ceiling(dev, templates),
            "dev": [evaluate(dev, templates, scorer, counts, w, args.top_k) for w in WEIGHTS],
        }
        # ElMD only, old behaviour (k nearest templates, prototypes may repeat)
        old = SearchSettings(
            top_k=args.top_k, fallback_nearest=False, exclude_same_formula=True, distinct_prototypes=False
        )
        for label, targets in (("dev", dev), ("test", test)):
            found = search_templates(targets[C.REDUCED_FORMULA].tolist(), templates, old)
            hits = [
                [scorer.match(r, m.index) for m in ms]
                for (_, r), ms in zip(targets.iterrows(), found, strict=True)
            ]
            results[vname][f"old_elmd_{label}"] = {
                "top1_unrelaxed": float(np.mean([bool(h[:1] and h[0]) for h in hits])),
                f"any_of_{args.top_k}_unrelaxed": float(np.mean([any(h) for h in hits])),
            }
        key = f"any_of_{args.top_k}_unrelaxed"
        best = max(results[vname]["dev"], key=lambda r: (r["top1_unrelaxed"] + r[key], -r["weight"]))
        results[vname]["chosen_weight"] = best["weight"]
        results[vname]["test_at_chosen_weight"] = evaluate(
            test, templates, scorer, counts, best["weight"], args.top_k
        )
        print(vname, results[vname], flush=True)
    results["load_average"] = os.getloadavg()
    results["seconds"] = time.time() - start
    k = args.top_k
    lines = [
        "# Template ranking (unrelaxed StructureMatcher proxy)",
        "",
        f"`GAPFORGE_DATA_PATH=../shared/data {results['command']}` — dev {len(dev)} / test {len(test)} materials "
        f"(<= {args.max_sites} sites, own formula left out of templates and prototype counts); "
        f"{results['seconds']:.0f} s, load average {os.getloadavg()[0]:.1f}.",
        "",
        f"| templates | set | ranking | top-1 | any of {k} | ceiling |",
        "|---|---|---|---|---|---|",
    ]
    for vname in variants:
        r = results[vname]
        for label in ("dev", "test"):
            o = r[f"old_elmd_{label}"]
            lines.append(
                f"| {vname} | {label} | ElMD only (old) | {o['top1_unrelaxed']:.3f} | {o[f'any_of_{k}_unrelaxed']:.3f} "
                f"| {r[f'ceiling_{label}']:.3f} |"
            )
        for d in r["dev"]:
            lines.append(
                f"| {vname} | dev | distinct prototypes, weight {d['weight']} | {d['top1_unrelaxed']:.3f} "
                f"| {d[f'any_of_{k}_unrelaxed']:.3f} | |"
            )
        tt = r["test_at_chosen_weight"]
        lines.append(
            f"| {vname} | test | distinct prototypes, weight {r['chosen_weight']} (chosen on dev) "
            f"| {tt['top1_unrelaxed']:.3f} | {tt[f'any_of_{k}_unrelaxed']:.3f} | {r['ceiling_test']:.3f} |"
        )
    js, md = write_results(args.name, results, "\n".join(lines))
    print("\n".join(lines))
    print(js, md)


if __name__ == "__main__":
    main()

"""Template ranking without relaxation: prototype prior weight, AFLOW prototypes, the ceiling.

Cheap (no CHGNet, no substitution): a template "hits" a known material when it
has the material's prototype (same anonymised formula and space group). That is
nearly necessary for a StructureMatcher match after relaxation (a relaxation
seldom changes the space group of a substituted template) and costs nothing, so
it is the proxy used to choose ``SearchSettings.prototype_weight``: top-1 hit
rate and any-of-k hit rate.

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
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, publish, quoted_command, run_facts
from gapforge import columns as C
from gapforge.structure.library import TemplateLibrary, load_library
from gapforge.structure.prototypes import PrototypeCounts, aflow_prototype_library
from gapforge.structure.templates import SearchSettings, search_templates
from gapforge.structure.validation import ValidationSettings, _template_subset, sample_known

WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
NEIGHBOURS = (None, 5, 10, 20)


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
    """Whether a template has the material's prototype (anonymised formula + space group)."""

    def __init__(self, library: TemplateLibrary, templates: TemplateLibrary) -> None:
        self.library, self.templates = library, templates
        self.sg = templates.table[C.SPACEGROUP_NUMBER].to_numpy(dtype=float)

    def match(self, row: pd.Series, t_index: int) -> bool:
        return bool(
            np.isfinite(row[C.SPACEGROUP_NUMBER]) and self.sg[t_index] == float(row[C.SPACEGROUP_NUMBER])
        )


def evaluate(targets, templates, scorer, counts, weight, top_k, neighbours=None) -> dict:
    settings = SearchSettings(
        top_k=top_k,
        fallback_nearest=False,
        exclude_same_formula=True,
        prototype_weight=weight,
        neighbours=neighbours,
    )
    found = search_templates(targets[C.REDUCED_FORMULA].tolist(), templates, settings, prototypes=counts)
    top1, anyk = [], []
    for (_, row), matches in zip(targets.iterrows(), found, strict=True):
        hits = [scorer.match(row, m.index) for m in matches]
        top1.append(bool(hits[:1] and hits[0]))
        anyk.append(any(hits))
    return {
        "weight": weight,
        "neighbours": neighbours,
        "top1": float(np.mean(top1)),
        f"any_of_{top_k}": float(np.mean(anyk)),
    }


def _nb(neighbours: int | None) -> str:
    return "shares over all known formulas" if neighbours is None else f"shares over the {neighbours} nearest"


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
    results: dict = {"command": command_line(), "n_test": len(test), "n_dev": len(dev)}
    for vname, templates in variants.items():
        scorer = Scorer(library, templates)
        results[vname] = {
            "n_templates": len(templates),
            "ceiling_test": _ceiling(test, templates),
            "ceiling_dev": _ceiling(dev, templates),
            "dev": [
                evaluate(dev, templates, scorer, counts, w, args.top_k, nb)
                for nb in NEIGHBOURS
                for w in WEIGHTS
                if not (w == 0.0 and nb is not None)
            ],
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
                "top1": float(np.mean([bool(h[:1] and h[0]) for h in hits])),
                f"any_of_{args.top_k}": float(np.mean([any(h) for h in hits])),
            }
        key = f"any_of_{args.top_k}"
        best = max(results[vname]["dev"], key=lambda r: (r["top1"] + r[key], -r["weight"]))
        results[vname]["chosen_weight"] = best["weight"]
        results[vname]["chosen_neighbours"] = best["neighbours"]
        results[vname]["test_at_chosen_weight"] = evaluate(
            test, templates, scorer, counts, best["weight"], args.top_k, best["neighbours"]
        )
        print(vname, results[vname], flush=True)
    results.update(run_facts(start))
    k = args.top_k
    lines = [
        "# Template ranking: how often the templates have the material's prototype",
        "",
        f"{quoted_command(results['command'])} — dev {len(dev)} / test {len(test)} "
        "materials "
        f"(<= {args.max_sites} sites, own formula left out of templates and prototype counts); "
        f"{results['seconds']:.0f} s, load average {results['load_average'][0]:.1f}.",
        "",
        "A hit: a template with the material's anonymised formula and space group (no relaxation).",
        "",
        f"| templates | set | ranking | top-1 | any of {k} | ceiling |",
        "|---|---|---|---|---|---|",
    ]
    for vname in variants:
        r = results[vname]
        for label in ("dev", "test"):
            o = r[f"old_elmd_{label}"]
            lines.append(
                f"| {vname} | {label} | ElMD only (old) | {o['top1']:.3f} | {o[f'any_of_{k}']:.3f} "
                f"| {r[f'ceiling_{label}']:.3f} |"
            )
        for d in r["dev"]:
            lines.append(
                f"| {vname} | dev | distinct prototypes, weight {d['weight']}, "
                f"{_nb(d['neighbours'])} | {d['top1']:.3f} | {d[f'any_of_{k}']:.3f} | |"
            )
        tt = r["test_at_chosen_weight"]
        lines.append(
            f"| {vname} | test | distinct prototypes, weight {r['chosen_weight']}, "
            f"{_nb(r['chosen_neighbours'])} (chosen on dev) "
            f"| {tt['top1']:.3f} | {tt[f'any_of_{k}']:.3f} | {r['ceiling_test']:.3f} |"
        )
    publish(args.name, results, lines)


if __name__ == "__main__":
    main()

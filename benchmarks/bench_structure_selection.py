"""Which relaxed template to keep, chosen on a development set; stability calls with a real base rate.

Reads the per-material records that ``bench_structure.py`` writes (every relaxed
template's CHGNet energy, StructureMatcher verdict and, for newer runs, energy
above hull) for three disjoint samples of known materials (<= 8 sites, the same
filters and protocol):

- ``--dev``: the development set (``bench_structure.py --sample dev``);
- ``--test``: the benchmark's 200 test materials (``--sample test``);
- ``--unstable``: formulas more than 0.1 eV/atom above the hull in MP
  (``--sample unstable``).

1. Selection: the kept template is the first-ranked one unless another relaxed
   lower by more than a margin (``gapforge.structure.selection.pick_template``;
   margin 0 = lowest energy, infinite = first-ranked). The margin is chosen on
   dev only (highest match rate; ties: the smallest margin), then reported on test
   with a bootstrap interval. Beside it, the caps: any of the k (oracle pick), and
   the share of misses where CHGNet puts the kept wrong structure below its own
   energy of the true MP structure (no energy rule can recover those).
2. Stability: "within 0.1 eV/atom of the hull" on test + unstable, with the base
   rate and the F1 of always answering "within" beside every F1; also on balanced
   draws (all unstable + as many stable drawn at random, repeated).

Usage::

    GAPFORGE_DATA_PATH=../shared/data python benchmarks/bench_structure_selection.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from gapforge import columns as C
from gapforge.io import write_json, write_text
from gapforge.structure.hull import HullReference
from gapforge.structure.selection import pick_template
from gapforge.structure.stability import formation_energy_per_atom, load_elemental_references

MARGINS = (0.0, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, float("inf"))
WITHIN = 0.1
BOOT = 2000


def _ints(d: dict | None) -> dict[int, object]:
    return {int(k): v for k, v in (d or {}).items()}


def _relaxed(rec: dict) -> bool:
    return isinstance(rec.get("energies_by_rank"), dict) and bool(rec["energies_by_rank"])


def converged_by_rank(rec: dict) -> dict[int, bool]:
    """Recorded convergence per rank; older records (lowest energy among converged kept) hold only the
    kept one's: every template relaxed lower than the kept one did not converge, the others are taken
    as converged (this reproduces those runs' own choice exactly)."""
    recorded = _ints(rec.get("converged_by_rank"))
    if recorded:
        return {k: bool(v) for k, v in recorded.items()}
    e = {k: float(v) for k, v in _ints(rec["energies_by_rank"]).items()}
    e_kept = e[int(rec[C.TEMPLATE_RANK])]
    return {k: not v < e_kept for k, v in e.items()}


def kept(rec: dict, margin: float) -> int | None:
    """The rank the rule keeps for one material (None: nothing relaxed)."""
    if not _relaxed(rec):
        return None
    e = {k: float(v) for k, v in _ints(rec["energies_by_rank"]).items()}
    return pick_template(e, margin, converged=converged_by_rank(rec))


def match_rate(records: list[dict], margin: float) -> np.ndarray:
    """Per material: 1 if the kept template matches the true structure."""
    out = []
    for r in records:
        k = kept(r, margin)
        out.append(bool(k is not None and _ints(r.get("matches_by_rank")).get(k, False)))
    return np.array(out, dtype=float)


def boot_ci(x: np.ndarray, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(BOOT, len(x)))].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def symmetry_first_rates(records: list[dict]) -> dict[str, float] | None:
    """Dev-only variant (needs the relaxed space groups): templates that kept their space group
    through the relaxation compete first, then the margin rule."""
    if not any(r.get("relaxed_spacegroup_by_rank") for r in records):
        return None
    out = {}
    for margin in MARGINS:
        hits = []
        for r in records:
            if not _relaxed(r):
                hits.append(False)
                continue
            template_sg = dict(enumerate(r["template_spacegroups"], start=1))
            relaxed_sg = _ints(r["relaxed_spacegroup_by_rank"])
            e = {k: float(v) for k, v in _ints(r["energies_by_rank"]).items()}
            kept_sg = {k: v for k, v in e.items() if relaxed_sg.get(k) == template_sg.get(k)} or e
            hits.append(bool(_ints(r["matches_by_rank"]).get(pick_template(kept_sg, margin), False)))
        out[str(margin)] = float(np.mean(hits))
    return out


def prototype_hits_by_k(records: list[dict], ks: tuple[int, ...] = (1, 3, 5, 8, 10, 15)) -> dict[str, float]:
    """Share of materials whose prototype (anonymised formula + space group) is among the first k ranked
    templates (the search as in the validation, own formula left out; no relaxation)."""
    from gapforge.structure.library import load_library
    from gapforge.structure.prototypes import PrototypeCounts
    from gapforge.structure.templates import SearchSettings, SlotFilling, search_templates
    from gapforge.structure.validation import ValidationSettings, _template_subset

    templates = _template_subset(load_library(None), ValidationSettings(max_sites=8))
    sg = templates.table[C.SPACEGROUP_NUMBER].to_numpy(dtype=float)
    found = search_templates(
        [r["formula"] for r in records],
        templates,
        SearchSettings(
            top_k=max(ks), fallback_nearest=False, exclude_same_formula=True, slots=SlotFilling.PROTOTYPE
        ),
        prototypes=PrototypeCounts.load(),
    )
    first_hit = []
    for r, matches in zip(records, found, strict=True):
        ranks = [m.rank for m in matches if sg[m.index] == float(r[C.SPACEGROUP_NUMBER])]
        first_hit.append(min(ranks) if ranks else np.inf)
    return {str(k): float(np.mean(np.array(first_hit) <= k)) for k in ks}


def site_assignment_cap(records: list[dict]) -> dict[str, float]:
    """Unrelaxed StructureMatcher match among the k templates with the stage's element-to-site
    assignment, and with any assignment of the same amounts (is the assignment what loses?)."""
    import itertools
    import warnings

    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Element, Structure

    from gapforge.structure.library import load_library
    from gapforge.structure.substitution import SubstitutionError, element_mapping
    from gapforge.structure.validation import ValidationSettings, _template_subset

    library = load_library(None)
    templates = _template_subset(library, ValidationSettings(max_sites=8))
    row_of = {m: i for i, m in enumerate(templates.table[C.MATERIAL_ID].astype(str))}
    lib_ids = library.table[C.MATERIAL_ID].astype(str).to_numpy()
    matcher = StructureMatcher()
    chosen = anyone = 0
    for r in records:
        true = library.structure(int(np.flatnonzero(lib_ids == r[C.MATERIAL_ID])[0]))
        target = true.composition.reduced_composition.get_el_amt_dict()
        hit_chosen = hit_any = False
        for tid in r.get("template_ids") or []:
            t = templates.structure(row_of[tid])
            base = Structure(t.lattice, [getattr(sp, "symbol", str(sp)) for sp in t.species], t.frac_coords)
            try:
                stage_map, _ = element_mapping(true.composition, base.composition)
            except SubstitutionError:
                continue
            amounts = base.composition.reduced_composition.get_el_amt_dict()
            for perm in itertools.permutations(sorted(amounts)):
                if any(abs(target[c] - amounts[e]) > 1e-8 for c, e in zip(sorted(target), perm, strict=True)):
                    continue
                mapping = {e: c for c, e in zip(sorted(target), perm, strict=True)}
                trial = base.copy()
                trial.replace_species({Element(a): Element(b) for a, b in mapping.items()})
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        ok = bool(matcher.fit(trial, true))
                    except Exception:  # matcher failures count as no match
                        ok = False
                hit_any |= ok
                hit_chosen |= ok and mapping == stage_map
        chosen += hit_chosen
        anyone += hit_any
    n = len(records)
    return {
        "unrelaxed_match_any_of_k_stage_assignment": chosen / n,
        "unrelaxed_match_any_of_k_any_assignment": anyone / n,
    }


def template_spacegroups() -> dict[str, float]:
    """Template id -> space group number, for every template the validation can use (MP + AFLOW)."""
    from gapforge.structure.library import load_library
    from gapforge.structure.validation import ValidationSettings, _template_subset

    t = _template_subset(load_library(None), ValidationSettings(max_sites=8)).table
    return dict(zip(t[C.MATERIAL_ID].astype(str), t[C.SPACEGROUP_NUMBER].astype(float), strict=True))


SELECTOR_FEATURES = (
    "first-ranked",
    "rank",
    "energy - first-ranked's (eV/atom)",
    "energy - lowest (eV/atom)",
    "kept its space group",
    "templates relaxed into the same structure",
    "prototype share",
    "converged",
)


def _selector_rows(rec: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per relaxed template of one material: :data:`SELECTOR_FEATURES` and whether it matches."""
    e = {k: float(v) for k, v in _ints(rec["energies_by_rank"]).items()}
    m = _ints(rec.get("matches_by_rank"))
    sg = _ints(rec.get("relaxed_spacegroup_by_rank"))
    same = _ints(rec.get("same_as_rank"))
    conv = converged_by_rank(rec)
    tsg = dict(enumerate(rec.get("template_spacegroups") or [], start=1))
    share = dict(enumerate(rec.get("prototype_shares") or [], start=1))
    e1, emin = e.get(1, min(e.values())), min(e.values())
    x, y = [], []
    for k in sorted(e):
        group = sum(1 for v in same.values() if v == same.get(k, k)) if same else 1
        x.append(
            [k == 1, k, e[k] - e1, e[k] - emin, sg.get(k) == tsg.get(k), group, share.get(k, 0.0), conv[k]]
        )
        y.append(bool(m.get(k, False)))
    return np.nan_to_num(np.array(x, dtype=float)), np.array(y, dtype=int)


def selector_loo(records: list[dict]) -> dict | None:
    """Leave-one-material-out: a logistic regression over :data:`SELECTOR_FEATURES` keeps its highest-scored
    template, against the margin rule with its margin re-chosen on the other materials (both honest)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if not any(r.get("same_as_rank") for r in records):
        return None
    rows = [_selector_rows(r) if _relaxed(r) else None for r in records]
    learned, rule = [], []
    for i, r in enumerate(records):
        others = [x for j, x in enumerate(records) if j != i]
        rates = {m: match_rate(others, m).mean() for m in MARGINS}
        best = max(rates.values())
        rule.append(match_rate([r], min(m for m, v in rates.items() if v == best))[0])
        if rows[i] is None:
            learned.append(0.0)
            continue
        x = np.vstack([rows[j][0] for j in range(len(rows)) if j != i and rows[j] is not None])
        y = np.concatenate([rows[j][1] for j in range(len(rows)) if j != i and rows[j] is not None])
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x, y)
        pick = int(np.argmax(model.decision_function(rows[i][0])))
        learned.append(float(rows[i][1][pick]))
    return {
        "features": list(SELECTOR_FEATURES),
        "learned_selector_loo": float(np.mean(learned)),
        "margin_rule_nested_loo": float(np.mean(rule)),
        "top1": float(match_rate(records, float("inf")).mean()),
    }


def two_margin_rates(records: list[dict]) -> dict[str, float] | None:
    """Dev-only variant: templates with the first-ranked one's space group (other structure types of
    the first prototype) replace it at one margin, the other prototypes at another; the best pair."""
    if not records:
        return None
    best: tuple[float, float, float] = (-1.0, 0.0, 0.0)
    for same_margin in MARGINS:
        for other_margin in MARGINS:
            hits = []
            for r in records:
                if not _relaxed(r):
                    hits.append(False)
                    continue
                e = {k: float(v) for k, v in _ints(r["energies_by_rank"]).items()}
                conv = converged_by_rank(r)
                pool = {k: v for k, v in e.items() if conv.get(k)} or e
                sg = dict(enumerate(r.get("template_spacegroups") or [], start=1))
                first, keep = min(pool), min(pool)
                for k, v in sorted(pool.items(), key=lambda kv: (kv[1], kv[0])):
                    margin = same_margin if sg.get(k) == sg.get(first) else other_margin
                    if pool[first] - v > margin:
                        keep = k
                        break
                hits.append(bool(_ints(r.get("matches_by_rank")).get(keep, False)))
            rate = float(np.mean(hits))
            if rate > best[0]:
                best = (rate, same_margin, other_margin)
    return {"best_dev_match": best[0], "same_prototype_margin": best[1], "other_prototype_margin": best[2]}


def selection_caps(records: list[dict]) -> dict:
    """Why lowest energy loses: misses where CHGNet ranks the wrong structure below the true one."""
    miss = below = 0
    n_distinct = []
    for r in records:
        if not _relaxed(r):
            continue
        m = _ints(r.get("matches_by_rank"))
        e = {k: float(v) for k, v in _ints(r["energies_by_rank"]).items()}
        low = kept(r, 0.0)
        if any(m.values()) and not m.get(low, False):
            miss += 1
            below += e[low] < float(r.get("energy_per_atom_true", np.nan))
        if r.get("same_as_rank"):
            n_distinct.append(len(set(_ints(r["same_as_rank"]).values())))
    n = len(records)
    return {
        "n": n,
        "any_of_k": float(np.mean([any(_ints(r.get("matches_by_rank")).values()) for r in records])),
        "top1": float(match_rate(records, float("inf")).mean()),
        "lowest_energy": float(match_rate(records, 0.0).mean()),
        "lowest_energy_misses_with_a_match_among_k": miss,
        "of_which_chgnet_puts_kept_below_true_structure": int(below),
        "mean_distinct_relaxed_structures_of_k": float(np.mean(n_distinct)) if n_distinct else None,
        "share_relaxed_converged": float(
            np.mean([v for r in records for v in _ints(r.get("converged_by_rank")).values()])
        )
        if any(r.get("converged_by_rank") for r in records)
        else None,
    }


def ranking_caps(records: list[dict], id_to_spacegroup: dict[str, float]) -> dict:
    """Prototype hits of the ranked templates (same space group as the true structure, before relaxing)
    beside the relaxed matches: a relaxed match without a hit is rare, so the hits cap the matches."""
    top1 = any5 = match_no_hit = ceiling = 0
    for r in records:
        sgs = [id_to_spacegroup.get(t, np.nan) for t in r.get("template_ids") or []]
        hits = [bool(sg == float(r[C.SPACEGROUP_NUMBER])) for sg in sgs]
        top1 += bool(hits[:1] and hits[0])
        any5 += any(hits)
        ceiling += bool(r.get("prototype_in_library"))
        match_no_hit += bool(r.get("match_any_topk")) and not any(hits)
    n = len(records)
    return {
        "prototype_hit_top1": top1 / n,
        "prototype_hit_any_of_k": any5 / n,
        "relaxed_match_any_of_k_without_a_hit": match_no_hit / n,
        "ceiling_prototype_in_library": ceiling / n,
    }


class HullByRank:
    """Energy above hull of every relaxed template (recorded, else from the recorded energy)."""

    def __init__(self) -> None:
        self.refs = load_elemental_references()
        self.hull = HullReference.from_dataset()

    def __call__(self, rec: dict, rank: int) -> float:
        recorded = _ints(rec.get("e_above_hull_by_rank"))
        if rank in recorded:  # None: the stage had no hull value for it (e.g. an element without a reference)
            return float("nan") if recorded[rank] is None else float(recorded[rank])
        e = float(_ints(rec["energies_by_rank"])[rank])
        ef = formation_energy_per_atom(rec["formula"], e, self.refs)
        return float(self.hull.e_above_hull(rec["formula"], ef, leave_out=[rec["formula"]]).e_above_hull)


def stability(rows: list[tuple[float, float]]) -> dict:
    """P/R/F1 of 'within WITHIN' (ours clipped at 0) against MP, with the base rate and always-yes F1."""
    pred = np.array([max(p, 0.0) for p, _ in rows])
    true = np.array([t for _, t in rows])
    pp, tt = pred <= WITHIN, true <= WITHIN
    tp = float((pp & tt).sum())
    precision = tp / max(pp.sum(), 1)
    recall = tp / max(tt.sum(), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    p = float(tt.mean())
    return {
        "n": len(rows),
        "n_within_mp": int(tt.sum()),
        "base_rate": p,
        "f1_always_within": 2 * p / (1 + p),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "specificity": float((~pp & ~tt).sum() / max((~tt).sum(), 1)),
        "mae": float(np.abs(pred - true).mean()),
    }


def balanced(stable: list, unstable: list, draws: int = 200, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    f1s = []
    for _ in range(draws):
        pick = rng.choice(len(stable), size=min(len(unstable), len(stable)), replace=False)
        f1s.append(stability([stable[i] for i in pick] + unstable)["f1"])
    return {
        "draws": draws,
        "n_each": min(len(unstable), len(stable)),
        "f1_mean": float(np.mean(f1s)),
        "f1_sd": float(np.std(f1s)),
        "f1_always_within": 2 * 0.5 / 1.5,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    res = Path("benchmarks/results")
    p.add_argument("--dev", type=Path, default=res / "bench_structure_dev_records.json")
    p.add_argument("--test", type=Path, default=res / "bench_structure_records.json")
    p.add_argument("--unstable", type=Path, default=res / "bench_structure_unstable_records.json")
    p.add_argument("--out", type=Path, default=res)
    p.add_argument("--name", default="structure_selection")
    args = p.parse_args()
    start = time.perf_counter()

    def load(path: Path) -> tuple[list[dict], str]:
        d = json.loads(path.read_text())
        return d["records"], d["command"]

    dev, dev_cmd = load(args.dev)
    test, test_cmd = load(args.test)
    unstable, unstable_cmd = load(args.unstable) if args.unstable.is_file() else ([], None)
    spacegroups = template_spacegroups()
    dev_rates = {str(m): float(match_rate(dev, m).mean()) for m in MARGINS}
    best = max(dev_rates.values())
    chosen = min(float(m) for m, r in dev_rates.items() if r == best)
    test_rates = {str(m): float(match_rate(test, m).mean()) for m in MARGINS}
    hit = match_rate(test, chosen)

    ehull = HullByRank()
    stab = {}
    for margin in sorted({0.0, chosen, float("inf")}):

        def rows(records: list[dict], margin: float = margin) -> list[tuple[float, float]]:
            out = []
            for r in records:
                k = kept(r, margin)
                if k is not None and r.get("e_above_hull_mp") is not None:
                    e = ehull(r, k)
                    if np.isfinite(e):
                        out.append((e, float(r["e_above_hull_mp"])))
            return out

        s_rows, u_rows = rows(test), rows(unstable)
        stab[str(margin)] = {
            "test_only": stability(s_rows),
            "unstable_only": stability(u_rows) if u_rows else None,
            "test_plus_unstable": stability(s_rows + u_rows),
            "balanced": balanced(s_rows, u_rows) if u_rows else None,
        }
    control = [
        (float(r["e_above_hull_chgnet_true_structure"]), float(r["e_above_hull_mp"]))
        for r in test + unstable
        if r.get("e_above_hull_chgnet_true_structure") is not None
        and np.isfinite(float(r["e_above_hull_chgnet_true_structure"]))
    ]
    report = {
        "benchmark": "template selection rule and stability calls (issue 17)",
        "command": " ".join(["python", *sys.argv]),
        "inputs": {"dev": dev_cmd, "test": test_cmd, "unstable": unstable_cmd},
        "n_dev": len(dev),
        "n_test": len(test),
        "n_unstable": len(unstable),
        "margins": [str(m) for m in MARGINS],
        "dev_match_rate_by_margin": dev_rates,
        "chosen_margin": chosen,
        "test_match_rate_by_margin": test_rates,
        "test_match_rate_chosen": float(hit.mean()),
        "test_match_rate_chosen_ci95": boot_ci(hit),
        "dev_match_rate_symmetry_first": symmetry_first_rates(dev),
        "dev_selector_loo": selector_loo(dev),
        "dev_two_margins": two_margin_rates(dev),
        "caps_dev": selection_caps(dev),
        "caps_test": selection_caps(test),
        "ranking_caps_dev": ranking_caps(dev, spacegroups),
        "ranking_caps_test": ranking_caps(test, spacegroups),
        "site_assignment_dev": site_assignment_cap(dev),
        "site_assignment_test": site_assignment_cap(test),
        "prototype_hit_by_k_dev": prototype_hits_by_k(dev),
        "prototype_hit_by_k_test": prototype_hits_by_k(test),
        "stability_by_margin": stab,
        "stability_control_chgnet_on_mp_structure": stability(control) if control else None,
        "wall_time_s": time.perf_counter() - start,
        "load_average": os.getloadavg(),
    }
    write_json(report, args.out / f"{args.name}.json")
    write_text(markdown(report), args.out / f"{args.name}.md")
    print(markdown(report))


def _f(x: object) -> str:
    return "n/a" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def markdown(r: dict) -> str:
    lines = [
        "# Template selection rule (chosen on dev) and stability calls with a base rate",
        "",
        f"`GAPFORGE_DATA_PATH=../shared/data {r['command']}` (reads the records of the runs below; "
        f"{r['wall_time_s']:.0f} s).",
        "",
        f"- dev ({r['n_dev']}): `{r['inputs']['dev']}`",
        f"- test ({r['n_test']}): `{r['inputs']['test']}`",
        f"- unstable ({r['n_unstable']}): `{r['inputs']['unstable']}`",
        "",
        "## Selection: kept = first-ranked template unless another relaxed lower by more than the margin",
        "",
        "The last column (dev only, an alternative not chosen): templates that kept their space group "
        "through the relaxation compete first.",
        "",
        "| margin (eV/atom) | dev match | test match | dev match, symmetry kept first |",
        "|---|---|---|---|",
    ]
    sym = r.get("dev_match_rate_symmetry_first") or {}
    for m in r["margins"]:
        dev_rate, test_rate = r["dev_match_rate_by_margin"][m], r["test_match_rate_by_margin"][m]
        lines.append(f"| {m} | {_f(dev_rate)} | {_f(test_rate)} | {_f(sym.get(m))} |")
    lo, hi = r["test_match_rate_chosen_ci95"]
    loo = r.get("dev_selector_loo")
    if loo:
        lines += [
            "",
            f"A learned selector instead (dev only, leave one material out): logistic regression over "
            f"{', '.join(loo['features'])} keeps its best-scored template: "
            f"{_f(loo['learned_selector_loo'])}, against {_f(loo['margin_rule_nested_loo'])} for the margin "
            f"rule with the margin re-chosen without the left-out one (first-ranked: {_f(loo['top1'])}).",
        ]
    two = r.get("dev_two_margins")
    if two:
        one = max(r["dev_match_rate_by_margin"].values())
        lines += [
            "",
            f"Two margins instead (dev only): other structure types of the first prototype replace it at "
            f"{two['same_prototype_margin']}, other prototypes at {two['other_prototype_margin']} eV/atom: "
            f"best dev match {_f(two['best_dev_match'])} (one margin: {_f(one)}).",
        ]
    lines += [
        "",
        f"Chosen on dev: margin **{r['chosen_margin']}** eV/atom; "
        f"test match {_f(r['test_match_rate_chosen'])} "
        f"(bootstrap 95 % interval {lo:.3f}-{hi:.3f}).",
        "",
        "| caps | dev | test |",
        "|---|---|---|",
    ]
    cd, ct = r["caps_dev"], r["caps_test"]
    for key, label in (
        ("top1", "first-ranked template"),
        ("lowest_energy", "lowest relaxed energy"),
        ("any_of_k", "any of the k (oracle pick; CSPBench's top-k)"),
        ("lowest_energy_misses_with_a_match_among_k", "lowest-energy misses with a match among the k"),
        (
            "of_which_chgnet_puts_kept_below_true_structure",
            "... of which CHGNet puts the kept one below the true",
        ),
        ("mean_distinct_relaxed_structures_of_k", "distinct relaxed structures among the k (mean)"),
        ("share_relaxed_converged", "relaxations converged (share)"),
    ):
        lines.append(f"| {label} | {_f(cd.get(key))} | {_f(ct.get(key))} |")
    rd, rt = r["ranking_caps_dev"], r["ranking_caps_test"]
    for key, label in (
        ("prototype_hit_top1", "prototype hit, first-ranked template (before relaxing)"),
        ("prototype_hit_any_of_k", "prototype hit, any of the k"),
        ("relaxed_match_any_of_k_without_a_hit", "relaxed match among the k without a hit"),
        ("ceiling_prototype_in_library", "ceiling: the prototype among the templates at all"),
    ):
        lines.append(f"| {label} | {_f(rd.get(key))} | {_f(rt.get(key))} |")
    sd, st = r["site_assignment_dev"], r["site_assignment_test"]
    for key, label in (
        (
            "unrelaxed_match_any_of_k_stage_assignment",
            "unrelaxed match among the k, the stage's site assignment",
        ),
        ("unrelaxed_match_any_of_k_any_assignment", "unrelaxed match among the k, any site assignment"),
    ):
        lines.append(f"| {label} | {_f(sd.get(key))} | {_f(st.get(key))} |")
    hd, ht = r["prototype_hit_by_k_dev"], r["prototype_hit_by_k_test"]
    lines += [
        "",
        "Prototype among the first k ranked prototypes (no relaxation; prototype slots, "
        "`SearchSettings(slots='prototype')`, whatever the runs used):",
        "",
        "| k | dev | test |",
        "|---|---|---|",
        *[f"| {k} | {_f(hd[k])} | {_f(ht[k])} |" for k in hd],
    ]
    lines += [
        "",
        "## Stability: 'within 0.1 eV/atom of the hull' against MP's e_above_hull",
        "",
        "Base rate p = share within 0.1 eV/atom in MP; always answering 'within' scores F1 = 2p/(1+p).",
        "",
        "| margin | set | n | base rate | always-within F1 | precision | recall | F1 | specificity | MAE |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, sets in r["stability_by_margin"].items():
        for label in ("test_only", "unstable_only", "test_plus_unstable"):
            s = sets.get(label)
            if s:
                lines.append(
                    f"| {m} | {label.replace('_', ' ')} | {s['n']} | {_f(s['base_rate'])} | "
                    f"{_f(s['f1_always_within'])} | {_f(s['precision'])} | {_f(s['recall'])} | "
                    f"{_f(s['f1'])} | {_f(s['specificity'])} | {_f(s['mae'])} |"
                )
        b = sets.get("balanced")
        if b:
            lines.append(
                f"| {m} | balanced ({b['n_each']} + {b['n_each']}, {b['draws']} draws) | {2 * b['n_each']} | "
                f"0.500 | {_f(b['f1_always_within'])} | | | {b['f1_mean']:.3f} ± {b['f1_sd']:.3f} | | |"
            )
    c = r.get("stability_control_chgnet_on_mp_structure")
    if c:
        lines.append(
            f"| control: CHGNet on the MP structure | test plus unstable | {c['n']} | {_f(c['base_rate'])} | "
            f"{_f(c['f1_always_within'])} | {_f(c['precision'])} | {_f(c['recall'])} | {_f(c['f1'])} | "
            f"{_f(c['specificity'])} | {_f(c['mae'])} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

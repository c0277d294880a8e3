"""Benchmark of the structure stage (issue 7): rebuild known structures, relax candidates.

Writes ``bench_structure.json`` and ``bench_structure.md`` to ``--out``:

1. validation: known MP structures (with an MP formation energy, at most
   ``--max-sites`` sites) rebuilt from their formula alone (own formula left out
   of the library): StructureMatcher match rate, formation-energy MAE against MP,
   and CHGNet's own MAE on the true MP structures as a control;
2. relaxation seconds per structure by number of sites (on ``--workers`` cores);
3. the share of candidates ending with negative formation energy, for the
   candidate table ``--candidates`` (default: the paper's reported discoveries).

Usage::

    GAPFORGE_DATA_PATH=../shared/data python benchmarks/bench_structure.py \
        --n 200 --max-sites 8 --max-steps 100 --top-k 5 --workers 1 --skip-candidates

``--sample dev`` rebuilds other materials of the same filters, disjoint from the
test ones (for choosing rules); ``--sample unstable`` formulas more than 0.1 eV/atom
above the hull in MP (the negatives of "within 0.1 eV/atom"); their results go to
``bench_structure_<sample>*``. ``--cache-dir`` keeps every CHGNet result by content.
``benchmarks/bench_structure_selection.py`` reads the three record files.

Resumable: every material's record is saved as it is scored
(``bench_structure_records.json``); the same command continues where it stopped
(``--restart`` starts afresh).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd

from gapforge.io import write_json, write_table, write_text
from gapforge.structure.library import load_library
from gapforge.structure.pipeline import StructureSettings, build_structures, relax_structures
from gapforge.structure.ranker import PrototypeRanking
from gapforge.structure.relax import CHGNET_MODEL_VERSION, RelaxSettings
from gapforge.structure.rescore import SelectionEnergy
from gapforge.structure.selection import SELECTION_MARGIN
from gapforge.structure.stability import load_elemental_references
from gapforge.structure.substitution import VOLUME_METHODS, SubstitutionSettings
from gapforge.structure.templates import SearchSettings, SlotFilling
from gapforge.structure.validation import SampleSet, ValidationSettings, validate_rebuild

#: Compounds the paper (Xin et al. 2021) reports: SrYF5 and its semiconductors.
PAPER_CANDIDATES = ("SrYF5", "SrClF3", "CaClF5", "YCl3", "SrC2F3", "AlSCl", "As2O3")
#: columns of the candidate rows, in the JSON and the markdown table
CANDIDATE_COLUMNS = (
    "formula",
    "template_formula",
    "elmd",
    "formation_energy_per_atom",
    "e_above_hull",
    "hull_known_phases",
    "converged",
    "reason",
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--library", type=Path, default=None, help="template library (default: offline MP file)")
    p.add_argument("--n", type=int, default=200, help="known materials to rebuild")
    p.add_argument("--max-sites", type=int, default=12)
    p.add_argument("--max-steps", type=int, default=300)
    p.add_argument("--fmax", type=float, default=0.05)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--no-aflow", action="store_true", help="MP templates only")
    p.add_argument("--no-prototype-ranking", action="store_true", help="rank templates by ElMD only")
    p.add_argument(
        "--ranking",
        choices=[m.value for m in PrototypeRanking],
        default=PrototypeRanking.LEARNED.value,
        help="prototype order: the fitted ranker (learned) or the ElMD + share rule (rule); always in "
        "the command line, so records of the older rule-only runs are never resumed by a learned run",
    )
    p.add_argument(
        "--slots",
        choices=[m.value for m in SlotFilling],
        default=SlotFilling.STRUCTURE_TYPE.value,
        help="what the k template slots hold: distinct structure types or distinct prototypes; always in "
        "the command line, so records of the older prototype-slot runs are never resumed by a new run",
    )
    p.add_argument(
        "--type-share-power",
        type=float,
        default=1.0,
        help="with --slots structure_type: exponent of a type's share of its prototype's templates",
    )
    p.add_argument("--restart", action="store_true", help="ignore the saved records of an earlier run")
    p.add_argument("--report-only", action="store_true", help="rewrite the results from the saved records")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--candidates",
        type=Path,
        default=None,
        help="candidate table for the negative-formation share (default: the paper's 7)",
    )
    p.add_argument("--candidate-top-k", type=int, default=2)
    p.add_argument("--candidate-max-sites", type=int, default=12, help="largest template cell for candidates")
    p.add_argument("--skip-candidates", action="store_true")
    p.add_argument("--chunk-size", type=int, default=2, help="materials per batch; results saved after each")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument(
        "--sample",
        choices=[m.value for m in SampleSet],
        default=SampleSet.TEST.value,
        help="test: the benchmark's materials; dev: others, disjoint from the --n-test test ones (for "
        "choosing rules); unstable: formulas > 0.1 eV/atom above the hull in MP",
    )
    p.add_argument("--n-test", type=int, default=200, help="test sample size that --sample dev avoids")
    p.add_argument(
        "--selection-margin",
        type=float,
        default=SELECTION_MARGIN,
        help="kept template: the first-ranked unless another relaxed lower by more (eV/atom)",
    )
    p.add_argument(
        "--selection-energy",
        choices=[m.value for m in SelectionEnergy],
        default=SelectionEnergy.CHGNET.value,
        help="whose energy chooses among the CHGNet-relaxed templates (another potential re-scores them)",
    )
    p.add_argument(
        "--rescore-steps",
        type=int,
        default=0,
        help="with --selection-energy other than chgnet: its own FIRE steps before the energy (0 = one call)",
    )
    p.add_argument("--cache-dir", type=Path, default=None, help="CHGNet results by content (resumable)")
    p.add_argument(
        "--volume-method",
        choices=VOLUME_METHODS,
        default="rls",
        help="first volume of a substituted template: RLS radius ratios, or the library's element increments",
    )
    p.add_argument("--name", default=None, help="file prefix (default: bench_structure[_<sample>])")
    args = p.parse_args()
    name = args.name or (
        "bench_structure" if args.sample == SampleSet.TEST else f"bench_structure_{args.sample}"
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    t0 = time.perf_counter()
    library = load_library(args.library)
    refs = load_elemental_references()
    relax = RelaxSettings(fmax=args.fmax, max_steps=args.max_steps)
    vset = ValidationSettings(
        n_materials=args.n,
        max_sites=args.max_sites,
        seed=args.seed,
        top_k=args.top_k,
        relax=relax,
        aflow_prototypes=not args.no_aflow,
        prototype_ranking=not args.no_prototype_ranking,
        ranking=PrototypeRanking(args.ranking),
        sample=SampleSet(args.sample),
        n_test=args.n_test,
        selection_margin=args.selection_margin,
        slots=SlotFilling(args.slots),
        type_share_power=args.type_share_power,
        selection_energy=SelectionEnergy(args.selection_energy),
        rescore_steps=args.rescore_steps,
        substitution=SubstitutionSettings(volume_method=args.volume_method),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    defaults = {
        "sample": SampleSet.TEST.value,
        "n_test": 200,
        "selection_margin": SELECTION_MARGIN,
        "type_share_power": 1.0,
        "selection_energy": SelectionEnergy.CHGNET.value,
        "rescore_steps": 0,
        "volume_method": "rls",
    }
    command = "python benchmarks/bench_structure.py " + " ".join(
        f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}")
        for k, v in vars(args).items()
        if v is not None
        and v is not False
        and k not in ("restart", "out", "report_only", "cache_dir", "name")
        and defaults.get(k, object()) != v  # options added later appear only when set
    )
    records_path = args.out / f"{name}_records.json"
    done = []
    if records_path.is_file() and not args.restart:
        saved = json.loads(records_path.read_text())
        if saved.get("command") == command:
            done = saved["records"]
            logging.info("resuming: %d materials already done", len(done))

    def save(result, cand_summary, *, complete: bool, wall=None, load=None) -> dict:
        report = {
            "benchmark": "structure stage (issue 7)",
            "complete": complete,
            "chgnet_model": CHGNET_MODEL_VERSION,
            "machine": {"python": platform.python_version(), "workers": args.workers},
            "command": command,
            "validation": result.summary,
            "candidates": cand_summary,
            "wall_time_total_s": time.perf_counter() - t0 if wall is None else wall,
            "load_average": os.getloadavg() if load is None else load,
        }
        write_table(result.table, args.out / f"{name}_validation.csv")
        write_json({"command": command, "records": result.table.to_dict(orient="records")}, records_path)
        write_json(report, args.out / f"{name}.json")
        write_text(markdown(report), args.out / f"{name}.md")
        return report

    # Candidates first (small and fixed), then the long validation saved batch by batch.
    if args.report_only:  # rewrite the results from the saved records (e.g. after stopping a long run)
        from dataclasses import asdict

        from gapforge.structure.validation import ValidationResult, summarise

        table = pd.DataFrame(done)
        previous = json.loads((args.out / f"{name}.json").read_text())  # the run's own last checkpoint
        summary = summarise(table)
        summary.update(
            {
                "n_materials_planned": vset.n_materials,
                "settings": asdict(vset),
                "wall_time_total_s": previous["validation"]["wall_time_total_s"],
                "note": "summarised from the saved per-material records (--report-only)",
            }
        )
        report = save(
            ValidationResult(table, summary),
            None,
            complete=len(done) >= vset.n_materials,
            wall=previous["wall_time_total_s"],
            load=previous.get("load_average"),
        )
        print(markdown(report))
        return
    cand_summary = None if args.skip_candidates else run_candidates(args, library, relax)
    result = validate_rebuild(
        library,
        refs,
        vset,
        workers=args.workers,
        chunk_size=args.chunk_size,
        checkpoint=lambda r: save(r, cand_summary, complete=False),
        done=done,
        cache_dir=args.cache_dir,
    )
    report = save(result, cand_summary, complete=True)
    print(markdown(report))


def run_candidates(args: argparse.Namespace, library, relax: RelaxSettings) -> dict:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.candidates is None:
            cand_path = tmp / "paper_candidates.csv"
            pd.DataFrame({"formula": PAPER_CANDIDATES}).to_csv(cand_path, index=False)
        else:
            cand_path = args.candidates
        settings = StructureSettings(search=SearchSettings(top_k=args.candidate_top_k))
        small = library.subset(library.table["nsites"].to_numpy() <= args.candidate_max_sites)
        build_structures(cand_path, tmp / "run", library=small, settings=settings)
        best = relax_structures(tmp / "run", settings=relax, library=library, workers=args.workers)
        write_table(best, args.out / "bench_structure_candidates.csv")
    ef = pd.to_numeric(best["formation_energy_per_atom"], errors="coerce")
    return {
        "source": str(args.candidates or "paper's reported compounds"),
        "n_candidates": len(best),
        "n_with_energy": int(ef.notna().sum()),
        "share_negative_e_form_of_all": float((ef < 0).sum() / len(best)) if len(best) else None,
        "share_negative_e_form_of_relaxed": float((ef[ef.notna()] < 0).mean()) if ef.notna().any() else None,
        "rows": best[[c for c in CANDIDATE_COLUMNS if c in best.columns]].to_dict(orient="records"),
    }


def _ranking(s: dict) -> str:
    if not s.get("prototype_ranking"):
        return "ElMD"
    if s.get("ranking", "rule") == "learned":
        slots = "structure types" if s.get("slots") == SlotFilling.STRUCTURE_TYPE else "prototypes"
        return f"distinct {slots} by the learned ranker (gapforge/pretrained/prototype_ranker)"
    return "distinct prototypes by ElMD + prototype frequency"


def _rescore_note(s: dict) -> str:
    if s.get("selection_energy", "chgnet") == "chgnet":
        return ""
    steps = s.get("rescore_steps", 0)
    return (
        f" on the CHGNet-relaxed structures ({steps} own steps)"
        if steps
        else " on the CHGNet-relaxed structures"
    )


def _fmt(x: object, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec) if isinstance(x, float) else str(x)


def markdown(report: dict) -> str:
    v = report["validation"]
    c = report["candidates"]
    s = v["settings"]
    lines = [
        "# Structure stage benchmark",
        "",
        ""
        if report["complete"]
        else f"**Partial: {v['n_materials']} of {v.get('n_materials_planned')} materials done so far.**\n",
        f"Command: `{report['command']}`  ",
        f"CHGNet {report['chgnet_model']}, FIRE + FrechetCellFilter, fmax {s['relax']['fmax']} eV/Å, "
        f"at most {s['relax']['max_steps']} steps, {report['machine']['workers']} worker processes, "
        f"1 torch thread each. Total wall time {report['wall_time_total_s']:.0f} s.",
        "",
        f"## Rebuilding {v['n_materials']} known MP structures ({s.get('sample', 'test')} sample) from "
        "their formula "
        f"(<= {s['max_sites']} sites, top-{s['top_k']} templates relaxed, own formula left out of the "
        "templates, the prototype counts and the hull)",
        "",
        f"Templates: MP library{' + AFLOW prototypes' if s.get('aflow_prototypes') else ''}; ranking: "
        f"{_ranking(s)}. "
        f"Load average at the end: {report.get('load_average', ['?'])[0]} (other helpers' jobs running).",
        "",
        "| metric | value |",
        "|---|---|",
        f"| materials | {v['n_materials']} |",
        f"| rebuilt (a template and a relaxation) | {v.get('n_rebuilt')} |",
        f"| no same-stoichiometry template | {v.get('n_no_template')} |",
        f"| ceiling: prototype (anonymised formula + space group) among the templates | "
        f"{_fmt(v.get('ceiling_prototype_in_library'))} |",
        f"| StructureMatcher match, top-1 template (relaxed) | {_fmt(v.get('match_rate_top1'))} |",
        f"| StructureMatcher match, kept of {s['top_k']} (first-ranked unless another relaxed lower by > "
        f"{s.get('selection_margin', 0.0)} eV/atom by {s.get('selection_energy', 'chgnet')}"
        f"{_rescore_note(s)}; 0 = lowest energy) | "
        f"{_fmt(v.get('match_rate'))} |",
        f"| match, any of the {s['top_k']} (oracle choice) | {_fmt(v.get('match_rate_any_topk'))} |",
        f"| best-of-{s['top_k']} match among rebuilt | {_fmt(v.get('match_rate_among_rebuilt'))} |",
        f"| top-1 match before relaxation | {_fmt(v.get('match_rate_unrelaxed'))} |",
        f"| e_above_hull MAE rebuilt vs MP (eV/atom; ours clipped at 0) | "
        f"{_fmt(v.get('e_above_hull_mae_rebuilt'))} |",
        f"| within 0.1 eV/atom: precision / recall / F1 (rebuilt) | "
        f"{_fmt(v.get('within_0.1_precision_rebuilt'))} / {_fmt(v.get('within_0.1_recall_rebuilt'))} / "
        f"{_fmt(v.get('within_0.1_f1_rebuilt'))} |",
        f"| base rate p: share of these materials within 0.1 eV/atom in MP | "
        f"{_fmt(v.get('share_mp_within_0.1_rebuilt'))} |",
        f"| F1 of always saying 'within' (2p/(1+p)) | {_fmt(v.get('within_0.1_f1_always_within_rebuilt'))} |",
        f"| share more than 0.05 eV/atom below the hull (rebuilt) | "
        f"{_fmt(v.get('share_below_hull_by_0.05_rebuilt'))} |",
        f"| control: CHGNet on the MP structure, e_above_hull MAE | "
        f"{_fmt(v.get('e_above_hull_mae_chgnet_on_mp_structure'))} |",
        f"| control: within 0.1 eV/atom F1, CHGNet on the MP structure | "
        f"{_fmt(v.get('within_0.1_f1_chgnet_on_mp_structure'))} |",
        f"| e_form MAE rebuilt vs MP (eV/atom) | {_fmt(v.get('e_form_mae_rebuilt_vs_mp'))} |",
        f"| e_form median AE rebuilt vs MP (eV/atom) | {_fmt(v.get('e_form_median_ae_rebuilt_vs_mp'))} |",
        f"| e_form MAE, matched only (eV/atom) | {_fmt(v.get('e_form_mae_rebuilt_vs_mp_matched_only'))} |",
        f"| control: CHGNet on the MP structure, e_form MAE (eV/atom) | "
        f"{_fmt(v.get('e_form_mae_chgnet_on_mp_structure'))} |",
        f"| same with MP2020 corrections added again (eV/atom) | "
        f"{_fmt(v.get('e_form_mae_chgnet_on_mp_structure_plus_mp2020'))} |",
        f"| share converged | {_fmt(v.get('share_converged'))} |",
        f"| share with negative e_form (rebuilt) | {_fmt(v.get('share_negative_e_form_rebuilt'))} |",
        f"| validation wall time (s) | {v['wall_time_total_s']:.0f} |",
        "",
        "## The selection rule, on the same materials (analysis, not a tuned result)",
        "",
        "Kept template: the first-ranked one unless another relaxed lower by more than the margin "
        f"(0 = lowest energy, infinite = top-1; this run kept {s.get('selection_margin', 0.0)}; the stage's "
        "margin is chosen on the dev sample by benchmarks/bench_structure_selection.py)."
        + (
            ""
            if s.get("selection_energy", "chgnet") == "chgnet"
            else f" The margins below use CHGNet's energies; with {s['selection_energy']}'s: "
            "benchmarks/bench_selection_potential.py."
        ),
        "",
        "| margin (eV/atom) | match rate |",
        "|---|---|",
        *[f"| {m} | {r:.3f} |" for m, r in v.get("match_rate_by_selection_margin", {}).items()],
        "",
        "## Relaxation seconds per structure by number of sites",
        "",
        "| sites | structures | mean s | median s | max s |",
        "|---|---|---|---|---|",
    ]
    for b in v.get("relax_seconds_by_nsites", []):
        lines.append(
            f"| {b['nsites']} | {b['n_structures']} | {b['mean_s']:.1f} | {b['median_s']:.1f} | "
            f"{b['max_s']:.1f} |"
        )
    if c is None:
        return "\n".join(lines) + "\n"
    lines += [
        "",
        f"## Candidates ({c['source']})",
        "",
        f"{c['n_candidates']} candidates, {c['n_with_energy']} relaxed; "
        "share with negative formation energy: "
        f"{_fmt(c['share_negative_e_form_of_all'])} of all, {_fmt(c['share_negative_e_form_of_relaxed'])} of "
        "those relaxed.",
        "",
        "| formula | template | ElMD | e_form (eV/atom) | e_above_hull (eV/atom) | known phases | converged "
        "| reason |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in c["rows"]:
        cells = [
            "" if isinstance(r.get(k), float) and r.get(k) != r.get(k) else _fmt(r.get(k))
            for k in CANDIDATE_COLUMNS
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

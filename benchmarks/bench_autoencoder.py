"""Benchmark composition autoencoders side by side.

Evaluates model directories written by ``gapforge train autoencoder`` on

* their held-out formulas (saved in the model directory): exact reconstruction,
  decode validity, SMACT validity, novelty;
* random latent points drawn uniformly inside the latent bounds and from a
  Gaussian fitted to the training encodings: decode validity, SMACT validity,
  novelty, uniqueness;

and reports the training time recorded in each ``model.json`` (with the
number of torch threads and the machine's load when it was measured).

Usage::

    export GAPFORGE_DATA_PATH=/work/shared/data OMP_NUM_THREADS=1
    python benchmarks/bench_autoencoder.py --model paper=/tmp/ae_paper --model softmax=/tmp/ae_softmax \
        --samples 5000 --seed 0

Writes ``benchmarks/results/autoencoder.json`` and ``benchmarks/results/autoencoder.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from gapforge.io import write_json, write_text
from gapforge.models.autoencoder import CompositionAutoencoder
from gapforge.models.latent_metrics import DEFAULT_SMACT, evaluate_autoencoder

RESULTS = Path(__file__).parent / "results"
OPTIONS = ("strict", "argmax", "norefine")


def bench_one(
    label: str, path: str, samples: int, seed: int, rule: str | None = None, refine: bool = True
) -> dict:
    ae = CompositionAutoencoder.load(path)
    if rule:
        ae.decode_rule = rule
    if not refine:
        ae.refine_steps = 0
    heldout = ae.heldout_formulas()
    t0 = time.perf_counter()
    ev = evaluate_autoencoder(ae, heldout, n_samples=samples, seed=seed)
    eval_s = time.perf_counter() - t0
    # decode throughput on Gaussian points (no SMACT)
    z = ae.sample(20000, method="gaussian", seed=seed + 7)
    t0 = time.perf_counter()
    ae.decode(z)
    decode_per_s = len(z) / (time.perf_counter() - t0)
    # softmax: share of random points whose per-row argmax was all "absent" (decode kept the
    # single most probable element instead); same seeds as the evaluation
    forced = {}
    if ae.arch == "softmax":
        for method, off in (("uniform", 0), ("gaussian", 1)):
            ae.decode(ae.sample(samples, method=method, seed=seed + off))
            forced[method] = ae.last_forced_ / samples
    meta = ae.metadata_
    refined = getattr(ae, "last_refined_", None) if ae.arch == "softmax" and ae.refine_steps else None
    return {
        "refined_heldout": refined,  # (codes that decoded wrongly, of those fixed by refinement)
        "forced_single_element": forced,
        "label": label,
        "model_dir": str(path),
        "params": ae.get_params(),
        "n_parameters": int(sum(p.numel() for p in ae.net_.parameters())),
        "weights_bytes": (Path(path) / "weights.pt").stat().st_size,
        "precision": meta.get("precision"),
        "n_train": meta.get("n_training_formulas"),
        "n_heldout": len(heldout),
        "train_seconds": meta.get("metrics", {}).get("train_seconds"),
        "train_command": meta.get("command"),
        "torch_threads_training": meta.get("torch_threads"),
        "epochs": ae.epochs,
        "final_loss": ae.history_[-1].loss if ae.history_ else None,
        "evaluation": ev.to_dict(),
        "evaluation_seconds": round(eval_s, 1),
        "decodes_per_second": round(decode_per_s),
    }


def pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f} %"


def markdown(rows: list[dict], samples: int, seed: int) -> str:
    lines = [
        "# Composition autoencoder benchmark",
        "",
        f"Random latent points: {samples} per method (seed {seed}); held-out formulas are those saved in "
        "each model directory (never trained on). SMACT validity = valid decode that passes "
        "`smact.screening.smact_validity` (ICSD-24 oxidation states, Pauling test, alloys not accepted), "
        "as a share of all points. Novel = share of valid decodes that are not training formulas.",
        "",
        "| model | set | n | exact recon. | valid | SMACT-valid | SMACT-valid compounds (>= 2 el.) "
        "| novel | unique | elements/formula |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ev = r["evaluation"]
        for key in ("heldout", "uniform", "gaussian"):
            s = ev[key]
            if s is None:
                continue
            lines.append(
                f"| {r['label']} | {s['source']} | {s['n']} | {pct(s['exact'])} | {pct(s['valid'])} | "
                f"{pct(s['smact_valid'])} | {pct(s.get('smact_compound'))} | {pct(s['novel'])} | "
                f"{pct(s['unique'])} | {s['mean_elements'] or 0:.2f} |"
            )
    for r in rows:
        if r["forced_single_element"]:
            f = r["forced_single_element"]
            lines += [
                "",
                f"{r['label']}: the argmax of every element row was 'absent' for {pct(f['uniform'])} "
                f"of uniform and {pct(f['gaussian'])} of Gaussian points; those decode to their single "
                "most probable element (the constrained maximum), so they count as valid.",
            ]
    for r in rows:
        if r.get("refined_heldout"):
            n_bad, n_fixed = r["refined_heldout"]
            lines += [
                "",
                f"{r['label']}: {n_bad} held-out codes from the encoder decoded wrongly; refinement "
                f"(<= {r['params'].get('refine_steps')} Adam steps on the code, step "
                f"{r['params'].get('refine_lr')}, inside the latent bounds) fixed {n_fixed} of them.",
            ]
    base = rows[0]["evaluation"].get("heldout_smact_baseline") if rows else None
    if base is not None:
        lines += [
            "",
            f"SMACT validity of the held-out formulas themselves (real MP compositions): {pct(base)}.",
        ]
    lines += [
        "",
        "| model | arch | encoder | beta | epochs | train formulas | train time (s) | torch threads "
        "| parameters | weights | decodes/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p = r["params"]
        enc = p.get("encoder_type") or ("conv" if p["arch"] == "paper" else "set")
        lines.append(
            f"| {r['label']} | {p['arch']} | {enc} | {p['beta']} | {r['epochs']} | {r['n_train']} | "
            f"{r['train_seconds']} | {r['torch_threads_training']} | {r['n_parameters']:,} | "
            f"{r['weights_bytes'] / 1e6:.1f} MB ({r['precision']}) | {r['decodes_per_second']:,} |"
        )
    lines += ["", "Training commands:", ""]
    lines += [f"- {r['label']}: `{r['train_command']}`" for r in rows]
    lines += [
        "",
        "Training times are wall-clock on a 2-core machine, never alone on it: the paper reference "
        "and softmax v1 trained at load average ~10, the newer models beside one or two other jobs, "
        "so they overstate the CPU time.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model",
        action="append",
        required=True,
        help="LABEL=DIR[:OPTION...] (repeat); options: strict or argmax (paper decode rule), "
        "norefine (softmax: the encoder's one-pass codes, no code refinement)",
    )
    ap.add_argument(
        "--merge",
        action="store_true",
        help="Keep the rows of the existing results (models no longer on disk), replacing same labels.",
    )
    ap.add_argument("--samples", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--name", default="autoencoder")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for spec in args.model:
        # the label is free text (it may hold '=' or ':'): the directory follows the last '=',
        # and only known option words after it are options
        label, _, path = spec.rpartition("=")
        options: list[str] = []
        while ":" in path and path.rsplit(":", 1)[1] in OPTIONS:
            path, option = path.rsplit(":", 1)
            options.insert(0, option)
        bad = {o for o in path.split(":")[1:] if o and not Path(path).exists()}
        if not label or not path or bad:
            ap.error(f"--model takes LABEL=DIR[:strict|argmax|norefine], got {spec!r}")
        rule = next((o for o in options if o in ("strict", "argmax")), None)
        print(f"evaluating {label} ({path}) ...", flush=True)
        rows.append(bench_one(label, path, args.samples, args.seed, rule, refine="norefine" not in options))
    previous = args.out / f"{args.name}.json"
    if args.merge and previous.is_file():
        new = {r["label"]: r for r in rows}
        old = json.loads(previous.read_text()).get("models", [])
        rows = [new.pop(r["label"], r) for r in old] + list(new.values())
    report = {
        "benchmark": "composition autoencoder",
        "samples_per_method": args.samples,
        "seed": args.seed,
        "smact_settings": DEFAULT_SMACT.__dict__,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
        "models": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(json.loads(json.dumps(report, default=float)), args.out / f"{args.name}.json")
    md = markdown(rows, args.samples, args.seed)
    write_text(md, args.out / f"{args.name}.md")
    print(md)


if __name__ == "__main__":
    main()

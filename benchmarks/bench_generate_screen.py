"""Benchmark: generate + decode + de-duplicate 1.18 M formulas, measure their quality, screen 1 M.

Usage::

    export GAPFORGE_DATA_PATH=/work/shared/data
    python benchmarks/bench_generate_screen.py [--gan default] [--forest default] \
        [--n-generate 1180000] [--n-screen 1000000] [--threads 2]

Writes ``benchmarks/results/bench_generate_screen.json`` and ``.md``. Timings
are wall seconds on this machine (``--threads`` cores for torch and the
forest); peak memory is the process's maximum resident set size after each
phase. When no shipped forest exists, one is trained on ``mp-bandgap``
(seed 0, 100 trees) first; that training is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

# MATGAN (Dan et al., npj Comput. Mater. 6, 84, 2020), GAN trained on SMACT-screened ICSD, 2 M samples.
MATGAN = {"novelty": 0.9253, "smact_valid": 0.845, "source": "Dan et al., npj Comput. Mater. 6, 84 (2020)"}
GOALS = {
    "generate_seconds": 60,
    "screen_seconds": 120,
    "smact_valid": 0.90,
    "unique": 0.95,
    "novel_of_valid": 0.90,
}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gan", default="gan", help="generator: gan, rnn (= default) or a directory")
    ap.add_argument("--forest", default="default")
    ap.add_argument("--n-generate", type=int, default=1_180_000)
    ap.add_argument("--n-screen", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--decode", default=None, help="decoding rule (default: the model's)")
    ap.add_argument(
        "--temperature", type=float, default=None, help="sampling temperature (default: the model's)"
    )
    ap.add_argument(
        "--also-decode", default="sample", help="second rule measured for quality only ('' = none)"
    )
    ap.add_argument("--gap-min", type=float, default=6.0)
    ap.add_argument("--out", type=Path, default=RESULTS / "bench_generate_screen")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from gapforge.encoding import FormulaEncoder
    from gapforge.models.generation import generation_quality, mp_training_formulas, training_counts
    from gapforge.screening.filters import known_formulas
    from gapforge.screening.generate import load_generator
    from gapforge.screening.screen import ScreenSettings, screen

    record: dict = {
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": {"cpu_count": os.cpu_count(), "threads": args.threads, "platform": platform.platform()},
        "load_average_at_start": os.getloadavg(),
        "goals": GOALS,
        "matgan_published": MATGAN,
    }

    # 1. generation ------------------------------------------------------------------
    gan = load_generator(args.gan)
    if args.decode or args.temperature:
        gan = gan.with_sampling(decode_rule=args.decode, temperature=args.temperature)
    gan.generate(1000, seed=args.seed)  # warm-up (first torch call)
    t0 = time.perf_counter()
    gen = gan.generate(args.n_generate, seed=args.seed, progress=False)
    t_gen = time.perf_counter() - t0
    record["generate"] = {
        "model": args.gan,
        "kind": gan.kind,
        "decode_rule": gan.decode_rule,
        "temperature": gan.temperature,
        "model_params": gan.get_params(),
        "seconds": round(t_gen, 2),
        "peak_rss_mb": round(_peak_mb(), 1),
        **gen.stats.to_dict(),
    }
    print(f"generate: {gen.stats.to_dict()}  {t_gen:.1f} s", flush=True)

    # 2. quality ---------------------------------------------------------------------
    enc = FormulaEncoder()
    known = mp_training_formulas()
    train_counts = getattr(gan, "train_counts_", None)
    if train_counts is None:  # a loaded model does not keep its training set: rebuild it
        train_counts = training_counts(known, enc, gan.train_set, label="bench")
    t0 = time.perf_counter()
    q = generation_quality(gen, known_formulas=known, train_counts=train_counts, encoder=enc)
    record["quality"] = {**q.to_dict(), "seconds": round(time.perf_counter() - t0, 2)}
    print(f"quality: {q.to_dict()}", flush=True)
    alt_formulas = None
    if args.also_decode:
        t0 = time.perf_counter()
        alt = gan.with_sampling(decode_rule=args.also_decode).generate(
            args.n_generate, seed=args.seed, progress=False
        )
        t_alt = time.perf_counter() - t0
        qa = generation_quality(alt, known_formulas=known, train_counts=train_counts, encoder=enc)
        record["quality_other_decoding"] = {
            "decode_rule": args.also_decode,
            "temperature": gan.temperature,
            "generate_seconds": round(t_alt, 2),
            **alt.stats.to_dict(),
            **qa.to_dict(),
        }
        print(f"quality ({args.also_decode}): {qa.to_dict()}", flush=True)
        alt_formulas = alt.table["formula"].tolist()
        del alt

    # 3. screen ----------------------------------------------------------------------
    # the distinct formulas of both decodings (a generator with low uniqueness cannot give 1 M
    # distinct formulas from 1.18 M draws; we screen what there is and report the count)
    pools = [gen.table["formula"].tolist()]
    if alt_formulas is not None:
        pools.append(alt_formulas)
    formulas = list(dict.fromkeys(f for pool in pools for f in pool))[: args.n_screen]
    del gen
    model, forest_note = _forest(args.forest, args.threads, args.seed)
    known_set = known_formulas()
    t0 = time.perf_counter()
    res = screen(formulas, model, ScreenSettings(gap_min=args.gap_min), known=known_set)
    t_screen = time.perf_counter() - t0
    record["screen"] = {
        "model": forest_note,
        "n_formulas": len(formulas),
        "gap_min": args.gap_min,
        "seconds": round(t_screen, 2),
        "seconds_per_million": round(t_screen * 1e6 / max(len(formulas), 1), 2),
        "smact_seconds": res.funnel["smact_seconds"],
        "peak_rss_mb": round(_peak_mb(), 1),
        "funnel": res.funnel,
        "top_candidates": res.candidates.head(15)[["formula", "band_gap_mean", "band_gap_std"]]
        .round(3)
        .to_dict(orient="records"),
    }
    print(f"screen: {t_screen:.1f} s, funnel {res.funnel}", flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(record, indent=2, default=float) + "\n")
    Path(f"{args.out}.md").write_text(_markdown(record))
    print(f"wrote {args.out}.json and .md")


def _forest(name: str, threads: int, seed: int):
    from gapforge.errors import ModelError
    from gapforge.models.registry import load_model

    try:
        model = load_model(name, kind="forest")
        model.n_jobs = threads
        return model, f"forest {name}"
    except ModelError as exc:
        if name != "default":
            raise
        from gapforge.data import load_dataset
        from gapforge.models.forest import ForestModel

        print(f"no shipped forest ({exc}); training one on mp-bandgap", flush=True)
        df = load_dataset("mp-bandgap")
        model = ForestModel(n_jobs=threads, random_state=seed).fit(df["formula"].tolist(), df["band_gap"])
        return (
            model,
            f"ForestModel(random_state={seed}) trained on mp-bandgap by the benchmark (no shipped forest)",
        )


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _markdown(r: dict) -> str:
    g, q, s = r["generate"], r["quality"], r["screen"]
    goal = r["goals"]
    m = r["matgan_published"]
    lines = [
        "# Generate + screen benchmark",
        "",
        f"`{r['command']}` on {r['machine']['cpu_count']} cores ({r['machine']['threads']} threads), "
        f"load average at start {', '.join(f'{x:.1f}' for x in r['load_average_at_start'])}.",
        "",
        "## Speed and memory",
        "",
        "| step | formulas | seconds | goal | peak RSS (MB) |",
        "|---|---|---|---|---|",
        f"| generate + decode + de-duplicate | {g['n_samples']:,} samples -> {g['n_unique']:,} distinct "
        f"| {g['seconds']:.1f} | <= {goal['generate_seconds']} | {g['peak_rss_mb']:.0f} |",
        f"| screen (forest + SMACT + filters) | {s['n_formulas']:,} distinct | {s['seconds']:.1f} "
        f"(SMACT {s['smact_seconds']:.1f}; {s['seconds_per_million']:.1f} per million) "
        f"| <= {goal['screen_seconds']} per million | {s['peak_rss_mb']:.0f} |",
        "",
        "## Generator quality",
        "",
        f"Generator `{g['model']}` ({g.get('kind', 'gan')}), decoding rule `{g['decode_rule']}`, "
        f"temperature {g.get('temperature', 1.0)}.",
        "",
        "| measure | this generator | MATGAN (published) | goal |",
        "|---|---|---|---|",
        f"| decodable samples | {_pct(q['decodable'])} | - | - |",
        f"| unique (distinct / decodable) | {_pct(q['unique'])} | - | >= {_pct(goal['unique'])} |",
        f"| novel (distinct formulas not in MP) | {_pct(q['novel'])} | {_pct(m['novelty'])} | - |",
        f"| SMACT-valid (distinct formulas) | {_pct(q['smact_valid'])} | - "
        f"| >= {_pct(goal['smact_valid'])} |",
        f"| SMACT-valid (all samples) | {_pct(q['smact_valid_samples'])} | {_pct(m['smact_valid'])} | - |",
        f"| novel among SMACT-valid | {_pct(q['novel_of_valid'])} | - | >= {_pct(goal['novel_of_valid'])} |",
        f"| distinct formulas SMACT-valid + novel (+ simple: < 8 atoms, < 4 elements) "
        f"| {q.get('n_valid_novel', 0):,} ({q.get('n_valid_novel_simple', 0):,}) | - | - |",
        f"| element frequency r vs training | {q['element_freq_corr']:.3f} | - | - |",
        f"| element distribution TVD vs training | {q['element_freq_tvd']:.3f} | - | - |",
        "",
        f"MATGAN figures: {m['source']} (GAN trained on SMACT-screened ICSD, 2 M samples).",
        "",
    ]
    if "quality_other_decoding" in r:
        a = r["quality_other_decoding"]
        lines += [
            f"Same generator and seed, {a['n_samples']:,} samples, decoding rule `{a['decode_rule']}` "
            f"(temperature {a['temperature']}): {a['generate_seconds']:.1f} s; "
            f"decodable {_pct(a['decodable'])}, "
            f"unique {_pct(a['unique'])} ({a['n_unique']:,} distinct), novel {_pct(a['novel'])}, "
            f"SMACT-valid {_pct(a['smact_valid'])} (samples {_pct(a['smact_valid_samples'])}), "
            f"novel among valid {_pct(a['novel_of_valid'])}.",
            "",
        ]
    lines += [
        "Elements per formula (share of distinct formulas, 1..8):",
        "",
        f"- generated: {q['n_elements_hist']['generated']}",
        f"- training:  {q['n_elements_hist']['training']}",
        "",
        "Atom counts per element (share of counts 1..8):",
        "",
        f"- generated: {q['count_hist']['generated']}",
        f"- training:  {q['count_hist']['training']}",
        "",
        "## Screen funnel (predicted gap >= {} eV)".format(s["gap_min"]),
        "",
        f"Model: {s['model']}.",
        "",
        "| filter | removed | left |",
        "|---|---|---|",
    ]
    for name, left in s["funnel"]["sequential"].items():
        lines.append(f"| {name} | {s['funnel']['removed'][name]:,} | {left:,} |")
    lines += ["", "Top candidates:", "", "| formula | gap (eV) | std (eV) |", "|---|---|---|"]
    for c in s["top_candidates"]:
        lines.append(f"| {c['formula']} | {c['band_gap_mean']:.2f} | {c['band_gap_std']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

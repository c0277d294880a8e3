"""Benchmark: formula generators side by side, across sampling temperatures, at 1.18 M samples.

Usage::

    export GAPFORGE_DATA_PATH=/work/shared/data
    python benchmarks/bench_generators.py --spec gan=0.8,1.0,1.2 --spec rnn=1.0,1.25,1.5,1.75 \
        [--n 1180000] [--threads 2] [--seed 0]

Each ``--spec MODEL=T1,T2,...`` names a generator (``gan``/``default``, ``rnn``
or a model directory) and the temperatures to sample it at. For every pair the
script draws ``--n`` samples, decodes and de-duplicates them (timed), and
measures them as :func:`gapforge.models.gan.generation_quality` does: decodable,
unique, novel, SMACT-valid and novel among SMACT-valid, plus the number the
screen of the paper can use: distinct formulas that are SMACT-valid, novel and
*simple* (fewer than 8 atoms and fewer than 4 elements).

Writes ``benchmarks/results/bench_generators.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
GOALS = {"unique": 0.95, "smact_valid": 0.90, "novel_of_valid": 0.90}


def _spec(text: str) -> tuple[str, list[float]]:
    model, _, temps = text.partition("=")
    if not model or not temps:
        raise argparse.ArgumentTypeError(f"expected MODEL=T1,T2,..., got {text!r}")
    try:
        return model, [float(t) for t in temps.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"temperatures must be numbers: {text!r}") from None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", type=_spec, action="append", required=True, help="MODEL=T1,T2,...")
    ap.add_argument("--n", type=int, default=1_180_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS / "bench_generators")
    args = ap.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from gapforge.encoding import FormulaEncoder
    from gapforge.models.generation import generation_quality, mp_training_formulas, training_counts
    from gapforge.screening.generate import load_generator

    enc = FormulaEncoder()
    known = mp_training_formulas()
    train_cache: dict[str, np.ndarray] = {}
    rows = []
    for model_name, temps in args.spec:
        base = load_generator(model_name)
        train = train_cache.get(base.train_set)
        if train is None:
            train = train_cache[base.train_set] = training_counts(known, enc, base.train_set, label="bench")
        base.generate(1000, seed=args.seed)  # warm-up (first torch call)
        for t in temps:
            gen = base.with_sampling(temperature=t)
            t0 = time.perf_counter()
            res = gen.generate(args.n, seed=args.seed, progress=False)
            seconds = time.perf_counter() - t0
            q = generation_quality(res, known_formulas=known, train_counts=train, encoder=enc)
            row = {
                "model": model_name,
                "kind": base.kind,
                "decode_rule": gen.decode_rule,
                "temperature": t,
                "seconds": round(seconds, 2),
                **{k: v for k, v in q.to_dict().items() if k not in ("n_elements_hist", "count_hist")},
                "n_elements_hist": q.n_elements_hist["generated"],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    record = {
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": {"cpu_count": os.cpu_count(), "threads": args.threads, "platform": platform.platform()},
        "load_average_at_start": os.getloadavg(),
        "n_samples": args.n,
        "seed": args.seed,
        "goals": GOALS,
        "training_elements_hist": {k: v.tolist() for k, v in _hist(train_cache).items()},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(_markdown(record))
    print(f"wrote {args.out.with_suffix('.md')}")


def _hist(train_cache: dict) -> dict:
    import numpy as np

    from gapforge.encoding import n_elements_of

    out = {}
    for name, counts in train_cache.items():
        h = np.bincount(np.clip(n_elements_of(counts), 0, 8), minlength=9)[1:]
        out[name] = (h / max(h.sum(), 1)).round(4)
    return out


def _pct(v: float) -> str:
    return f"{100 * v:.1f} %"


def _markdown(r: dict) -> str:
    lines = [
        "# Formula generators across sampling temperatures",
        "",
        f"`{r['command']}`; {r['n_samples']:,} samples per row, seed {r['seed']}, "
        f"{r['machine']['threads']} torch threads, load average at start "
        f"{', '.join(f'{x:.1f}' for x in r['load_average_at_start'])}.",
        "",
        "Unique = distinct / decodable samples; novel = distinct formulas not among the Materials "
        "Project formulas; SMACT-valid over distinct formulas; *valid + novel + simple* = distinct "
        "formulas that are SMACT-valid, novel, with fewer than 8 atoms and fewer than 4 elements "
        "(what the paper's screen can use).",
        "",
        "| generator | T | seconds | decodable | unique | novel | SMACT-valid | novel of valid "
        "| valid + novel | valid + novel + simple |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in r["rows"]:
        lines.append(
            f"| {x['model']} ({x['kind']}, {x['decode_rule']}) | {x['temperature']:g} | {x['seconds']:.1f} "
            f"| {_pct(x['decodable'])} | {_pct(x['unique'])} | {_pct(x['novel'])} | {_pct(x['smact_valid'])} "
            f"| {_pct(x['novel_of_valid'])} | {x['n_valid_novel']:,} | {x['n_valid_novel_simple']:,} |"
        )
    g = r["goals"]
    lines += [
        "",
        f"Goals (issue 5): unique >= {_pct(g['unique'])}, SMACT-valid >= {_pct(g['smact_valid'])}, "
        f"novel among valid >= {_pct(g['novel_of_valid'])}.",
        "",
        "Elements per distinct formula (share with 1..8 elements):",
        "",
    ]
    for name, h in r["training_elements_hist"].items():
        lines.append(f"- training (`{name}`): {h}")
    for x in r["rows"]:
        lines.append(f"- {x['model']} T={x['temperature']:g}: {[round(v, 4) for v in x['n_elements_hist']]}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

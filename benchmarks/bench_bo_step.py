"""Time one surrogate fit + acquisition step, gapforge (BoTorch) vs ``bayesian-optimization``.

Same latent problem for both: the latent space of the campaign codec (the
shipped autoencoder when present, else a linear PCA codec over the one-hot
formula matrices, fitted on the mp-bandgap formulas), labelled points = random
mp-bandgap formulas with their PBE gaps, UCB with kappa = 10 (BoTorch beta = 100).

1. Step time at n = 300, 1,000, 2,000 labelled points: gapforge's cold fit
   (hyper-parameters from scratch), warm fit (as in a campaign: warm-started
   from the fit of the previous iteration, which had 20 labels fewer, on the
   same subset key stream) and conditioning only (``refit_every`` > 1), each +
   one acquisition optimisation (q = 1); ``bayes_opt``'s ``suggest()`` (its GP
   fit + acquisition).
2. Best gap for the same budget: from the same 300 labelled formulas, each method
   proposes ``--budget`` latent points one at a time; a point is decoded and
   labelled by the oracle (a decode that is invalid or cannot be labelled scores
   0 eV for bayes_opt, which needs a number; gapforge drops it and counts it).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_bo_step.py --oracle DIR --budget 60

Writes ``benchmarks/results/bench_bo_step.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from gapforge import columns as C
from gapforge.active import (
    AcquisitionSettings,
    Campaign,
    Goal,
    LinearCodec,
    ModelOracle,
    fit_surrogate,
    parse_config,
)
from gapforge.active.acquisition import propose
from gapforge.active.codec import AutoencoderCodec
from gapforge.active.surrogate import SurrogateSettings
from gapforge.data import load_dataset
from gapforge.io import write_json, write_text

RESULTS = Path(__file__).parent / "results"
#: labels added since the previous iteration in the warm-fit timing (a batch of q = 20)
PREV_STEP = 20


def _codec(kind: str, latent_dim: int, seed: int):
    if kind in ("auto", "autoencoder"):
        try:
            return AutoencoderCodec("default"), "autoencoder (shipped)"
        except Exception as exc:
            if kind == "autoencoder":
                raise
            print(f"no shipped autoencoder ({exc}); using a linear codec")
    df = load_dataset("mp-bandgap")
    rng = np.random.default_rng(seed)
    formulas = df[C.FORMULA].to_numpy()[rng.choice(len(df), 20000, replace=False)].tolist()
    return LinearCodec(latent_dim=latent_dim).fit(formulas), f"linear PCA codec, d={latent_dim}"


def _bayes_opt(bounds: np.ndarray, kappa: float, seed: int):
    from bayes_opt import BayesianOptimization, acquisition

    pbounds = {f"z{i:03d}": (float(lo), float(hi)) for i, (lo, hi) in enumerate(bounds.T)}
    return BayesianOptimization(
        f=None,
        pbounds=pbounds,
        acquisition_function=acquisition.UpperConfidenceBound(kappa=kappa, random_state=seed),
        random_state=seed,
        verbose=0,
        allow_duplicate_points=True,
    )


def _bo_vector(point: dict, d: int) -> np.ndarray:
    return np.array([point[f"z{i:03d}"] for i in range(d)])


def time_steps(codec, sizes, reps: int, seed: int, bo_reps: int | None = None) -> list[dict]:
    df = load_dataset("mp-bandgap")
    z_all = codec.encode(df[C.FORMULA].tolist())
    ok = np.isfinite(z_all).all(axis=1)
    z_all, y_all = z_all[ok], df[C.BAND_GAP].to_numpy()[ok]
    bounds = np.asarray(codec.latent_bounds, dtype=np.float64)
    d = bounds.shape[1]
    acq = AcquisitionSettings(kind="ucb", kappa=10.0, q=1)
    sur = SurrogateSettings()
    rows = []
    for n in sizes:
        rng = np.random.default_rng(seed + n)
        idx = rng.choice(len(z_all), n, replace=False)
        x, y = z_all[idx], y_all[idx]
        timing: dict[str, list[float]] = {}

        def clock(key: str, t_wall: float, t_cpu: float, timing: dict = timing) -> None:
            timing.setdefault(f"{key}_s", []).append(time.perf_counter() - t_wall)
            timing.setdefault(f"{key}_cpu_s", []).append(time.process_time() - t_cpu)

        for r in range(reps):
            t0, c0 = time.perf_counter(), time.process_time()
            cold = fit_surrogate(x, y, bounds, sur, seed=r)
            clock("cold_fit", t0, c0)
            propose(cold.model, bounds, Goal(), acq, seed=r)
            clock("cold", t0, c0)
            # a campaign iteration: the previous iteration fitted the first n - PREV_STEP
            # points with the same subset seed; this one warm-starts from it on all n
            prev = fit_surrogate(x[:-PREV_STEP], y[:-PREV_STEP], bounds, sur, seed=r)
            t0, c0 = time.perf_counter(), time.process_time()
            warm = fit_surrogate(x, y, bounds, sur, warm_start=prev.hyperparameters, seed=r)
            clock("warm_fit", t0, c0)
            t1, c1 = time.perf_counter(), time.process_time()
            propose(warm.model, bounds, Goal(), acq, seed=r)
            clock("acq", t1, c1)
            clock("warm", t0, c0)
            t0, c0 = time.perf_counter(), time.process_time()
            cond = fit_surrogate(
                x, y, bounds, sur, warm_start=cold.hyperparameters, fit_hyperparameters=False
            )
            propose(cond.model, bounds, Goal(), acq, seed=r)
            clock("condition", t0, c0)
            if bo_reps is not None and r >= bo_reps:
                continue  # bayes_opt's suggest costs minutes in 128 dimensions: fewer repeats
            bo = _bayes_opt(bounds, 10.0, seed + r)
            for xi, yi in zip(x, y, strict=True):
                bo.register({f"z{i:03d}": float(v) for i, v in enumerate(xi)}, float(yi))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0, c0 = time.perf_counter(), time.process_time()
                bo.suggest()
                clock("bayes_opt", t0, c0)
        row = {"n": n, "d": d, **{k: statistics.median(v) for k, v in timing.items()}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def best_gap_race(codec, oracle_dir: str, budget: int, seed: int) -> dict:
    init = load_dataset("init-300")[[C.FORMULA, C.BAND_GAP]]
    oracle = ModelOracle.load(oracle_dir)
    bounds = np.asarray(codec.latent_bounds, dtype=np.float64)
    d = bounds.shape[1]
    out = {}
    # gapforge campaign (in memory), q = 1, UCB kappa = 10
    cfg = parse_config(
        {
            "seed": seed,
            "iterations": budget,
            "acquisition": {"kind": "ucb", "kappa": 10, "q": 1},
            "codec": {"kind": "linear"},
            "oracle": {"kind": "external"},
        }
    )
    t0, c0 = time.perf_counter(), time.process_time()
    camp = Campaign.create(cfg, None, codec=codec, oracle=oracle, initial=init)
    res = camp.run(progress=False)
    s = res.summary()
    new = res.labelled[res.labelled["source"] != "initial"]
    out["gapforge"] = {
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
        "best_new_gap": float(new[C.BAND_GAP].max()) if len(new) else None,
        "best_new_formula": str(new.loc[new[C.BAND_GAP].idxmax(), C.FORMULA]) if len(new) else None,
        "valid_decode_rate": s["valid_decode_rate"],
        "new_formulas": len(new),
        "duplicates": s["duplicates"],
        "invalid": s["invalid"],
    }
    print(json.dumps(out["gapforge"]), flush=True)
    # bayes_opt, the paper's package: suggest -> decode -> oracle -> register
    t0, c0 = time.perf_counter(), time.process_time()
    bo = _bayes_opt(bounds, 10.0, seed)
    z0 = codec.encode(init[C.FORMULA].tolist())
    known = dict(zip(init[C.FORMULA], init[C.BAND_GAP], strict=True))
    for zi, yi in zip(z0, init[C.BAND_GAP], strict=True):
        if np.isfinite(zi).all():
            bo.register({f"z{i:03d}": float(v) for i, v in enumerate(zi)}, float(yi))
    seen, n_valid, n_dup, gaps = set(), 0, 0, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(budget):
            point = bo.suggest()
            f = codec.decode(_bo_vector(point, d)[None])[0]
            if f is None:
                y = 0.0
            else:
                n_valid += 1
                if f in known or f in seen:
                    n_dup += 1
                    y = known.get(f, 0.0)
                else:
                    y = float(oracle.label([f])[0])
                    y = 0.0 if not np.isfinite(y) else y
                    known[f] = y
                    seen.add(f)
                    gaps.append((y, f))
            bo.register(point, y)
    best = max(gaps) if gaps else (None, None)
    out["bayes_opt"] = {
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
        "best_new_gap": best[0],
        "best_new_formula": best[1],
        "valid_decode_rate": n_valid / budget,
        "new_formulas": len(seen),
        "duplicates": n_dup,
        "invalid": budget - n_valid,
    }
    print(json.dumps(out["bayes_opt"]), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="300,1000,2000")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--budget", type=int, default=60)
    ap.add_argument(
        "--bayes-opt-reps", type=int, default=None, help="repeats of bayes_opt's suggest (default: --reps)"
    )
    ap.add_argument("--codec", default="auto", help="auto, autoencoder or linear")
    ap.add_argument("--latent-dim", type=int, default=32)
    ap.add_argument("--oracle", default="default", help="oracle model directory for the best-gap race")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--name", default="bench_bo_step", help="stem of the JSON and markdown files")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    codec, codec_name = _codec(args.codec, args.latent_dim, args.seed)
    t0 = time.time()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    steps = time_steps(codec, sizes, args.reps, args.seed, bo_reps=args.bayes_opt_reps)
    race = best_gap_race(codec, args.oracle, args.budget, args.seed) if args.budget > 0 else {}
    load = os.getloadavg()
    record = {
        "codec": codec_name,
        "oracle": args.oracle,
        "budget": args.budget,
        "reps": args.reps,
        "steps": steps,
        "race": race,
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "load_average_at_end": load,
        "platform": platform.platform(),
        "seconds": time.time() - t0,
        "command": f"OMP_NUM_THREADS={args.threads} python benchmarks/bench_bo_step.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(record, args.out / f"{args.name}.json")
    lines = [
        "# One BO step: gapforge (BoTorch) vs bayesian-optimization",
        "",
        f"Latent space: {codec_name}; UCB kappa = 10 (BoTorch beta = 100); q = 1; "
        f"{args.threads} torch thread(s); {os.cpu_count()} cores (load average at the end {load[0]:.1f}).",
        "",
        "CPU seconds of this process (robust to the shared machine's load), wall seconds in brackets; "
        "median of the repeats. Surrogate settings: "
        + ", ".join(f"{k} {v}" for k, v in SurrogateSettings().to_dict().items())
        + ".",
        "",
        "| labelled n | d | gapforge cold fit + acq | gapforge warm fit + acq (campaign default) | "
        "of which acquisition | gapforge condition-only + acq | bayes_opt suggest |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in steps:
        cells = [
            f"{r[k + '_cpu_s']:.2f} ({r[k + '_s']:.2f})" if k + "_cpu_s" in r else "not run"
            for k in ("cold", "warm", "acq", "condition", "bayes_opt")
        ]
        lines.append(f"| {r['n']} | {r['d']} | " + " | ".join(cells) + " |")
    if race:
        lines += [
            "",
            f"## Best gap for the same budget ({args.budget} proposals from init-300, oracle {args.oracle})",
            "",
            "| method | best new gap (eV) | formula | valid decodes | new formulas | duplicates "
            "| CPU s (wall s) |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, r in race.items():
            gap = "-" if r["best_new_gap"] is None else f"{r['best_new_gap']:.3f}"
            lines.append(
                f"| {name} | {gap} | {r['best_new_formula']} | {r['valid_decode_rate']:.1%} "
                f"| {r['new_formulas']} | {r['duplicates']} | {r['cpu_seconds']:.0f} ({r['seconds']:.0f}) |"
            )
    lines += ["", f"Command: `{record['command']}`", ""]
    write_text("\n".join(lines), args.out / f"{args.name}.md")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

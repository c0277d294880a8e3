"""Inner-CV selection of experimental-head variants on matbench_expt_gap (test folds untouched).

For each matbench fold (``KFold(5, shuffle=True, random_state=18012019)``) the outer training
rows are split into 4 inner folds; every variant is fitted on 3 and scored on the 4th, and the
mean inner MAE over the 4 is what selects. The outer test fold is scored too (reported, never
used to select). A variant is a set of :class:`~gapforge.models.experiment.ExperimentHead`
arguments (:data:`VARIANTS`; booster settings as changes to ``HEAD_BOOSTER``, seeded with the
fold); the head's own ``design`` / ``fit_design`` / ``predict_design`` do the work, so what is
selected here is the code that ships. Point = the gate's median with std scale 0.65 (no CDF
recalibration: the recalibrated median moves MAE by < 0.001 eV). The gate (classifier and
quantile regressors) depends on the design and the ``booster`` settings only, so it is fitted
once per (design, booster, split) and cached; variants that change the gap regressor reuse it.
Results merge into ``results/bench_expt_select.json`` (resumable per variant/fold) and ``.md``.

    PYTHONPATH=src GAPFORGE_DATA_PATH=../shared/data OMP_NUM_THREADS=1 \
        python benchmarks/bench_expt_select.py log log-lr02-800 [...]
    python benchmarks/bench_expt_select.py --verify log --folds 0   # re-score, compare with the JSON

The PBE oracle (``GAPFORGE_EXPT_ORACLE``, default the shipped one) was trained on MP PBE
labels only (matbench_mp_gap fold 0's training rows), never on measured gaps, so its outputs
carry no test-fold label into the inputs; everything fitted on measured gaps here sees only the
rows it is trained on. Scratch (designs, gate outputs): ``$GAPFORGE_BENCH_WORK/expt_select``
(default ``runs/bench_matbench/expt_select``). Results elsewhere: ``GAPFORGE_EXPT_SELECT_OUT=path.json``.
"""

import argparse
import hashlib
import json
import os
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import KFold

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS
from bench_matbench import _fold_parts, _task_table
from gapforge import columns as C
from gapforge.models.experiment import HEAD_BOOSTER, ExperimentHead
from gapforge.models.metal_gate import combine

WORK = Path(os.environ.get("GAPFORGE_BENCH_WORK", "runs/bench_matbench")) / "expt_select"
ORACLE = os.environ.get("GAPFORGE_EXPT_ORACLE", "src/gapforge/pretrained/oracle")
OUT = Path(os.environ.get("GAPFORGE_EXPT_SELECT_OUT", RESULTS / "bench_expt_select.json"))
STD_SCALE = 0.65

#: variant name -> ExperimentHead arguments; ``booster`` / ``regressor_booster`` are changes to
#: HEAD_BOOSTER (the seed is the fold's). Records of variants the head cannot express (kNN
#: inputs, oracle quantiles, host Magpie with plain PBE inputs, l2) stay in the JSON from the
#: flag-based script before this one (commit d69bdc4 and earlier).
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "log": {"target": "log1p"},
    "bag5": {"n_bags": 5, "bag_fraction": 0.8},
    "log-bag5": {"target": "log1p", "n_bags": 5, "bag_fraction": 0.8},
    "lr02-800": {"regressor_booster": {"learning_rate": 0.02, "max_iter": 800}},
    "log-lr02-800": {"target": "log1p", "regressor_booster": {"learning_rate": 0.02, "max_iter": 800}},
    "log-lr01-1600": {"target": "log1p", "regressor_booster": {"learning_rate": 0.01, "max_iter": 1600}},
    "log-lr02-800-all": {"target": "log1p", "booster": {"learning_rate": 0.02, "max_iter": 800}},
    "log-msl5": {"target": "log1p", "regressor_booster": {"min_samples_leaf": 5}},
    "leaf15-msl5": {"regressor_booster": {"max_leaf_nodes": 15, "min_samples_leaf": 5, "max_iter": 500}},
    "log-mono": {"target": "log1p", "monotone_pbe": True},
    "log-lr02-800-mono": {
        "target": "log1p",
        "monotone_pbe": True,
        "regressor_booster": {"learning_rate": 0.02, "max_iter": 800},
    },
    # seed bagging over all rows: members differ through feature subsampling only
    "log-lr02-800-mf05": {
        "target": "log1p",
        "regressor_booster": {"learning_rate": 0.02, "max_iter": 800, "max_features": 0.5},
    },
    "log-lr02-800-mf05-bag5": {
        "target": "log1p",
        "regressor_booster": {"learning_rate": 0.02, "max_iter": 800, "max_features": 0.5},
        "n_bags": 5,
        "bag_fraction": 1.0,
    },
    "log-lr02-800-mf03-bag5": {
        "target": "log1p",
        "regressor_booster": {"learning_rate": 0.02, "max_iter": 800, "max_features": 0.3},
        "n_bags": 5,
        "bag_fraction": 1.0,
    },
    "log-lr02-800-l2-1": {
        "target": "log1p",
        "regressor_booster": {"learning_rate": 0.02, "max_iter": 800, "l2_regularization": 1.0},
    },
    "hpbe0.02": {"host_fraction": 0.02},
    "hpbe0.05": {"host_fraction": 0.05},
    "hpbe0.05-bag5": {"host_fraction": 0.05, "n_bags": 5, "bag_fraction": 0.8},
    "hpbe0.05-log": {"host_fraction": 0.05, "target": "log1p"},
    "hostpbe0.02": {"host_fraction": 0.02, "host_magpie": True},
    "hostpbe0.05": {"host_fraction": 0.05, "host_magpie": True},
    "hostpbe0.05-bag5": {"host_fraction": 0.05, "host_magpie": True, "n_bags": 5, "bag_fraction": 0.8},
    "hostpbe0.05-log": {"host_fraction": 0.05, "host_magpie": True, "target": "log1p"},
}


def make_head(name: str, fold: int) -> ExperimentHead:
    """The variant's unfitted head, every booster seeded with the fold (as the flag-based script did)."""
    kw = dict(VARIANTS[name])
    booster = replace(HEAD_BOOSTER, **kw.pop("booster", {}), seed=fold)
    reg = kw.pop("regressor_booster", None)
    return ExperimentHead(
        **kw,
        booster=booster,
        regressor_booster=None if reg is None else replace(HEAD_BOOSTER, **reg, seed=fold),
    )


def design_key(head: ExperimentHead) -> str:
    """Name of the head's design (its inputs depend on these parameters only)."""
    if head.host_fraction == 0:
        return "base" if head.features == "magpie+pbe" else head.features
    return f"{'hostpbe' if head.host_magpie else 'hpbe'}{head.host_fraction:g}"


class Designs:
    """Design matrices of every expt_gap row, computed once per design by ``ExperimentHead.design``."""

    def __init__(self, formulas: list[str]) -> None:
        self.formulas = formulas
        self._pbe = None

    def __call__(self, head: ExperimentHead) -> np.ndarray:
        path = WORK / f"design_{design_key(head)}.npz"
        if path.is_file():
            return np.load(path)["X"]
        from gapforge.models.registry import load_model

        self._pbe = self._pbe or load_model(ORACLE)
        d = head.design(self.formulas, self._pbe)
        if not d.valid.all():
            raise SystemExit(f"expt_gap rows the head cannot read: {np.flatnonzero(~d.valid)[:5]}")
        np.savez(path.with_suffix(".tmp.npz"), X=d.X)
        path.with_suffix(".tmp.npz").replace(path)
        return d.X


def gate_cache(head: ExperimentHead, fold: int, split: str) -> Path:
    """Where the gate outputs of this (design, booster settings, split) live.

    The base design with ``HEAD_BOOSTER`` keeps the flag-based script's names
    (``inner_{fold}_{k}.npz``, ``outer_{fold}.npz``), so its caches stay valid.
    """
    key = design_key(head)
    if key == "base" and head.booster_settings == HEAD_BOOSTER.with_seed(fold):
        return WORK / f"{split}.npz"
    tag = hashlib.sha256(json.dumps([key, head.booster_settings.to_dict()]).encode()).hexdigest()[:10]
    return WORK / f"gate_{key}_{tag}_{split}.npz"


def split_mae(
    head: ExperimentHead, X: np.ndarray, y: np.ndarray, A: np.ndarray, B: np.ndarray, cache: Path
) -> float:
    """MAE on rows ``B`` of the head fitted on rows ``A`` (the gate's median, std scale 0.65)."""
    try:
        with np.load(cache) as cz:
            p, s = cz["p"], cz["s"]
    except FileNotFoundError:
        gate = head.fit_design(X[A], y[A], gate=True, regressor=False).predict_design(X[B])
        p, s = gate.p_metal, gate.sigma
        np.savez(cache.with_suffix(".tmp.npz"), p=p, s=s)
        cache.with_suffix(".tmp.npz").replace(cache)
    mu = head.fit_design(X[A], y[A], gate=False, regressor=True).predict_design(X[B]).mu
    return float(np.abs(combine(p, mu, s, std_scale=STD_SCALE).point - y[B]).mean())


def score(name: str, fold: int, designs: Designs, y: np.ndarray) -> dict[str, Any]:
    """Inner-CV MAE (selects) and outer test MAE (reported) of one variant on one matbench fold."""
    t0 = time.time()
    head = make_head(name, fold)
    X = designs(head)
    tr, va, te = _fold_parts(len(y), fold)
    rows = np.r_[tr, va]  # the outer training part; te never used to select
    inner_abs = [
        split_mae(head, X, y, rows[a], rows[b], gate_cache(head, fold, f"inner_{fold}_{k}")) * len(b)
        for k, (a, b) in enumerate(KFold(4, shuffle=True, random_state=fold).split(rows))
    ]
    outer = split_mae(head, X, y, rows, te, gate_cache(head, fold, f"outer_{fold}"))
    return {
        "inner_cv_mae": float(np.sum(inner_abs) / len(rows)),  # pooled over the inner folds' rows
        "test_mae": outer,
        "seconds": round(time.time() - t0, 1),
        "load_avg_end": [round(x, 2) for x in os.getloadavg()],
        "head_params": head.card_params(),
    }


def write_md(res: dict, ref: str = "log") -> None:
    lines = [
        "# Experimental head: inner-CV selection (matbench_expt_gap)",
        "",
        "Inner = MAE pooled over 4 inner folds of each outer fold's training rows (what selects); test = "
        "the outer test fold (reported only). `bench_expt_select.py` docstring for the protocol; "
        "`PYTHONPATH=src GAPFORGE_DATA_PATH=../shared/data OMP_NUM_THREADS=1 nice -n 10 python "
        "benchmarks/bench_expt_select.py NAME ...` (records since 2026-12-01 06:30 UTC carry their command "
        "and date in the JSON). "
        f"Δ {ref} = inner MAE minus the `{ref}` variant's on the same fold (negative: better). "
        "Load = 1-min load average of the 2-core machine when each fold ended (other jobs ran).",
        "",
        f"| variant | folds | inner MAE mean ± sd | inner per fold | Δ {ref} per fold | test MAE mean ± sd "
        "| test per fold | s/fold | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def sd(v: np.ndarray) -> float:
        return float(v.std(ddof=1)) if len(v) > 1 else 0.0

    names = sorted({k.split("/")[0] for k in res})
    for n in names:
        folds = [f for f in range(5) if f"{n}/fold{f}" in res]
        rows = [res[f"{n}/fold{f}"] for f in folds]
        a = np.array([r["inner_cv_mae"] for r in rows])
        b = np.array([r["test_mae"] for r in rows])
        delta = [
            f"{r['inner_cv_mae'] - res[f'{ref}/fold{f}']['inner_cv_mae']:+.4f}"
            if f"{ref}/fold{f}" in res
            else "-"
            for f, r in zip(folds, rows, strict=True)
        ]
        loads = [r["load_avg_end"][0] for r in rows if r.get("load_avg_end")]
        load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "-"
        lines.append(
            f"| {n} | {len(rows)} | {a.mean():.4f} ± {sd(a):.4f} | {', '.join(f'{v:.4f}' for v in a)} | "
            f"{', '.join(delta)} | {b.mean():.3f} ± {sd(b):.3f} | {', '.join(f'{v:.3f}' for v in b)} | "
            f"{np.mean([r['seconds'] for r in rows]):.0f} | {load} |"
        )
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "variants", nargs="*", help=f"any of {sorted(VARIANTS)} (default all); 'md' rewrites the table"
    )
    ap.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument(
        "--verify", action="store_true", help="re-score and compare with the JSON (nothing written)"
    )
    ap.add_argument(
        "--reference", default="log", help="the variant the markdown's per-fold differences are against"
    )
    args = ap.parse_args(argv)
    if args.variants == ["md"]:
        write_md(json.loads(OUT.read_text()), args.reference)
        return
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        ap.error(f"unknown variants {unknown}; known: {sorted(VARIANTS)}")
    WORK.mkdir(parents=True, exist_ok=True)
    df = _task_table("expt_gap")
    y = df[C.BAND_GAP].to_numpy(float)
    designs = Designs(df[C.FORMULA].tolist())
    try:
        res = json.loads(OUT.read_text())
    except FileNotFoundError:
        res = {}
    bad = 0
    for name in args.variants or list(VARIANTS):
        for fold in args.folds:
            key = f"{name}/fold{fold}"
            if args.verify:
                rec, old, pair = score(name, fold, designs, y), res.get(key), ("inner_cv_mae", "test_mae")
                # equal up to float rounding of the pooled inner sum (1e-12 relative)
                same = old is not None and all(np.isclose(rec[k], old[k], rtol=1e-12, atol=0) for k in pair)
                bad += not same
                diff = old and max(abs(rec[k] - old[k]) for k in pair)
                now, then = {k: rec[k] for k in pair}, old and {k: old[k] for k in pair}
                verdict = "identical" if same else "DIFFERS"
                print(key, verdict, f"max |diff| {diff}", now, "record:", then, flush=True)
                continue
            if key in res:
                continue
            res[key] = {
                **score(name, fold, designs, y),
                "command": shlex.join(["python", "benchmarks/bench_expt_select.py", *argv]),
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            tmp = OUT.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(res, indent=1))
            tmp.replace(OUT)
            print(
                key,
                {k: v for k, v in res[key].items() if k in ("inner_cv_mae", "test_mae", "seconds")},
                flush=True,
            )
    if args.verify:
        sys.exit(1 if bad else 0)
    write_md(res, args.reference)


if __name__ == "__main__":
    main(sys.argv[1:])

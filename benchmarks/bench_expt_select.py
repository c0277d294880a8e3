"""Inner-CV selection of experimental-head variants on matbench_expt_gap (test folds untouched).

For each matbench fold (``KFold(5, shuffle=True, random_state=18012019)``) the outer training
rows are split into 4 inner folds; every variant is fitted on 3 and scored on the 4th, and the
mean inner MAE over the 4 is what selects. The outer test fold is scored too (reported, never
used to select). Point = the gate's median with std scale 0.65 (no CDF recalibration: the
recalibrated median moves MAE by < 0.001 eV); classifier and quantile regressors are the base
head's unless a variant changes the design (``full``). Results merge into
``results/bench_expt_select.json`` (resumable per variant/fold) and ``.md``.

    PYTHONPATH=src GAPFORGE_DATA_PATH=../shared/data OMP_NUM_THREADS=1 \
        python benchmarks/bench_expt_select.py base q hpbe0.05 [...]

Scratch (cached features, inner predictions): ``$GAPFORGE_BENCH_WORK/expt_select``
(default ``runs/bench_matbench/expt_select``). Results elsewhere: ``GAPFORGE_EXPT_SELECT_OUT=path.json``.
"""

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.model_selection import KFold
from sklearn.neighbors import NearestNeighbors

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS
from bench_matbench import _fold_parts, _task_table
from gapforge import columns as C
from gapforge.models.experiment import SIGMA_QUANTILES
from gapforge.models.metal_gate import combine

WORK = Path(os.environ.get("GAPFORGE_BENCH_WORK", "runs/bench_matbench")) / "expt_select"
WORK.mkdir(parents=True, exist_ok=True)
ORACLE = os.environ.get("GAPFORGE_EXPT_ORACLE", "src/gapforge/pretrained/oracle")
OUT = Path(os.environ.get("GAPFORGE_EXPT_SELECT_OUT", RESULTS / "bench_expt_select.json"))


def build_cache() -> None:
    """Magpie (plain and host) and PBE-oracle inputs (plain and host formulas) of every expt_gap row."""
    from gapforge.models.experiment import pbe_features
    from gapforge.models.featurize import MagpieFeaturizer, host_featurize, host_formulas
    from gapforge.models.registry import load_model

    if (WORK / "cache.npz").is_file():
        return
    df = _task_table("expt_gap")
    forms = df[C.FORMULA].tolist()
    pbe = load_model(ORACLE)
    fz = MagpieFeaturizer().fit()
    dist = pbe.predict_distribution(forms)
    out = {
        "X": fz.featurize(forms).X,
        "P": pbe_features(pbe, forms),
        "Q": np.column_stack([dist.ppf(np.full(len(forms), q)) for q in (0.1587, 0.5, 0.8413)]),
        "y": df[C.BAND_GAP].to_numpy(float),
    }
    amounts, _ = fz._read_formulas(forms)
    out["frac"] = amounts / amounts.sum(1, keepdims=True)
    for thr in (0.02, 0.05, 0.1):
        out[f"host{thr}"] = host_featurize(fz, forms, thr).X
        out[f"hostpbe{thr}"] = pbe_features(pbe, host_formulas(fz, forms, thr))
    np.savez(WORK / "cache.npz", **out)


build_cache()
z = np.load(WORK / "cache.npz")
X0, P, Q, y = z["X"], z["P"], z["Q"], z["y"]
N = len(y)
FEATS = {"base": np.column_stack([X0, P]), "q": np.column_stack([X0, P, Q])}
for thr in (0.02, 0.05, 0.1):
    FEATS[f"host{thr}"] = np.column_stack([z[f"host{thr}"], P])
    FEATS[f"hpbe{thr}"] = np.column_stack([X0, z[f"hostpbe{thr}"]])
    FEATS[f"hostpbe{thr}"] = np.column_stack([z[f"host{thr}"], z[f"hostpbe{thr}"]])
FRAC = z["frac"]

BASE = {"max_iter": 300, "learning_rate": 0.05, "max_leaf_nodes": 31, "min_samples_leaf": 10}


def knn_feats(tr, q, k=5):
    nn = NearestNeighbors(n_neighbors=k, metric="manhattan").fit(FRAC[tr])
    d, i = nn.kneighbors(FRAC[q])
    yy = y[tr][i]
    return np.column_stack([yy[:, 0], yy.mean(1), np.median(yy, 1), d[:, 0], d.mean(1), (yy <= 0).mean(1)])


def knn_design(X, A, B, seed, k=5):
    """OOF kNN features for A (5 folds inside A), features for B from all of A."""
    fa = np.zeros((len(A), 6))
    for a2, b2 in KFold(5, shuffle=True, random_state=seed).split(A):
        fa[b2] = knn_feats(A[a2], A[b2], k)
    fb = knn_feats(A, B, k)
    return np.column_stack([X[A], fa]), np.column_stack([X[B], fb])


def reg_fit_predict(v, Xtr, ytr, Xte, seed):
    kw = {**BASE, **v.get("kw", {}), "random_state": seed}
    tf = v.get("log", False)
    yt = np.log1p(ytr) if tf else ytr
    preds = []
    rng = np.random.default_rng(seed)
    for b in range(v.get("bags", 1)):
        if v.get("bags", 1) > 1:
            idx = rng.choice(len(yt), size=int(v.get("frac", 0.8) * len(yt)), replace=v.get("boot", False))
        else:
            idx = np.arange(len(yt))
        m = HistGradientBoostingRegressor(loss="absolute_error", **{**kw, "random_state": seed + b}).fit(
            Xtr[idx], yt[idx]
        )
        preds.append(m.predict(Xte))
    pr = np.median(preds, 0) if v.get("agg") == "median" else np.mean(preds, 0)
    return np.expm1(pr) if tf else pr


def clf_fit_predict(v, Xtr, mtr, Xte, seed):
    kw = {**BASE, **v.get("ckw", {}), "random_state": seed}
    ps = []
    rng = np.random.default_rng(seed + 100)
    nb = v.get("cbags", 1)
    for b in range(nb):
        idx = rng.choice(len(mtr), size=int(0.8 * len(mtr)), replace=False) if nb > 1 else np.arange(len(mtr))
        c = HistGradientBoostingClassifier(**{**kw, "random_state": seed + b}).fit(Xtr[idx], mtr[idx])
        ps.append(c.predict_proba(Xte)[:, 1])
    return np.mean(ps, 0)


def write_md(res: dict) -> None:
    lines = [
        "# Experimental head: inner-CV selection (matbench_expt_gap)",
        "",
        "Inner = mean MAE over 4 inner folds of each outer fold's training rows (what selects); test = "
        "the outer test fold (reported only). `bench_expt_select.py` docstring for the protocol.",
        "",
        "| variant | folds | inner MAE mean ± sd | inner per fold | test MAE mean ± sd | test per fold "
        "| s/fold |",
        "|---|---|---|---|---|---|---|",
    ]

    def sd(v: np.ndarray) -> float:
        return float(v.std(ddof=1)) if len(v) > 1 else 0.0

    names = sorted({k.split("/")[0] for k in res})
    for n in names:
        rows = [res[f"{n}/fold{f}"] for f in range(5) if f"{n}/fold{f}" in res]
        a = np.array([r["inner_cv_mae"] for r in rows])
        b = np.array([r["test_mae"] for r in rows])
        lines.append(
            f"| {n} | {len(rows)} | {a.mean():.4f} ± {sd(a):.4f} | {', '.join(f'{v:.3f}' for v in a)} | "
            f"{b.mean():.3f} ± {sd(b):.3f} | {', '.join(f'{v:.3f}' for v in b)} | "
            f"{np.mean([r['seconds'] for r in rows]):.0f} |"
        )
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")


VARIANTS = {
    "base": {},
    "q": {"feats": "q"},
    "log": {"log": True},
    "bag5": {"bags": 5, "frac": 0.8},
    "lr02-800": {"kw": {"learning_rate": 0.02, "max_iter": 800}},
    "lr02-800-bag5": {"kw": {"learning_rate": 0.02, "max_iter": 800}, "bags": 5},
    "leaf15-msl5": {"kw": {"max_leaf_nodes": 15, "min_samples_leaf": 5, "max_iter": 500}},
    "mf05": {"kw": {"max_features": 0.5}},
    "mf05-bag5": {"kw": {"max_features": 0.5}, "bags": 5},
    "log-bag5": {"log": True, "bags": 5},
    "clf-bag5": {"cbags": 5},
    "log-lr02-800": {"log": True, "kw": {"learning_rate": 0.02, "max_iter": 800}},
    "log-l2": {"log": True, "kw": {"l2_regularization": 1.0}},
    "log-msl5": {"log": True, "kw": {"min_samples_leaf": 5}},
    "l2": {"kw": {"l2_regularization": 1.0}},
    "hostpbe0.02": {"feats": "hostpbe0.02", "full": True},
    "hostpbe0.05": {"feats": "hostpbe0.05", "full": True},
    "hostpbe0.05-bag5": {"feats": "hostpbe0.05", "full": True, "bags": 5},
    "hostpbe0.05-log": {"feats": "hostpbe0.05", "full": True, "log": True},
    "hpbe0.05": {"feats": "hpbe0.05", "full": True},
    "hpbe0.02": {"feats": "hpbe0.02", "full": True},
    "hpbe0.05-bag5": {"feats": "hpbe0.05", "full": True, "bags": 5},
    "hpbe0.05-log": {"feats": "hpbe0.05", "full": True, "log": True},
    "knn5": {"knn": 5, "full": True},
    "host0.05-knn5": {"feats": "host0.05", "knn": 5, "full": True},
    "host0.02": {"feats": "host0.02", "full": True},
    "host0.05": {"feats": "host0.05", "full": True},
    "host0.1": {"feats": "host0.1", "full": True},
}


def gate_parts(Xb, A, B, m, fold, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """The base head's P(metal) and sigma on rows ``B`` from rows ``A`` (cached in ``cache``)."""
    try:
        cz = np.load(cache)
        return cz["p"], cz["s"]
    except FileNotFoundError:
        pass
    p0 = HistGradientBoostingClassifier(**BASE, random_state=fold).fit(Xb[A], m).predict_proba(Xb[B])[:, 1]
    s0 = quantile_sigma(Xb[A][~m], y[A][~m], Xb[B], fold)
    np.savez(cache, p=p0, s=s0)
    return p0, s0


def quantile_sigma(Xtr, ytr, Xte, fold) -> np.ndarray:
    """Half the distance between the 15.87 / 84.13 % quantile regressors' predictions (the head's sigma)."""
    lo, hi = (
        HistGradientBoostingRegressor(loss="quantile", quantile=q, **BASE, random_state=fold)
        .fit(Xtr, ytr)
        .predict(Xte)
        for q in SIGMA_QUANTILES
    )
    return np.clip((hi - lo) / 2, 1e-3, None)


def split_mae(v: dict, X, A, B, fold, cache: Path) -> float:
    """MAE on rows ``B`` of variant ``v`` fitted on rows ``A`` (the gate's median, std scale 0.65)."""
    m = y[A] <= 0
    p0, s0 = gate_parts(FEATS["base"], A, B, m, fold, cache)
    XA, XB = knn_design(X, A, B, fold, v["knn"]) if v.get("knn") else (X[A], X[B])
    if v.get("full"):
        s0 = quantile_sigma(XA[~m], y[A][~m], XB, fold)
    p = clf_fit_predict(v, XA, m, XB, fold) if "cbags" in v or "ckw" in v or v.get("full") else p0
    mu = np.clip(reg_fit_predict(v, XA[~m], y[A][~m], XB, fold), 0, None)
    return float(np.abs(combine(p, mu, s0, std_scale=0.65).point - y[B]).mean())


def main(argv: list[str]) -> None:
    which = [] if argv == ["md"] else (argv or list(VARIANTS))
    out_path = str(OUT)
    try:
        res = json.loads(Path(out_path).read_text())
    except FileNotFoundError:
        res = {}
    for name in which:
        v = VARIANTS[name]
        X = FEATS[v.get("feats", "base")]
        for fold in range(5):
            key = f"{name}/fold{fold}"
            if key in res:
                continue
            t0 = time.time()
            tr, va, te = _fold_parts(N, fold)
            rows = np.r_[tr, va]  # the outer training part; te never used to select
            inner_splits = KFold(4, shuffle=True, random_state=fold).split(rows)
            # the mean of the inner folds' MAEs (equal-sized folds up to one row, as before: pooled rows)
            inner_abs = [
                split_mae(v, X, rows[a], rows[b], fold, WORK / f"inner_{fold}_{k}.npz") * len(b)
                for k, (a, b) in enumerate(inner_splits)
            ]
            inner = float(np.sum(inner_abs) / len(rows))
            outer = split_mae(v, X, rows, te, fold, WORK / f"outer_{fold}.npz")
            res[key] = {
                "inner_cv_mae": inner,
                "test_mae": outer,
                "seconds": round(time.time() - t0, 1),
                "load_avg_end": [round(x, 2) for x in os.getloadavg()],
            }
            Path(out_path + ".tmp").write_text(json.dumps(res, indent=1))
            Path(out_path + ".tmp").replace(out_path)
            print(key, res[key], flush=True)
    write_md(res)


if __name__ == "__main__":
    main(sys.argv[1:])

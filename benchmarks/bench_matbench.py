"""matbench_mp_gap (composition only), matbench_expt_gap and the Exp1 split: the oracle's benchmarks.

Protocol (matbench v0.1): ``KFold(n_splits=5, shuffle=True, random_state=18012019)`` over the
rows of ``mp_gap.csv`` / ``expt_gap.csv`` in file order (one row per MP entry: a formula repeats
once per polymorph; composition only, so a formula can sit in train and test with different
gaps, as in every composition-only entry of the leaderboard). Inside a fold's training part 5 %
(seeded) is held out for early stopping and for fitting the std scale; the test fold is touched
once, at the end. Extra PBE sources (``--extra``) pass :func:`gapforge.data.splits.leakage_guard`
first: none of their rows has a composition of the test fold.

Sub-commands (each resumable: a fold already in the results file is skipped; Roost
checkpoints every epoch under ``--work``):

* ``roost``: the gated Roost (metal head + non-metal gap head, :mod:`gapforge.models.metal_gate`)
  on matbench_mp_gap folds;
* ``hgb``: the same gate from two gradient-boosting models on Magpie descriptors (classifier +
  non-metal regressor), with or without extra sources;
* ``expt``: experimental-gap heads on matbench_expt_gap folds, built on a PBE model's outputs;
* ``exp1``: a model scored on the Exp1 test split (mp-bandgap minus test-500, 80/10/10 seed 0),
  restricted to formulas the model never trained on;
* ``md``: rewrite the markdown table from the JSON.

Results: ``benchmarks/results/bench_matbench.json`` (one record per model/task/fold, merged as
they come) and ``bench_matbench.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine
from gapforge import columns as C
from gapforge.models.metal_gate import combine, coverage, fit_std_scale

log = logging.getLogger("bench_matbench")
JSON = RESULTS / "bench_matbench.json"
MD = RESULTS / "bench_matbench.md"
#: default scratch (fold checkpoints, models, cached predictions); ignored by git
WORK = Path(os.environ.get("GAPFORGE_BENCH_WORK", "runs/bench_matbench"))
METAL_EPS = 0.1  # eV: "predicted below 0.1 eV" counts as predicted metal
VAL_FRACTION = 0.05


# -- results file --------------------------------------------------------------------------
def _load() -> dict[str, Any]:
    return json.loads(JSON.read_text()) if JSON.is_file() else {"records": {}, "commands": []}


def _save_record(key: str, record: dict[str, Any]) -> None:
    data = _load()
    data["records"][key] = record
    data["machine"] = machine()
    _write(data)


def _write(data: dict[str, Any]) -> None:
    """Write the results file (this command added to its list) and the markdown, atomically."""
    cmd = shlex.join(["python", "benchmarks/bench_matbench.py", *sys.argv[1:]])
    if cmd not in data["commands"]:
        data["commands"].append(cmd)
    tmp = JSON.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(JSON)
    write_md()


def _save_analysis(name: str, out: dict[str, Any], *, merge: bool = False) -> None:
    """Store an analysis (not a fold record) under ``analyses/<name>``, merged into it with ``merge``."""
    data = _load()
    analyses = data.setdefault("analyses", {})
    if merge:
        analyses.setdefault(name, {}).update(out)
    else:
        analyses[name] = out
    _write(data)


def _done(key: str) -> bool:
    return key in _load()["records"]


def _load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def metal_ceiling(
    df: pd.DataFrame, test_rows: np.ndarray, train_rows: np.ndarray | None = None
) -> dict[str, Any]:
    """What no composition-only classifier can beat on one test fold of mp_gap (metals at 0 eV).

    One formula gets one prediction, but mp_gap holds several entries (polymorphs) per formula,
    some metallic and some not. Reported: the shares of the fold's metal / non-metal rows whose
    formula also appears with the other label (in the fold, and anywhere in mp_gap), and the
    shares "metals predicted metal" / "non-metals predicted non-metal" when every formula gets
    its majority label among the fold's own rows (the best any per-formula rule can score on
    the fold's total; ties go to metal, and the tie-to-non-metal reading is given too) and
    among all mp_gap rows (what a classifier that had seen every label would say).

    Both majorities read the test rows' own labels, so they bound any per-formula rule but no
    model reaches them. With ``train_rows`` the reference a model can reach is added: on the
    test rows whose formula has training rows (another polymorph), the shares when each is
    predicted with the majority label of those training rows (ties to metal).
    """
    metal_all = df[C.BAND_GAP].to_numpy(dtype=float) <= 0
    frm_all = df[C.FORMULA].to_numpy()
    share_all = pd.Series(metal_all).groupby(frm_all).mean()
    test = df.iloc[test_rows]
    metal = metal_all[test_rows]
    frm = frm_all[test_rows]
    share_fold = pd.Series(metal).groupby(frm).mean()
    sf = share_fold.reindex(frm).to_numpy()
    sa = share_all.reindex(frm).to_numpy()

    def shares(pred_metal: np.ndarray) -> dict[str, float]:
        return {
            "metals_predicted_metal": float(pred_metal[metal].mean()),
            "nonmetals_predicted_nonmetal": float((~pred_metal[~metal]).mean()),
            "accuracy": float((pred_metal == metal).mean()),
        }

    reachable: dict[str, Any] = {}
    if train_rows is not None:
        share_train = pd.Series(metal_all[train_rows]).groupby(frm_all[train_rows]).mean()
        st = share_train.reindex(frm).to_numpy()
        seen = ~np.isnan(st)
        reachable = {
            "test_rows_formula_in_training": float(seen.mean()),
            "training_majority_on_seen_rows": {
                "metals_predicted_metal": float((st[seen & metal] >= 0.5).mean()),
                "nonmetals_predicted_nonmetal": float((st[seen & ~metal] < 0.5).mean()),
            },
        }
    return {
        **reachable,
        "n_test_rows": len(test),
        "n_test_metals": int(metal.sum()),
        "n_test_formulas": int(test[C.FORMULA].nunique()),
        "metals_with_nonmetal_twin_in_fold": float(((sf < 1) & metal).sum() / metal.sum()),
        "nonmetals_with_metal_twin_in_fold": float(((sf > 0) & ~metal).sum() / (~metal).sum()),
        "metals_with_nonmetal_twin_anywhere": float(((sa < 1) & metal).sum() / metal.sum()),
        "nonmetals_with_metal_twin_anywhere": float(((sa > 0) & ~metal).sum() / (~metal).sum()),
        "majority_in_fold_ties_metal": shares(sf >= 0.5),
        "majority_in_fold_ties_nonmetal": shares(sf > 0.5),
        "majority_all_rows_ties_metal": shares(sa >= 0.5),
    }


def run_metal_ceiling(args: argparse.Namespace) -> None:
    """The ceiling of a composition-only metal classifier on the 5 mp_gap test folds (seconds)."""
    from gapforge.data.splits import matbench_folds

    df = _task_table("mp_gap")
    out = {}
    for fold, (tr, te) in enumerate(matbench_folds(len(df))):
        out[f"fold{fold}"] = metal_ceiling(df, te, tr)
    _save_analysis("metal-ceiling/mp_gap", out)


def _ceiling_md(data: dict[str, Any]) -> list[str]:
    out = data.get("analyses", {}).get("metal-ceiling/mp_gap")
    if not out:
        return []
    rows = []
    for fold, r in out.items():
        a, b, c = (
            r[k]
            for k in (
                "majority_in_fold_ties_metal",
                "majority_in_fold_ties_nonmetal",
                "majority_all_rows_ties_metal",
            )
        )
        rows.append(
            f"| {fold} | {r['n_test_rows']} | {r['n_test_metals']} | "
            + " | ".join(
                f"{_fmt(r[f'metals_with_nonmetal_twin_{w}'])} / {_fmt(r[f'nonmetals_with_metal_twin_{w}'])}"
                for w in ("in_fold", "anywhere")
            )
            + " | "
            f"{_fmt(a['metals_predicted_metal'])} / {_fmt(a['nonmetals_predicted_nonmetal'])} | "
            f"{_fmt(b['metals_predicted_metal'])} / {_fmt(b['nonmetals_predicted_nonmetal'])} | "
            f"{_fmt(c['metals_predicted_metal'])} / {_fmt(c['nonmetals_predicted_nonmetal'])} | "
            f"{_fmt(r.get('test_rows_formula_in_training'))} | "
            + (
                f"{_fmt(d['metals_predicted_metal'])} / {_fmt(d['nonmetals_predicted_nonmetal'])} |"
                if (d := r.get("training_majority_on_seen_rows"))
                else " |"
            )
        )
    return [
        "",
        "## Ceiling of a composition-only metal classifier (mp_gap test folds)",
        "",
        "`twin` = the row's formula also appears with the other label (in the test fold / anywhere in "
        "mp_gap); `majority` = every formula predicted with its majority label among the fold's rows "
        "(ties to metal or to non-metal) or among all mp_gap rows: metals predicted metal / non-metals "
        "predicted non-metal. Goals 0.90 / 0.95. Both majorities read the test rows' own labels: a bound, "
        "not a reachable score. `seen` = share of test rows whose formula has training rows; `training "
        "majority` = those rows predicted with their training rows' majority label (what a model that "
        "memorised every training label would say there).",
        "",
        "| fold | test rows | metals | metals / non-metals with twin in fold | with twin anywhere "
        "| majority in fold, ties metal | ties non-metal | majority over all rows | seen | training majority "
        "on seen rows |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def run_expt_twins(args: argparse.Namespace) -> None:
    """MAE on the test rows that have a host twin in training, from cached test distributions.

    ``--preds NAME=DIR/expt-head-..._fold{fold}.npz ...``: each fold's saved test predictions
    (``_save_test_distribution``; rows in the fold's test order). Seconds; no refit.
    """
    df = _task_table("expt_gap")
    out = {}
    for spec in args.preds:
        name, pattern = spec.split("=", 1)
        rows = {}
        for fold in range(5):
            tr, va, te = _fold_parts(len(df), fold)
            with np.load(pattern.format(fold=fold)) as z:
                med, y = z["median"], z["y"]
            assert np.allclose(y, df.iloc[te][C.BAND_GAP].to_numpy())
            twin = host_twins(df.iloc[np.r_[tr, va]][C.FORMULA].tolist(), df.iloc[te][C.FORMULA].tolist())
            err = np.abs(med - y)
            rows[f"fold{fold}"] = {
                "n_test": len(y),
                "n_twins": int(twin.sum()),
                "mae_twins_eV": float(err[twin].mean()),
                "mae_others_eV": float(err[~twin].mean()),
                "mae_eV": float(err.mean()),
            }
        out[name] = rows
    _save_analysis("expt-host-twins", out, merge=True)


def _twins_md(data: dict[str, Any]) -> list[str]:
    out = data.get("analyses", {}).get("expt-host-twins")
    if not out:
        return []
    rows = []
    for name, folds in out.items():
        for fold, r in folds.items():
            rows.append(
                f"| {name} | {fold} | {r['n_test']} | {r['n_twins']} | {_fmt(r['mae_twins_eV'])} | "
                f"{_fmt(r['mae_others_eV'])} | {_fmt(r['mae_eV'])} |"
            )
    return [
        "",
        "## expt_gap test rows with a host twin in training",
        "",
        "`twin`: the row's host (elements below 5 % of the atoms dropped, fractions to 0.01) is the "
        "host of a training row under another formula (`Si` and `Si0.999Ge0.001`, `GaAs` and "
        "`Ga100As99P`). Scored from each fold's saved test predictions.",
        "",
        "| model | fold | test rows | twins | MAE twins (eV) | MAE others | MAE all |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]


def run_expt_doa(args: argparse.Namespace) -> None:
    """Would a domain-of-applicability blend order GaAs above Si? (seconds; no refit)

    For the acceptance formulas: the mean distance to their 5 nearest expt_gap rows in
    standardised Magpie space, against the same distance of every expt_gap row to its 5
    nearest others (percentile), and a monotone transfer map of the PBE oracle (isotonic
    fit of the measured gap on the oracle's gated PBE gap over the non-metal rows): the two
    parts such a blend shrinks towards. Also the PBE inputs read on the host formula.
    """
    from sklearn.isotonic import IsotonicRegression
    from sklearn.neighbors import NearestNeighbors
    from sklearn.preprocessing import StandardScaler

    from gapforge.models.experiment import pbe_features
    from gapforge.models.featurize import MagpieFeaturizer
    from gapforge.models.registry import load_model

    df = _task_table("expt_gap")
    forms = df[C.FORMULA].tolist()
    pbe = load_model(args.pbe_model)
    fz = MagpieFeaturizer().fit()
    sc = StandardScaler().fit(fz.featurize(forms).X)
    Z = np.nan_to_num(sc.transform(fz.featurize(forms).X))
    Q = np.nan_to_num(sc.transform(fz.featurize(list(ORDER_CHECK)).X))
    nn = NearestNeighbors(n_neighbors=6).fit(Z)
    d_train = nn.kneighbors(Z)[0][:, 1:].mean(axis=1)
    d_q, i_q = nn.kneighbors(Q, n_neighbors=5)
    y = df[C.BAND_GAP].to_numpy(dtype=float)
    P = pbe_features(pbe, forms)
    nm = (y > 0) & np.isfinite(P[:, 3])
    iso = IsotonicRegression(out_of_bounds="clip").fit(P[nm, 3], y[nm])
    Pq = pbe_features(pbe, list(ORDER_CHECK))
    out = {}
    for k, f in enumerate(ORDER_CHECK):
        d = float(d_q[k].mean())
        out[f] = {
            "knn5_distance": round(d, 2),
            "train_percentile": round(float((d_train < d).mean() * 100), 1),
            "nearest": [f"{forms[j]} {y[j]:g}" for j in i_q[k][:3]],
            "pbe_gated_eV": round(float(Pq[k, 3]), 3),
            "transfer_map_eV": round(float(iso.predict(Pq[k, 3:4])[0]), 3),
        }
    out["train_knn5_distance_quantiles_50_90_99"] = [
        round(float(q), 2) for q in np.quantile(d_train, [0.5, 0.9, 0.99])
    ]
    _save_analysis("expt-doa", out)
    print(json.dumps(out, indent=1))


# -- scoring -------------------------------------------------------------------------------
def gate_scores(y: np.ndarray, p: np.ndarray, mu: np.ndarray, s: np.ndarray, scale: float) -> dict[str, Any]:
    """MAE, RMSE, R², metal shares and coverage of the gated prediction (median and mean)."""
    g = combine(p, mu, s, std_scale=scale)
    gm = combine(p, mu, s, std_scale=scale, point="mean")
    err = g.point - y
    metal = y <= 0
    c1, c2 = coverage(err, g.std)
    out = {
        "n": len(y),
        "mae_eV": float(np.abs(err).mean()),
        "rmse_eV": float(np.sqrt((err**2).mean())),
        "r2": float(1 - (err**2).sum() / ((y - y.mean()) ** 2).sum()),
        "mae_mixture_mean_eV": float(np.abs(gm.point - y).mean()),
        "metals_below_0.1": float((g.point[metal] < METAL_EPS).mean()) if metal.any() else None,
        "nonmetals_above_0.1": float((g.point[~metal] >= METAL_EPS).mean()) if (~metal).any() else None,
        "within_1sigma": c1,
        "within_2sigma": c2,
        "mae_nonmetals_eV": float(np.abs(err[~metal]).mean()) if (~metal).any() else None,
    }
    if metal.any() and (~metal).any():
        from sklearn.metrics import roc_auc_score

        out["metal_auc"] = float(roc_auc_score(metal, p))
        out["metal_accuracy"] = float(((p >= 0.5) == metal).mean())
    return out


def calibrate(y: np.ndarray, p: np.ndarray, mu: np.ndarray, s: np.ndarray) -> float:
    """Std scale fitted on validation rows (coverage of +-1/+-2 std closest to 68/95 %)."""

    def err_std(k: float) -> tuple[np.ndarray, np.ndarray]:
        g = combine(p, mu, s, std_scale=k)
        return g.point - y, g.std

    return fit_std_scale(err_std)


def _fold_parts(n: int, fold: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from gapforge.data.splits import matbench_folds

    tr, te = matbench_folds(n)[fold]
    perm = np.random.default_rng(seed).permutation(tr)
    n_val = round(VAL_FRACTION * len(tr))
    return perm[n_val:], perm[:n_val], te


def _task_table(task: str) -> pd.DataFrame:
    from gapforge.data import load_dataset

    return load_dataset({"mp_gap": "mp-gap", "expt_gap": "expt-gap"}[task], duplicates="keep")


def _extra_rows(extra: list[str], test: pd.DataFrame, task_rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows of the extra PBE sources a fold may train on, one per formula.

    The leakage guard removes every test-fold composition; then the priority rule of
    :data:`gapforge.data.loaders.PBE_SOURCE_PRIORITY` (MP, AFLOW, OQMD: the first source
    holding a formula wins) removes the formulas of ``task_rows`` (the fold's own MP rows)
    and of the sources listed before.
    """
    from gapforge.data import load_dataset
    from gapforge.data.splits import leakage_guard

    if not extra:
        return pd.DataFrame(columns=[C.FORMULA, C.BAND_GAP, C.SOURCE])
    seen = set(task_rows[C.FORMULA]) if task_rows is not None else set()
    tables = []
    for name in extra:
        df = load_dataset(name)
        kept = leakage_guard(df, test)
        n_guarded = len(kept)
        kept = kept[~kept[C.FORMULA].isin(seen)].reset_index(drop=True)
        seen |= set(kept[C.FORMULA])
        log.info(
            "%s: %d rows, %d after the leakage guard, %d not held by a source before it",
            name,
            len(df),
            n_guarded,
            len(kept),
        )
        tables.append(kept)
    return pd.concat(tables, ignore_index=True)


# -- the fold runner -----------------------------------------------------------------------
@dataclass(frozen=True)
class Fold:
    """One fold of a task: its table and the row indices of its three parts.

    Attributes:
        task: ``mp_gap`` or ``expt_gap`` (the table's name).
        fold: fold number (0-4).
        table: the task's whole table (rows in file order).
        tr: training rows (the fold's training part minus the validation rows).
        va: validation rows (5 % of the training part, seeded): early stopping, std scale, thresholds.
        te: test rows (scored once).
        load_avg_start: load average read as the fold started.
    """

    task: str
    fold: int
    table: pd.DataFrame
    tr: np.ndarray
    va: np.ndarray
    te: np.ndarray
    load_avg_start: list[float]

    @property
    def train(self) -> pd.DataFrame:
        return self.table.iloc[self.tr]

    @property
    def val(self) -> pd.DataFrame:
        return self.table.iloc[self.va]

    @property
    def test(self) -> pd.DataFrame:
        return self.table.iloc[self.te]


def run_folds(
    task: str,
    folds: list[int],
    models: str | list[str],
    fit_score: Callable[[Fold], dict[str, Any] | None],
    *,
    task_label: str | None = None,
    split: Callable[[pd.DataFrame, int], tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None,
    overwrite: bool = False,
) -> None:
    """Every section's loop: for each fold not yet recorded, split, fit and score, save the records.

    Args:
        task: the table to split (``mp_gap`` or ``expt_gap``).
        folds: fold numbers.
        models: the model name, or several names when one fit scores several models; the
            records' keys are ``{model}/{task_label}/fold{fold}``. A fold is skipped when all
            of them are in the results file (rerun to resume).
        fit_score: ``Fold -> record`` for one model, ``Fold -> {model: record}`` for several, or
            ``None`` (nothing to save for that fold). A record without ``load_avg_start`` /
            ``load_avg_end`` gets the load average at the fold's start / after scoring.
        task_label: the task as the keys name it (default ``task``; e.g. ``expt_gap-cluster``).
        split: ``(table, fold) -> (train, val, test)`` rows (default :func:`_fold_parts`).
        overwrite: refit and replace folds already recorded.
    """
    table = _task_table(task)
    names = [models] if isinstance(models, str) else list(models)
    split = split or (lambda t, k: _fold_parts(len(t), k))
    for fold in folds:
        keys = {m: f"{m}/{task_label or task}/fold{fold}" for m in names}
        if not overwrite and all(_done(k) for k in keys.values()):
            log.info("%s done already", ", ".join(keys.values()))
            continue
        part = Fold(task, fold, table, *split(table, fold), load_avg_start=_load_avg())
        out = fit_score(part)
        if out is None:
            continue
        records = {names[0]: out} if isinstance(models, str) else out
        load1 = _load_avg()
        for m, key in keys.items():
            records[m].setdefault("load_avg_start", part.load_avg_start)
            records[m].setdefault("load_avg_end", load1)
            _save_record(key, records[m])


# -- roost ---------------------------------------------------------------------------------
def run_roost(args: argparse.Namespace) -> None:
    from gapforge.models.roost import WIDTHS, RoostEnsemble

    name = f"roost-gated{args.tag}"

    def fit_score(part: Fold) -> dict[str, Any]:
        fold, key = part.fold, f"{name}/{args.task}/fold{part.fold}"
        train, val, test = part.train, part.val, part.test
        if args.max_train:
            train = train.iloc[: args.max_train]
        extra = _extra_rows(args.extra, test, pd.concat([train, val]))
        fit_f = [*train[C.FORMULA], *extra[C.FORMULA]]
        fit_y = np.concatenate([train[C.BAND_GAP].to_numpy(), extra[C.BAND_GAP].to_numpy(dtype=float)])
        work = Path(args.work) / key.replace("/", "_")
        widths = WIDTHS[args.widths]
        load0 = _load_avg()
        t0 = time.perf_counter()
        pretrained = None
        if args.pretrain_epochs:  # source-aware: every source first, then MP alone (fine-tuning)
            pretrained = RoostEnsemble(
                n_members=args.members,
                epochs=args.pretrain_epochs,
                patience=args.patience,
                threads=1,
                metal_head=True,
                seed=fold,
                **widths,
            ).fit(
                fit_f,
                fit_y,
                val_formulas=val[C.FORMULA].tolist(),
                val_band_gaps=val[C.BAND_GAP].to_numpy(),
                checkpoint_dir=work / "pretrain_checkpoints",
            )
            fit_f, fit_y = list(train[C.FORMULA]), train[C.BAND_GAP].to_numpy()
        model = RoostEnsemble(
            n_members=args.members,
            epochs=args.epochs,
            patience=args.patience,
            threads=1,
            metal_head=True,
            seed=fold,
            learning_rate=args.learning_rate,
            **widths,
        )
        model.fit(
            fit_f,
            fit_y,
            val_formulas=val[C.FORMULA].tolist(),
            val_band_gaps=val[C.BAND_GAP].to_numpy(),
            checkpoint_dir=work / "checkpoints",
            init_from=pretrained,
        )
        seconds = time.perf_counter() - t0
        vparts = model.components(val[C.FORMULA].tolist())
        yv = val[C.BAND_GAP].to_numpy()
        pv, mv, sv = (vparts[c].to_numpy() for c in (C.P_METAL, C.BAND_GAP_MEAN, C.BAND_GAP_STD))
        scale = calibrate(yv, pv, mv, sv)
        model.std_scale = scale
        tparts = model.components(test[C.FORMULA].tolist())
        yt = test[C.BAND_GAP].to_numpy()
        pt, mt, st = (tparts[c].to_numpy() for c in (C.P_METAL, C.BAND_GAP_MEAN, C.BAND_GAP_STD))
        hist = [h.to_dict() for h in model.histories_]
        record = {
            "model": f"roost-gated{args.tag}",
            "task": args.task,
            "fold": fold,
            "n_train": len(fit_f),
            "n_train_task": len(train),
            "n_extra": len(extra),
            "extra": args.extra,
            "n_val": len(val),
            "params": model.get_params(),
            "std_scale": scale,
            "test": gate_scores(yt, pt, mt, st, scale),
            "test_uncalibrated": gate_scores(yt, pt, mt, st, 1.0),
            "validation": gate_scores(yv, pv, mv, sv, scale),
            "train_seconds": round(seconds, 1),
            "seconds_per_epoch": round(
                sum(h["seconds"] for h in hist) / max(1, sum(h["epochs_run"] for h in hist)), 1
            ),
            "members": hist,
            "pretrain_epochs": args.pretrain_epochs,
            "pretrain_members": [h.to_dict() for h in pretrained.histories_] if pretrained else None,
            "load_avg_start": load0,
            "load_avg_end": _load_avg(),
            "torch_threads": 1,
        }
        out = work / "model"
        model.save(
            out,
            metadata={
                "benchmark_record": key,
                "std_scale_fitted_on": "validation (5 % of the fold's training part)",
            },
        )
        record["model_dir"] = str(out)
        log.info("%s: %s", key, record["test"])
        return record

    run_folds(args.task, args.folds, name, fit_score)


# -- calibration ---------------------------------------------------------------------------
def fold_components(model_dir: Path, task: str, fold: int, cache: Path) -> dict[str, np.ndarray]:
    """Validation and test components of a fold model (cached as ``.npz``, re-used).

    Keys: ``{val,test}_{y,p,mu,s}`` (``s`` the gap head's unscaled std) and ``std_scale``.
    """
    if cache.is_file():
        with np.load(cache) as z:
            return dict(z)
    from gapforge.models.registry import load_model

    df = _task_table(task)
    _, va, te = _fold_parts(len(df), fold)
    model = load_model(model_dir)
    out: dict[str, np.ndarray] = {"std_scale": np.array(model.std_scale)}
    for part, rows in (("val", va), ("test", te)):
        sub = df.iloc[rows]
        comp = model.components(sub[C.FORMULA].tolist())
        out[f"{part}_y"] = sub[C.BAND_GAP].to_numpy(dtype=float)
        out[f"{part}_p"] = comp[C.P_METAL].to_numpy()
        out[f"{part}_mu"] = comp[C.BAND_GAP_MEAN].to_numpy()
        out[f"{part}_s"] = comp[C.BAND_GAP_STD].to_numpy()
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(cache)
    return out


def _roost_components(fold: int, cache_dir: Path, model: str = "roost-gated") -> dict[str, np.ndarray]:
    """:func:`fold_components` of the mp_gap fold model recorded as ``{model}/mp_gap/fold{fold}``."""
    src = _load()["records"][f"{model}/mp_gap/fold{fold}"]
    cache = cache_dir / f"{model}_mp_gap_fold{fold}.npz"
    return fold_components(Path(src["model_dir"]), "mp_gap", fold, cache)


def distribution_scores(dist: Any, y: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Point errors of the median and the coverage of the central intervals of ``dist``.

    ``within_*sigma_pit``: share of rows whose randomised PIT (uniform inside the atom at
    0 eV) lies in the central 68.27 / 95.45 % of levels, i.e. the coverage of the central
    interval with the atom at 0 eV shared out at random; ``within_*sigma``: the closed
    interval ``[ppf(a), ppf(1 - a)]``, which holds a 0 eV metal whenever its lower end is 0
    (so it over-covers when metals are likely); ``within_pm*_sigma_equivalent``: the
    median ``± k`` half-widths of the 68.27 % interval.
    """
    from scipy.special import ndtr

    from gapforge.models.calibration import central_coverage
    from gapforge.window import GapWindow

    u = dist.pit(y, seed=seed)
    if dist.recalibration is not None:
        u = dist.recalibration(u)

    med = dist.median()
    sig = dist.sigma_equivalent()
    err = med - y
    metal = y <= 0
    out = {
        "n": len(y),
        "mae_eV": float(np.abs(err).mean()),
        "metals_below_0.1": float((med[metal] < METAL_EPS).mean()) if metal.any() else None,
        "nonmetals_above_0.1": float((med[~metal] >= METAL_EPS).mean()) if (~metal).any() else None,
        "within_1sigma_pit": float(((u >= ndtr(-1)) & (u <= ndtr(1))).mean()),
        "within_2sigma_pit": float(((u >= ndtr(-2)) & (u <= ndtr(2))).mean()),
        "within_1sigma": central_coverage(*dist.interval(1.0), y),
        "within_2sigma": central_coverage(*dist.interval(2.0), y),
        "within_1sigma_nonmetals": central_coverage(*(a[~metal] for a in dist.interval(1.0)), y[~metal]),
        "within_2sigma_nonmetals": central_coverage(*(a[~metal] for a in dist.interval(2.0)), y[~metal]),
        "within_pm1_sigma_equivalent": coverage(err, sig)[0],
        "within_pm2_sigma_equivalent": coverage(err, sig)[1],
    }
    windows = {}  # reliability of window probabilities: mean predicted P against the observed share
    for w in (GapWindow(0.0, 0.1), GapWindow(1.0, 3.0), GapWindow(2.0, 3.0), GapWindow(4.0)):
        pw = dist.window_probability(w)
        windows[str(w)] = {
            "mean_p": float(pw.mean()),
            "observed": float(w.contains(y).mean()),
            "brier": float(((pw - w.contains(y)) ** 2).mean()),
        }
    out["windows"] = windows
    return out


def run_calib(args: argparse.Namespace) -> None:
    """Recalibrate saved fold models on their validation rows; score on the test folds."""
    from gapforge.models.calibration import CdfRecalibration
    from gapforge.models.metal_gate import GapDistribution

    def fit_score(part: Fold) -> dict[str, Any] | None:
        fold = part.fold
        src = _load()["records"].get(f"{args.model}/{args.task}/fold{fold}")
        if src is None:
            log.warning("no record %s/%s/fold%d", args.model, args.task, fold)
            return None
        t0 = time.perf_counter()
        cache = Path(args.work) / f"{args.model}_{args.task}_fold{fold}.npz"
        comp = fold_components(Path(src["model_dir"]), args.task, fold, cache)
        scale = float(comp["std_scale"])
        rv, rt = (
            GapDistribution(comp[f"{part}_p"], comp[f"{part}_mu"], comp[f"{part}_s"] * scale)
            for part in ("val", "test")
        )
        yv, yt = comp["val_y"], comp["test_y"]
        recal = CdfRecalibration.fit(rv.pit(yv, seed=fold))
        cal_t = rt.with_recalibration(recal)
        return {
            "model": f"{args.model}+cdf-recal",
            "task": args.task,
            "fold": fold,
            "model_dir": src["model_dir"],
            "calibration": "isotonic CDF recalibration on the validation rows' randomised PIT "
            "(Kuleshov et al. 2018), on top of the std scale",
            "n_val": len(yv),
            "std_scale": scale,
            "test": distribution_scores(cal_t, yt),
            "test_raw_mixture": distribution_scores(rt, yt),
            "validation": distribution_scores(rv.with_recalibration(recal), yv),
            "seconds": round(time.perf_counter() - t0, 1),
            "load_avg_end": _load_avg(),
        }

    run_folds(args.task, args.folds, f"{args.model}+cdf-recal", fit_score)


def run_ship_recal(args: argparse.Namespace) -> None:
    """Add a CDF recalibration to a model directory's ``model.json`` (weights untouched).

    ``--kind oracle``: a fold model of this benchmark, recalibrated on that fold's validation
    rows (the rows its ``std_scale`` was fitted on). ``--kind experiment``: an experimental
    head made by ``gapforge train experiment-head --seed S``, recalibrated on the validation
    rows that command held out (its seeded ``val_fraction`` of ``expt-gap``).
    """
    from gapforge.io import write_json
    from gapforge.models.base import MODEL_CARD_FILE
    from gapforge.models.calibration import CdfRecalibration

    directory = Path(args.model_dir)
    card = json.loads((directory / MODEL_CARD_FILE).read_text())
    meta = card["metadata"]
    if args.kind == "oracle":
        from gapforge.models.registry import load_model

        record = meta.get("benchmark_record", "")
        task, fold = record.split("/")[1], int(record.rsplit("fold", 1)[1])
        df = _task_table(task)
        _, va, _ = _fold_parts(len(df), fold)
        val = df.iloc[va]
        model = load_model(directory)
        model.recalibrate(val[C.FORMULA].tolist(), val[C.BAND_GAP].to_numpy(), seed=fold)
        recal, where = model.recalibration_, f"{record}: the fold's {len(val)} validation rows"
    else:
        from gapforge.data import load_dataset
        from gapforge.models.registry import load_predictor

        pred = load_predictor(directory.parent, fidelity="experiment")
        seed = int(card["params"]["seed"])
        df = load_dataset(meta.get("data", "expt-gap"), duplicates="keep")
        val = df.iloc[np.random.default_rng(seed).permutation(len(df))[: int(meta["n_val"])]]
        dist = pred.head.predict_distribution(val[C.FORMULA].tolist(), pbe_model=pred.pbe_model)
        dist = dist.with_recalibration(None)
        recal = CdfRecalibration.fit(dist.pit(val[C.BAND_GAP].to_numpy(), seed=seed))
        where = f"the {len(val)} validation rows held out by `{meta.get('command')}`"
    meta["cdf_recalibration"] = recal.to_dict()
    meta["cdf_recalibration_fitted_on"] = where
    write_json(card, directory / MODEL_CARD_FILE)
    log.info("%s: recalibration from %s", directory, where)


def run_attach_metal_clf(args: argparse.Namespace) -> None:
    """A fold model + a Magpie metal classifier blended into its metal head; std scale and
    recalibration refitted on the fold's validation rows; scored on the test fold; saved to ``--out``."""
    from sklearn.metrics import roc_auc_score

    from gapforge.models.metal_gate import MagpieMetalClassifier
    from gapforge.models.registry import load_model

    model = load_model(args.model_dir)
    record = model.metadata_["benchmark_record"]
    name, task, fold = record.split("/")[0], record.split("/")[1], int(record.rsplit("fold", 1)[1])
    key = f"{name}+hgb-metal{args.tag}/{task}/fold{fold}"

    def fit_score(part: Fold) -> dict[str, Any]:
        train, val, test = part.train, part.val, part.test
        t0 = time.perf_counter()
        clf = MagpieMetalClassifier(max_iter=args.max_iter, seed=fold, features=args.features).fit(
            train[C.FORMULA], train[C.BAND_GAP]
        )
        seconds = time.perf_counter() - t0
        yv, yt = val[C.BAND_GAP].to_numpy(), test[C.BAND_GAP].to_numpy()
        p_head = model.components(val[C.FORMULA].tolist())[C.P_METAL].to_numpy()
        p_clf = clf.p_metal(val[C.FORMULA].tolist())
        weights = np.linspace(0, 1, 21)
        auc = [roc_auc_score(yv <= 0, w * p_clf + (1 - w) * p_head) for w in weights]
        w = float(weights[int(np.argmax(auc))])
        model.attach_metal_classifier(clf, w)
        model.recalibration_ = None
        cols = (C.P_METAL, C.BAND_GAP_MEAN, C.BAND_GAP_STD)
        vp = model.components(val[C.FORMULA].tolist())
        pv, mv, sv = (vp[c].to_numpy() for c in cols)
        model.std_scale = calibrate(yv, pv, mv, sv)
        model.recalibrate(val[C.FORMULA].tolist(), yv, seed=fold)
        tp = model.components(test[C.FORMULA].tolist())
        pt, mt, st = (tp[c].to_numpy() for c in cols)
        dist = model.predict_distribution(test[C.FORMULA].tolist())
        _resave(model, Path(args.out), key, f"{record}: the fold's {len(val)} validation rows")
        out = {
            "model": f"{name}+hgb-metal{args.tag}",
            "task": task,
            "fold": fold,
            "model_dir": str(args.out),
            "base_model_dir": str(args.model_dir),
            "n_train": len(train),
            "blend_weight_hgb": w,
            "hgb_iterations": int(clf.classifier_.n_iter_),
            "std_scale": model.std_scale,
            "test": gate_scores(yt, pt, mt, st, model.std_scale),
            "test_distribution": distribution_scores(dist, yt, seed=fold),
            "test_raw_mixture": distribution_scores(dist.with_recalibration(None), yt, seed=fold),
            "validation": gate_scores(yv, pv, mv, sv, model.std_scale),
            "train_seconds": round(seconds, 1),
        }
        log.info("%s: %s", key, out["test"])
        return out

    run_folds(task, [fold], f"{name}+hgb-metal{args.tag}", fit_score, overwrite=args.overwrite)


#: model-card keys RoostEnsemble.save writes itself (not carried over when a model is re-saved)
_WRITTEN_BY_SAVE = frozenset(
    {
        *("cdf_recalibration", "metal_classifier", "gap_regressor", "format_version", "weights_file"),
        *("weights_sha256", "elem_embedding_file_sha256", "elements", "target_mean_eV", "target_std_eV"),
        "files_sha256",
    }
)


def _resave(model: Any, out: Path, key: str, recal_where: str, **extra: Any) -> None:
    """Save a fold model with an attached part, its card's metadata carried over and updated."""
    meta = {
        k: v for k, v in model.metadata_.items() if k not in _WRITTEN_BY_SAVE and not k.endswith("_version")
    }
    meta.update(
        benchmark_record=key,
        cdf_recalibration_fitted_on=recal_where,
        command=shlex.join(["python", "benchmarks/bench_matbench.py", *sys.argv[1:]]),
        **extra,
    )
    model.save(out, metadata=meta)


def run_attach_gap_reg(args: argparse.Namespace) -> None:
    """A fold model (metal classifier attached or not) + a Magpie gap regressor blended into its
    non-metal gap (weight: non-metal MAE on the fold's validation rows); std scale and
    recalibration refitted there; scored on the test fold; saved to ``--out``."""
    from gapforge.models.metal_gate import MagpieGapRegressor, blend
    from gapforge.models.registry import load_model

    model = load_model(args.model_dir)
    record = model.metadata_["benchmark_record"]
    name, task, fold = record.split("/")[0], record.split("/")[1], int(record.rsplit("fold", 1)[1])
    key = f"{name}+hgb-gap{args.tag}/{task}/fold{fold}"
    if _done(key) and not args.overwrite:
        log.info("%s done already (--overwrite to redo)", key)
        return
    if Path(args.out).exists() and not args.overwrite:
        raise SystemExit(f"{args.out}: exists; pass --overwrite to replace it")

    def fit_score(part: Fold) -> dict[str, Any]:
        train, val, test = part.train, part.val, part.test
        t0 = time.perf_counter()
        reg = MagpieGapRegressor(max_iter=args.max_iter, seed=fold).fit(train[C.FORMULA], train[C.BAND_GAP])
        seconds = time.perf_counter() - t0
        yv, yt = val[C.BAND_GAP].to_numpy(), test[C.BAND_GAP].to_numpy()
        fv = val[C.FORMULA].tolist()
        model.gap_regressor_ = None
        mu_head = model.components(fv)[C.BAND_GAP_MEAN].to_numpy()
        mu_reg = reg.gap(fv)
        nm = (yv > 0) & np.isfinite(mu_head)
        mae_w = [float(np.abs(blend(mu_head, mu_reg, a)[nm] - yv[nm]).mean()) for a in BLEND_GRID]
        w = float(BLEND_GRID[int(np.argmin(mae_w))])
        model.attach_gap_regressor(reg, w)
        model.recalibration_ = None
        cols = (C.P_METAL, C.BAND_GAP_MEAN, C.BAND_GAP_STD)
        vp = model.components(fv)
        pv, mv, sv = (vp[c].to_numpy() for c in cols)
        model.std_scale = calibrate(yv, pv, mv, sv)
        model.recalibrate(fv, yv, seed=fold)
        tp = model.components(test[C.FORMULA].tolist())
        pt, mt, st = (tp[c].to_numpy() for c in cols)
        dist = model.predict_distribution(test[C.FORMULA].tolist())
        _resave(
            model,
            Path(args.out),
            key,
            f"{record}: the fold's {len(val)} validation rows, after attaching the gap regressor",
            train_seconds_gap_regressor=round(seconds, 1),
        )
        out = {
            "model": f"{name}+hgb-gap{args.tag}",
            "task": task,
            "fold": fold,
            "model_dir": str(args.out),
            "base_model_dir": str(args.model_dir),
            "n_train": len(train),
            "gap_blend_weight_hgb": w,
            "gap_blend_val_mae_by_weight": dict(zip([round(a, 2) for a in BLEND_GRID], mae_w, strict=True)),
            "hgb_reg_iterations": int(reg.regressor_.n_iter_),
            "std_scale": model.std_scale,
            "test": gate_scores(yt, pt, mt, st, model.std_scale),
            "test_distribution": distribution_scores(dist, yt, seed=fold),
            "test_raw_mixture": distribution_scores(dist.with_recalibration(None), yt, seed=fold),
            "validation": gate_scores(yv, pv, mv, sv, model.std_scale),
            "train_seconds": round(seconds, 1),
        }
        log.info("%s: %s", key, out["test"])
        return out

    run_folds(task, [fold], f"{name}+hgb-gap{args.tag}", fit_score, overwrite=True)


# -- gradient boosting ---------------------------------------------------------------------
def _hgb_gate(train: pd.DataFrame, seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    from gapforge.models.featurize import MagpieFeaturizer

    feat = MagpieFeaturizer().fit(None)
    X = feat.transform(train[C.FORMULA].tolist())
    y = train[C.BAND_GAP].to_numpy(dtype=float)
    metal = y <= 0
    kw = {
        "max_iter": 500,
        "learning_rate": 0.1,
        "max_leaf_nodes": 63,
        "min_samples_leaf": 20,
        "random_state": seed,
    }
    clf = HistGradientBoostingClassifier(**kw).fit(X, metal)
    reg = HistGradientBoostingRegressor(loss="absolute_error", **kw).fit(X[~metal], y[~metal])
    lo = HistGradientBoostingRegressor(loss="quantile", quantile=0.158655, **kw).fit(X[~metal], y[~metal])
    hi = HistGradientBoostingRegressor(loss="quantile", quantile=0.841345, **kw).fit(X[~metal], y[~metal])

    def parts(formulas: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        Z = feat.transform(formulas)
        p = clf.predict_proba(Z)[:, list(clf.classes_).index(True)]
        s = np.clip((hi.predict(Z) - lo.predict(Z)) / 2, 1e-3, None)
        return p, np.clip(reg.predict(Z), 0, None), s

    return parts


def run_hgb(args: argparse.Namespace) -> None:
    tag = "+".join(["hgb-gated", *args.extra])

    def fit_score(part: Fold) -> dict[str, Any]:
        train, val, test = part.train, part.val, part.test
        extra = _extra_rows(args.extra, test)
        t0 = time.perf_counter()
        parts = _hgb_gate(pd.concat([train, extra], ignore_index=True), part.fold)
        seconds = time.perf_counter() - t0
        yv, yt = val[C.BAND_GAP].to_numpy(), test[C.BAND_GAP].to_numpy()
        pv, mv, sv = parts(val[C.FORMULA].tolist())
        scale = calibrate(yv, pv, mv, sv)
        pt, mt, st = parts(test[C.FORMULA].tolist())
        return {
            "model": tag,
            "task": args.task,
            "fold": part.fold,
            "n_train": len(train) + len(extra),
            "n_extra": len(extra),
            "extra": args.extra,
            "std_scale": scale,
            "test": gate_scores(yt, pt, mt, st, scale),
            "test_uncalibrated": gate_scores(yt, pt, mt, st, 1.0),
            "train_seconds": round(seconds, 1),
        }

    run_folds(args.task, args.folds, tag, fit_score)


def _gate_rule(p: np.ndarray, mu: np.ndarray, s: np.ndarray, y: np.ndarray, t: float) -> dict[str, Any]:
    """Metal iff ``p >= t`` (0 eV), else the mixture median with ``p`` capped below 0.5 (scores)."""
    point = _rule_point(p, mu, s, t)
    metal = y <= 0
    return {
        "threshold": round(float(t), 3),
        "mae_eV": float(np.abs(point - y).mean()),
        "rmse_eV": float(np.sqrt(((point - y) ** 2).mean())),
        "metals_below_0.1": float((point[metal] < METAL_EPS).mean()),
        "nonmetals_above_0.1": float((point[~metal] >= METAL_EPS).mean()),
    }


def _best_threshold(p: np.ndarray, metal: np.ndarray) -> float:
    """The threshold of highest balanced accuracy (metals and non-metals weighted alike)."""
    grid = np.linspace(0.05, 0.95, 91)
    ba = [0.5 * ((p[metal] >= t).mean() + (p[~metal] < t).mean()) for t in grid]
    return float(grid[int(np.argmax(ba))])


def run_hgb_metal(args: argparse.Namespace) -> None:
    """Magpie gradient-boosting metal classifier, its blend with Roost's metal head; thresholds on val."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    from gapforge.models.featurize import MagpieFeaturizer

    feat = MagpieFeaturizer().fit(None)

    def fit_score(part: Fold) -> dict[str, Any]:
        fold, df, tr = part.fold, part.table, part.tr
        comp = _roost_components(fold, Path(args.work))
        t0 = time.perf_counter()
        X = {
            k: feat.transform(df.iloc[rows][C.FORMULA].tolist())
            for k, rows in (("tr", tr), ("va", part.va), ("te", part.te))
        }
        t_feat = time.perf_counter() - t0
        y_tr = df.iloc[tr][C.BAND_GAP].to_numpy() <= 0
        clf = HistGradientBoostingClassifier(
            max_iter=args.max_iter,
            learning_rate=0.1,
            max_leaf_nodes=63,
            min_samples_leaf=20,
            early_stopping=True,
            validation_fraction=0.1,
            n_iter_no_change=15,
            random_state=fold,
        ).fit(X["tr"], y_tr)
        seconds = time.perf_counter() - t0
        yv, yt = comp["val_y"], comp["test_y"]
        mv, mt = yv <= 0, yt <= 0
        ph = {k: clf.predict_proba(X[k])[:, list(clf.classes_).index(True)] for k in ("va", "te")}
        pr = {"va": comp["val_p"], "te": comp["test_p"]}
        weights = np.linspace(0, 1, 21)
        w = float(
            weights[int(np.argmax([roc_auc_score(mv, a * ph["va"] + (1 - a) * pr["va"]) for a in weights]))]
        )
        pb = {k: w * ph[k] + (1 - w) * pr[k] for k in ("va", "te")}
        out: dict[str, Any] = {}
        for name, pp in (("roost", pr), ("hgb", ph), ("blend", pb)):
            t_best = _best_threshold(pp["va"], mv)
            out[name] = {
                "auc_test": float(roc_auc_score(mt, pp["te"])),
                "auc_val": float(roc_auc_score(mv, pp["va"])),
                "at_0.5": _gate_rule(pp["te"], comp["test_mu"], comp["test_s"] * comp["std_scale"], yt, 0.5),
                "at_val_threshold": _gate_rule(
                    pp["te"], comp["test_mu"], comp["test_s"] * comp["std_scale"], yt, t_best
                ),
            }
        log.info("hgb-metal fold %d: %s", fold, json.dumps(out))
        return {
            "model": "hgb-metal",
            "task": "mp_gap",
            "fold": fold,
            "n_train": len(tr),
            "hgb_iterations": int(clf.n_iter_),
            "blend_weight_hgb": w,
            "classifiers": out,
            "test": {"metal_auc": out["blend"]["auc_test"], **out["blend"]["at_val_threshold"]},
            "featurize_seconds": round(t_feat, 1),
            "train_seconds": round(seconds, 1),
        }

    run_folds("mp_gap", args.folds, "hgb-metal", fit_score)


def _rule_point(p: np.ndarray, mu: np.ndarray, s: np.ndarray, t: float) -> np.ndarray:
    """:func:`_gate_rule`'s points: 0 eV iff ``p >= t``, else the median with ``p`` capped below 0.5."""
    return np.where(p >= t, 0.0, combine(np.minimum(p, 0.499), mu, s).point)


def _hard_point(p: np.ndarray, mu: np.ndarray, t: float) -> np.ndarray:
    """The hard gate: 0 eV iff ``p >= t``, else the non-metal regressor's gap ``mu`` itself.

    The mixture median of :func:`_rule_point` sinks towards 0 eV as ``p`` nears 0.5, so a row
    called non-metal can still land below 0.1 eV; here a non-metal call keeps its gap.
    """
    return np.where(p >= t, 0.0, mu)


def _shares(point: np.ndarray, y: np.ndarray, t: float) -> dict[str, Any]:
    metal = y <= 0
    return {
        "threshold": round(float(t), 3),
        "mae_eV": float(np.abs(point - y).mean()),
        "metals_below_0.1": float((point[metal] < METAL_EPS).mean()),
        "nonmetals_above_0.1": float((point[~metal] >= METAL_EPS).mean()),
    }


def _goal_threshold(point: Callable[[float], np.ndarray], y: np.ndarray, share: float = 0.95) -> float:
    """The lowest threshold at which ``share`` of the non-metals get a point >= 0.1 eV (0.99 if none).

    ``point(t)``: the validation rows' points at threshold ``t``. At the threshold returned the
    goal's non-metal side holds on validation; the metals' share is whatever the classifier reaches.
    """
    nm = y > 0
    ok = [t for t in np.linspace(0.05, 0.99, 95) if (point(t)[nm] >= METAL_EPS).mean() >= share]
    return float(ok[0]) if ok else 0.99


def _metal_split_scores(
    p: np.ndarray, mu: np.ndarray, s: np.ndarray, y: np.ndarray, t: float, seen: np.ndarray
) -> dict[str, Any]:
    """AUC and the two metal shares at threshold ``t`` on test rows whose formula the fold trained on
    (``seen``: another polymorph of it was a training row) and on the others."""
    from sklearn.metrics import roc_auc_score

    out = {}
    for name, rows in (("seen_formula", seen), ("unseen_formula", ~seen)):
        metal = y[rows] <= 0
        point = _rule_point(p[rows], mu[rows], s[rows], t)
        out[name] = {
            "n": int(rows.sum()),
            "metal_share": float(metal.mean()),
            "auc": float(roc_auc_score(metal, p[rows])),
            "metals_below_0.1": float((point[metal] < METAL_EPS).mean()),
            "nonmetals_above_0.1": float((point[~metal] >= METAL_EPS).mean()),
        }
    return out


def run_metal_clf(args: argparse.Namespace) -> None:
    """The Magpie metal classifier with other settings, through ``hgb-metal``'s gate (blend with the
    Roost fold model's metal head by validation AUC; thresholds chosen on validation) and through
    the hard gate (:func:`_hard_point`). Each fold's P(metal) is cached under ``--work``."""
    from sklearn.metrics import roc_auc_score

    from gapforge.models.metal_gate import MagpieMetalClassifier, MetalFeatures, blend

    name = f"metal-clf-{MetalFeatures(args.features)}-{args.max_iter}{args.tag}"

    def fit_score(part: Fold) -> dict[str, Any]:
        fold, train = part.fold, part.train
        comp = _roost_components(fold, Path(args.components))
        cache = Path(args.work) / f"{name}_fold{fold}.npz"
        if cache.is_file():
            with np.load(cache) as z:
                ph, fit = {"va": z["val_p"], "te": z["test_p"]}, json.loads(str(z["fit"]))
        else:
            t0 = time.perf_counter()
            clf = MagpieMetalClassifier(
                max_iter=args.max_iter,
                learning_rate=args.learning_rate,
                max_leaf_nodes=args.max_leaf_nodes,
                seed=fold,
                features=args.features,
            ).fit(train[C.FORMULA], train[C.BAND_GAP])
            fit = {
                "params": clf.get_params(),
                "n_features": int(clf.featurizer_.transform(["NaCl"]).shape[1]),
                "hgb_iterations": int(clf.classifier_.n_iter_),
                "train_seconds": round(time.perf_counter() - t0, 1),
                "fit_load_avg": [part.load_avg_start, _load_avg()],
            }
            ph = {"va": clf.p_metal(part.val[C.FORMULA]), "te": clf.p_metal(part.test[C.FORMULA])}
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp.npz")
            np.savez(tmp, val_p=ph["va"], test_p=ph["te"], fit=json.dumps(fit))
            tmp.replace(cache)
        yv, yt = comp["val_y"], comp["test_y"]
        mv, mt = yv <= 0, yt <= 0
        pr = {"va": comp["val_p"], "te": comp["test_p"]}
        auc_w = [roc_auc_score(mv, blend(pr["va"], ph["va"], a)) for a in BLEND_GRID]
        w = float(BLEND_GRID[int(np.argmax(auc_w))])
        pb = {k: blend(pr[k], ph[k], w) for k in ("va", "te")}
        sv, st = comp["val_s"] * comp["std_scale"], comp["test_s"] * comp["std_scale"]
        muv, mut = comp["val_mu"], comp["test_mu"]
        seen = part.test[C.FORMULA].isin(set(train[C.FORMULA]) | set(part.val[C.FORMULA])).to_numpy()
        out: dict[str, Any] = {}
        for which, pp in (("classifier", ph), ("blend", pb)):
            t_ba = _best_threshold(pp["va"], mv)
            t_goal = _goal_threshold(lambda t, pp=pp: _rule_point(pp["va"], muv, sv, t), yv)
            t_hard = _goal_threshold(lambda t, pp=pp: _hard_point(pp["va"], muv, t), yv)
            out[which] = {
                "auc_test": float(roc_auc_score(mt, pp["te"])),
                "auc_val": float(roc_auc_score(mv, pp["va"])),
                "at_0.5": _gate_rule(pp["te"], mut, st, yt, 0.5),
                "at_val_threshold": _gate_rule(pp["te"], mut, st, yt, t_ba),
                "at_val_goal_threshold": _gate_rule(pp["te"], mut, st, yt, t_goal),
                "hard_at_0.5": _shares(_hard_point(pp["te"], mut, 0.5), yt, 0.5),
                "hard_at_val_threshold": _shares(_hard_point(pp["te"], mut, t_ba), yt, t_ba),
                "hard_at_val_goal_threshold": _shares(_hard_point(pp["te"], mut, t_hard), yt, t_hard),
                "by_formula_at_val_threshold": _metal_split_scores(pp["te"], mut, st, yt, t_ba, seen),
            }
        log.info("%s fold %d: %s", name, fold, json.dumps({k: v["auc_test"] for k, v in out.items()}))
        return {
            "model": name,
            "task": "mp_gap",
            "fold": fold,
            "n_train": len(train),
            **{k: v for k, v in fit.items() if k != "fit_load_avg"},
            "blend_weight_hgb": w,
            "classifiers": out,
            "test": {"metal_auc": out["blend"]["auc_test"], **out["blend"]["at_val_threshold"]},
            "load_avg_start": fit["fit_load_avg"][0],
            "load_avg_end": fit["fit_load_avg"][1],
        }

    run_folds("mp_gap", args.folds, name, fit_score)


# -- Magpie gap regressor blended with Roost's non-metal gap ------------------------------
#: blend weights (share of the gradient-boosting regressor) tried on the validation rows
BLEND_GRID = np.round(np.linspace(0.0, 1.0, 21), 2)


def _hgb_fold_outputs(df: pd.DataFrame, fold: int, args: argparse.Namespace, cache: Path) -> dict[str, Any]:
    """The fold's Magpie metal classifier P(metal) and non-metal gap regressor on val/test (cached).

    The classifier is ``hgb-metal``'s (same settings, same seed: same probabilities); the
    regressor a ``HistGradientBoostingRegressor`` (absolute error) on the training part's
    non-metal rows, early stopping on 10 % of them (the fold's validation rows stay unseen).
    """
    if cache.is_file():
        with np.load(cache) as z:
            return {k: (z[k] if z[k].ndim else z[k].item()) for k in z}
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    from gapforge.models.featurize import MagpieFeaturizer

    feat = MagpieFeaturizer().fit(None)
    tr, va, te = _fold_parts(len(df), fold)
    load0 = _load_avg()
    t0 = time.perf_counter()
    X = {
        k: feat.transform(df.iloc[rows][C.FORMULA].tolist())
        for k, rows in (("tr", tr), ("va", va), ("te", te))
    }
    y_tr = df.iloc[tr][C.BAND_GAP].to_numpy(dtype=float)
    t_feat = time.perf_counter() - t0
    tree = {"learning_rate": 0.1, "max_leaf_nodes": 63, "min_samples_leaf": 20, "random_state": fold}
    stop = {"early_stopping": True, "validation_fraction": 0.1, "n_iter_no_change": 15}
    t0 = time.perf_counter()
    clf = HistGradientBoostingClassifier(max_iter=args.clf_max_iter, **tree, **stop).fit(X["tr"], y_tr <= 0)
    t_clf = time.perf_counter() - t0
    t0 = time.perf_counter()
    nm = y_tr > 0
    reg = HistGradientBoostingRegressor(loss="absolute_error", max_iter=args.max_iter, **tree, **stop)
    reg.fit(X["tr"][nm], y_tr[nm])
    t_reg = time.perf_counter() - t0
    col = list(clf.classes_).index(True)
    out: dict[str, Any] = {
        "val_p_hgb": clf.predict_proba(X["va"])[:, col],
        "test_p_hgb": clf.predict_proba(X["te"])[:, col],
        "val_mu_hgb": np.clip(reg.predict(X["va"]), 0.0, None),
        "test_mu_hgb": np.clip(reg.predict(X["te"]), 0.0, None),
        "clf_iterations": int(clf.n_iter_),
        "reg_iterations": int(reg.n_iter_),
        "n_train_nonmetal": int(nm.sum()),
        "featurize_seconds": round(t_feat, 1),
        "clf_seconds": round(t_clf, 1),
        "reg_seconds": round(t_reg, 1),
        "fit_load_avg_start": np.array(load0),
        "fit_load_avg_end": np.array(_load_avg()),
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(cache)
    return out


def _stack_inputs(mu_r: np.ndarray, mu_h: np.ndarray, s_r: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.column_stack([mu_r, mu_h, s_r, p, mu_h - mu_r])


def _stacker(X: np.ndarray, y: np.ndarray, seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(
        loss="absolute_error", max_iter=150, learning_rate=0.05, max_leaf_nodes=8, min_samples_leaf=40,
        random_state=seed,
    ).fit(X, y)  # fmt: skip


def _stacked(
    val: dict[str, np.ndarray], test: dict[str, np.ndarray], yv: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A small booster on (Roost mu, HGB mu, Roost std, P(metal), difference) fitted on the
    validation non-metals: cross-fitted (5 folds) on validation, refitted on all of them for test."""
    from sklearn.model_selection import KFold

    Xv, Xt = (_stack_inputs(d["mu_r"], d["mu_h"], d["s_r"], d["p"]) for d in (val, test))
    nm = np.flatnonzero(yv > 0)
    out_v = np.empty(len(yv))
    for k, (a, b) in enumerate(KFold(5, shuffle=True, random_state=seed).split(np.arange(len(yv)))):
        a_nm = np.intersect1d(a, nm)
        out_v[b] = _stacker(Xv[a_nm], yv[a_nm], seed + k).predict(Xv[b])
    out_t = _stacker(Xv[nm], yv[nm], seed).predict(Xt)
    return np.clip(out_v, 0.0, None), np.clip(out_t, 0.0, None)


def _variant_scores(
    yv: np.ndarray, yt: np.ndarray, p: dict[str, np.ndarray], mu: dict[str, np.ndarray],
    s: dict[str, np.ndarray], seed: int, rule_scale: float,
) -> dict[str, Any]:  # fmt: skip
    """One non-metal gap through the gate: ``hgb-metal``'s rule (threshold from validation, the
    Roost fold model's std scale, as there) and the distribution (std scale and CDF
    recalibration refitted on validation, as ``attach-metal-clf``)."""
    from gapforge.models.calibration import CdfRecalibration
    from gapforge.models.metal_gate import GapDistribution

    t_best = _best_threshold(p["va"], yv <= 0)
    scale = calibrate(yv, p["va"], mu["va"], s["va"])
    rv = GapDistribution(p["va"], mu["va"], s["va"] * scale)
    rt = GapDistribution(p["te"], mu["te"], s["te"] * scale)
    recal = CdfRecalibration.fit(rv.pit(yv, seed=seed))
    nm_v, nm_t = yv > 0, yt > 0
    return {
        "std_scale": scale,
        "nonmetal_mu_mae_val": float(np.abs(mu["va"][nm_v] - yv[nm_v]).mean()),
        "nonmetal_mu_mae_test": float(np.abs(mu["te"][nm_t] - yt[nm_t]).mean()),
        "at_val_threshold": _gate_rule(p["te"], mu["te"], s["te"] * rule_scale, yt, t_best),
        "at_val_threshold_validation": _gate_rule(p["va"], mu["va"], s["va"] * rule_scale, yv, t_best),
        "at_0.5": gate_scores(yt, p["te"], mu["te"], s["te"], scale),
        "test_distribution": distribution_scores(rt.with_recalibration(recal), yt, seed=seed),
    }


def run_hgb_gap_blend(args: argparse.Namespace) -> None:
    """Roost's non-metal gap blended with a Magpie gradient-boosting regressor's, through the
    gate with the blended Magpie metal classifier (``hgb-metal``'s); weights chosen on validation."""
    from sklearn.metrics import roc_auc_score

    from gapforge.models.metal_gate import blend

    names = {"blend": "roost+hgb-gap-blend", "hgb": "hgb-gap-alone", "stack": "roost+hgb-gap-stack"}
    names = {v: m + args.tag for v, m in names.items()}

    def fit_score(part: Fold) -> dict[str, Any]:
        fold, df = part.fold, part.table
        src = _load()["records"][f"roost-gated/mp_gap/fold{fold}"]
        comp = _roost_components(fold, Path(args.components))
        hgb = _hgb_fold_outputs(df, fold, args, Path(args.work) / f"hgb-gap{args.tag}_mp_gap_fold{fold}.npz")
        # wall time and load of the fit (from the cache when it was fitted by an earlier run)
        seconds = hgb["featurize_seconds"] + hgb["clf_seconds"] + hgb["reg_seconds"]
        load0 = [float(x) for x in hgb["fit_load_avg_start"]]
        load1 = [float(x) for x in hgb["fit_load_avg_end"]]
        yv, yt = comp["val_y"], comp["test_y"]
        # the metal classifier blend: as hgb-metal (weight by validation AUC)
        pr = {"va": comp["val_p"], "te": comp["test_p"]}
        ph = {"va": hgb["val_p_hgb"], "te": hgb["test_p_hgb"]}
        auc = [roc_auc_score(yv <= 0, blend(pr["va"], ph["va"], a)) for a in BLEND_GRID]
        wp = float(BLEND_GRID[int(np.argmax(auc))])
        p = {k: blend(pr[k], ph[k], wp) for k in ("va", "te")}
        s = {"va": comp["val_s"], "te": comp["test_s"]}
        mr = {"va": comp["val_mu"], "te": comp["test_mu"]}
        mh = {"va": hgb["val_mu_hgb"], "te": hgb["test_mu_hgb"]}
        nm = yv > 0
        mae_w = [float(np.abs(blend(mr["va"], mh["va"], a)[nm] - yv[nm]).mean()) for a in BLEND_GRID]
        w = float(BLEND_GRID[int(np.argmin(mae_w))])
        mb = {k: blend(mr[k], mh[k], w) for k in ("va", "te")}
        parts = {
            k: {"mu_r": mr[k], "mu_h": mh[k], "s_r": s[k], "p": p[k]} for k in ("va", "te")
        }  # fmt: skip
        ms = dict(zip(("va", "te"), _stacked(parts["va"], parts["te"], yv, fold), strict=True))
        rule_scale = float(comp["std_scale"])
        variants = {
            "roost": _variant_scores(yv, yt, p, mr, s, fold, rule_scale),
            "hgb": _variant_scores(yv, yt, p, mh, s, fold, rule_scale),
            "blend": _variant_scores(yv, yt, p, mb, s, fold, rule_scale),
            "stack": _variant_scores(yv, yt, p, ms, s, fold, rule_scale),
        }
        common = {
            "task": "mp_gap",
            "fold": fold,
            "n_train": len(part.tr),
            "n_train_nonmetal": hgb["n_train_nonmetal"],
            "roost_model_dir": src["model_dir"],
            "metal_blend_weight_hgb": wp,
            "gap_blend_weight_hgb": w,
            "gap_blend_val_mae_by_weight": dict(zip([round(a, 2) for a in BLEND_GRID], mae_w, strict=True)),
            "hgb_clf_iterations": hgb["clf_iterations"],
            "hgb_reg_iterations": hgb["reg_iterations"],
            "featurize_seconds": hgb["featurize_seconds"],
            "clf_seconds": hgb["clf_seconds"],
            "reg_seconds": hgb["reg_seconds"],
            "train_seconds": round(seconds, 1),
            "roost_alone_same_gate": variants["roost"],
            "load_avg_start": load0,
            "load_avg_end": load1,
            "scored_at_load_avg": _load_avg(),
        }
        log.info(
            "fold %d: weight %.2f, MAE roost %.4f hgb %.4f blend %.4f stack %.4f",
            fold, w, *(variants[v]["at_val_threshold"]["mae_eV"] for v in ("roost", "hgb", "blend", "stack")),
        )  # fmt: skip
        auc_test = float(roc_auc_score(yt <= 0, p["te"]))
        return {
            names[v]: {
                "model": names[v],
                **common,
                "std_scale": r["std_scale"],
                "variant": r,
                "test": {"metal_auc": auc_test, **r["at_val_threshold"]},
                "test_distribution": r["test_distribution"],
            }
            for v, r in variants.items()
            if v in names
        }

    run_folds("mp_gap", args.folds, list(names.values()), fit_score)


# -- experimental head ---------------------------------------------------------------------
def _cluster_parts(
    df: pd.DataFrame, fold: int, n_clusters: int = 5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An extrapolation split: KMeans clusters of standardised Magpie features, cluster ``fold`` as test.

    The clusters are chemistries (oxides, halides, intermetallics, ...), so every test row's
    chemistry is absent from training: what the head meets for a composition unlike expt_gap.
    """
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import StandardScaler

    from gapforge.models.featurize import MagpieFeaturizer

    X = MagpieFeaturizer().fit().featurize(df[C.FORMULA].tolist()).X
    Z = np.nan_to_num(StandardScaler().fit_transform(X))
    label = KMeans(n_clusters=n_clusters, n_init=10, random_state=0).fit_predict(Z)
    te = np.flatnonzero(label == fold)
    tr = np.flatnonzero(label != fold)
    perm = np.random.default_rng(0).permutation(tr)
    n_val = round(VAL_FRACTION * len(tr))
    return perm[n_val:], perm[:n_val], te


def host_twins(train_formulas: list[str], test_formulas: list[str], min_fraction: float = 0.05) -> np.ndarray:
    """Test rows whose host (dopants < ``min_fraction`` dropped, atom fractions to 0.01) is a
    training row's host under another formula: ``Si`` with ``Si0.999Ge0.001`` in training,
    ``GaAs`` with ``Ga100As99P``, or the reverse."""
    from gapforge.models.featurize import MagpieFeaturizer, host_formulas

    fz = MagpieFeaturizer().fit()

    def keys(formulas: list[str]) -> list[tuple[tuple[str, float], ...]]:
        hosts = host_formulas(fz, formulas, min_fraction)
        amounts, _ = fz._read_formulas(hosts)
        total = amounts.sum(axis=1, keepdims=True)
        w = np.divide(amounts, total, out=np.zeros_like(amounts), where=total > 0)
        return [tuple((fz.elements_[j], round(float(r[j]), 2)) for j in np.flatnonzero(r)) for r in w]

    def full(formulas: list[str]) -> list[tuple[tuple[str, float], ...]]:
        amounts, _ = fz._read_formulas(formulas)
        total = amounts.sum(axis=1, keepdims=True)
        w = np.divide(amounts, total, out=np.zeros_like(amounts), where=total > 0)
        return [tuple((fz.elements_[j], round(float(r[j]), 6)) for j in np.flatnonzero(r)) for r in w]

    train_hosts: dict[Any, set[Any]] = {}
    for h, f in zip(keys(train_formulas), full(train_formulas), strict=True):
        train_hosts.setdefault(h, set()).add(f)
    return np.array(
        [
            bool(h) and bool(train_hosts.get(h, set()) - {f})
            for h, f in zip(keys(test_formulas), full(test_formulas), strict=True)
        ],
        dtype=bool,
    )


def point_scores(point: np.ndarray, y: np.ndarray, std: np.ndarray) -> dict[str, Any]:
    """MAE, RMSE, R², ±1/2σ coverage, metal shares and Spearman (non-metals) of point predictions."""
    from scipy.stats import spearmanr

    err = point - y
    c1, c2 = coverage(err, std)
    nz = y > 0
    return {
        "n": len(y),
        "mae_eV": float(np.abs(err).mean()),
        "rmse_eV": float(np.sqrt((err**2).mean())),
        "r2": float(1 - (err**2).sum() / ((y - y.mean()) ** 2).sum()),
        "within_1sigma": c1,
        "within_2sigma": c2,
        "metals_below_0.1": float((point[~nz] < METAL_EPS).mean()),
        "nonmetals_above_0.1": float((point[nz] >= METAL_EPS).mean()),
        "spearman_nonzero": float(spearmanr(point[nz], y[nz]).statistic),
    }


def run_expt(args: argparse.Namespace) -> None:
    from gapforge.models.experiment import HEAD_BOOSTER, ExperimentHead, ExperimentPredictor
    from gapforge.models.registry import load_model

    pbe = load_model(args.pbe_model)

    def pbe_as_is(part: Fold) -> dict[str, Any]:
        """The PBE oracle as it is, against measured gaps: what the head must beat."""
        test = part.test
        pred = pbe.predict(test[C.FORMULA].tolist())
        yt, pt = test[C.BAND_GAP].to_numpy(), pred[C.BAND_GAP_MEAN].to_numpy()
        ok = np.isfinite(pt)
        return {
            "model": "pbe-oracle-as-is",
            "task": "expt_gap",
            "fold": part.fold,
            "pbe_model": str(args.pbe_model),
            "test": point_scores(pt[ok], yt[ok], pred[C.BAND_GAP_STD].to_numpy()[ok]),
        }

    run_folds("expt_gap", args.folds, "pbe-oracle-as-is", pbe_as_is)
    task = "expt_gap" if args.split == "matbench" else f"expt_gap-{args.split}"

    def head(variant: str) -> Callable[[Fold], dict[str, Any]]:
        def fit_score(part: Fold) -> dict[str, Any]:
            fold, train, val, test = part.fold, part.train, part.val, part.test
            t0 = time.perf_counter()
            model = ExperimentHead(
                features=variant,
                booster=HEAD_BOOSTER.with_seed(fold),
                regressor_booster=_regressor_booster(args, fold),
                host_fraction=args.host_fraction,
                host_magpie=args.host_magpie,
                target=args.target,
                n_bags=args.n_bags,
                bag_fraction=args.bag_fraction,
            ).fit(
                train[C.FORMULA].tolist(),
                train[C.BAND_GAP].to_numpy(),
                pbe_model=pbe,
                val_formulas=val[C.FORMULA].tolist(),
                val_band_gaps=val[C.BAND_GAP].to_numpy(),
                recalibration_folds=args.recal_folds,
            )
            seconds = time.perf_counter() - t0
            pred = model.predict(test[C.FORMULA].tolist(), pbe_model=pbe)
            dist = model.predict_distribution(test[C.FORMULA].tolist(), pbe_model=pbe)
            yt = test[C.BAND_GAP].to_numpy()
            preds = Path(args.work) / "expt_preds" / f"expt-head-{variant}{args.tag}_{task}_fold{fold}.npz"
            _save_test_distribution(preds, dist, yt)
            pt = pred[C.BAND_GAP_MEAN].to_numpy()
            err = pt - yt
            twin = host_twins(train[C.FORMULA].tolist(), test[C.FORMULA].tolist())
            return {
                "model": f"expt-head-{variant}{args.tag}",
                "task": task,
                "host_fraction": args.host_fraction,
                "host_magpie": args.host_magpie,
                "target": args.target,
                "head_params": model.card_params(),
                "host_twins": {"n": int(twin.sum()), "mae_eV": float(np.abs(err[twin]).mean())},
                "fold": fold,
                "n_train": len(train),
                "n_val": len(val),
                "pbe_model": str(args.pbe_model),
                "std_scale": model.std_scale_,
                "test": point_scores(pt, yt, pred[C.BAND_GAP_STD].to_numpy()),
                "test_distribution": distribution_scores(dist, yt, seed=fold),
                "test_raw_mixture": distribution_scores(dist.with_recalibration(None), yt, seed=fold),
                "order_check": _order_check(ExperimentPredictor(pbe, model)),
                "train_seconds": round(seconds, 1),
            }

        return fit_score

    split = None if args.split == "matbench" else _cluster_parts
    for variant in args.variants:
        run_folds(
            "expt_gap",
            args.folds,
            f"expt-head-{variant}{args.tag}",
            head(variant),
            task_label=task,
            split=split,
        )


def _regressor_booster(args: argparse.Namespace, fold: int) -> Any:
    """``ExperimentHead(regressor_booster=...)`` from the ``--reg-*`` options, or None (none given)."""
    from gapforge.models.boosting import changed_settings
    from gapforge.models.experiment import HEAD_BOOSTER

    reg = changed_settings(
        HEAD_BOOSTER,
        learning_rate=args.reg_learning_rate,
        max_iter=args.reg_max_iter,
        max_features=args.reg_max_features,
        l2_regularization=args.reg_l2,
    )
    return None if reg is None else reg.with_seed(fold)


ORDER_CHECK = ("Cu", "Fe3Al", "LiF", "NaCl", "GaAs", "Si")


def _order_check(model: Any) -> dict[str, Any]:
    """The issue's six acceptance formulas: predictions, and whether LiF > NaCl > GaAs > Si."""
    pred = model.predict(list(ORDER_CHECK)).set_index(C.FORMULA)
    gap = {f: round(float(pred.loc[f, C.BAND_GAP_MEAN]), 3) for f in ORDER_CHECK}
    return {"predictions_eV": gap, "ordered": gap["LiF"] > gap["NaCl"] > gap["GaAs"] > gap["Si"]}


def _save_test_distribution(path: Path, dist: Any, y: np.ndarray) -> None:
    """Keep a fold's test predictions (for blends and later scoring without refitting)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, y=y, p=dist.p_metal, mu=dist.mu, sigma=dist.sigma, median=dist.median())


def run_expt_roost(args: argparse.Namespace) -> None:
    """Roost fine-tuned on measured gaps from a PBE oracle's weights (metal head included)."""
    from scipy.stats import spearmanr

    from gapforge.models.registry import load_model

    pbe = load_model(args.pbe_model)
    name = f"expt-roost-ft{args.tag}"

    def fit_score(part: Fold) -> dict[str, Any]:
        fold, train, val, test = part.fold, part.train, part.val, part.test
        key = f"{name}/expt_gap/fold{fold}"
        params = {**pbe.get_params(), "epochs": args.epochs, "patience": args.patience}
        params.update(learning_rate=args.learning_rate, threads=1, seed=fold, std_scale=1.0, n_members=1)
        from gapforge.models.roost import RoostEnsemble

        model = RoostEnsemble(**params)
        t0 = time.perf_counter()
        model.fit(
            train[C.FORMULA].tolist(),
            train[C.BAND_GAP].to_numpy(),
            val_formulas=val[C.FORMULA].tolist(),
            val_band_gaps=val[C.BAND_GAP].to_numpy(),
            checkpoint_dir=Path(args.work) / key.replace("/", "_") / "checkpoints",
            init_from=pbe if args.init else None,
        )
        seconds = time.perf_counter() - t0
        vp = model.components(val[C.FORMULA].tolist())
        yv = val[C.BAND_GAP].to_numpy()
        model.std_scale = calibrate(
            yv, *(vp[c].to_numpy() for c in (C.P_METAL, C.BAND_GAP_MEAN, C.BAND_GAP_STD))
        )
        model.recalibrate(val[C.FORMULA].tolist(), yv, seed=fold)
        dist = model.predict_distribution(test[C.FORMULA].tolist())
        yt = test[C.BAND_GAP].to_numpy()
        _save_test_distribution(Path(args.work) / "expt_preds" / f"{name}_fold{fold}.npz", dist, yt)
        ok = np.isfinite(dist.mu)
        scores = distribution_scores(
            dist[ok],
            yt[ok],
            seed=fold,
        )
        med = dist.median()[ok]
        nz = yt[ok] > 0
        err = med - yt[ok]
        scores.update(
            rmse_eV=float(np.sqrt((err**2).mean())),
            r2=float(1 - (err**2).sum() / ((yt[ok] - yt[ok].mean()) ** 2).sum()),
            spearman_nonzero=float(spearmanr(med[nz], yt[ok][nz]).statistic),
            n_unreadable=int((~ok).sum()),
        )
        log.info("%s: MAE %.3f, order %s", key, scores["mae_eV"], _order_check(model))
        return {
            "model": name,
            "task": "expt_gap",
            "fold": fold,
            "n_train": len(train),
            "n_val": len(val),
            "pbe_model": str(args.pbe_model),
            "init_from_pbe": bool(args.init),
            "params": model.get_params(),
            "std_scale": model.std_scale,
            "test": scores,
            "order_check": _order_check(model),
            "members": [h.to_dict() for h in model.histories_],
            "train_seconds": round(seconds, 1),
        }

    run_folds("expt_gap", args.folds, name, fit_score)


# -- Exp1 continuity -----------------------------------------------------------------------
def run_exp1(args: argparse.Namespace) -> None:
    from gapforge.data import load_dataset, split_dataset
    from gapforge.models.registry import evaluate_on, load_model

    df = load_dataset("mp-bandgap")
    held = set(load_dataset("test-500")[C.FORMULA])
    df = df[~df[C.FORMULA].isin(held)].reset_index(drop=True)
    test = split_dataset(df, (0.8, 0.1, 0.1), 0).test
    model = load_model(args.model)
    if args.exclude_trained_on:
        mp = _task_table("mp_gap")
        tr, va, _ = _fold_parts(len(mp), args.exclude_fold)
        seen = set(mp.iloc[np.concatenate([tr, va])][C.FORMULA])
        test = test[~test[C.FORMULA].isin(seen)].reset_index(drop=True)
        if args.only_in_mp_gap:  # like for like: formulas of the mp_gap test fold only
            test = test[test[C.FORMULA].isin(set(mp[C.FORMULA]))].reset_index(drop=True)
    ev = evaluate_on(model, test)
    key = f"exp1/{args.name}"
    _save_record(
        key,
        {
            "model": args.name,
            "task": "exp1_test",
            "fold": None,
            "model_dir": str(args.model),
            "restricted_to_unseen": bool(args.exclude_trained_on),
            "restricted_to_mp_gap_test_fold": bool(args.only_in_mp_gap),
            "test": {**ev.metrics.to_dict()},
            "load_avg_end": _load_avg(),
        },
    )


def run_fold_vs_old(args: argparse.Namespace) -> None:
    """mp_gap test-fold rows (metals included) unseen by both models: a gated model vs the Exp1 oracle."""
    from gapforge.data import load_dataset, split_dataset
    from gapforge.models.registry import load_model

    mp = _task_table("mp_gap")
    _, _, te = _fold_parts(len(mp), args.fold)
    exp1 = load_dataset("mp-bandgap")
    exp1 = exp1[~exp1[C.FORMULA].isin(set(load_dataset("test-500")[C.FORMULA]))].reset_index(drop=True)
    sp = split_dataset(exp1, (0.8, 0.1, 0.1), 0)
    seen_old = set(sp.train[C.FORMULA]) | set(sp.val[C.FORMULA])
    test = mp.iloc[te]
    test = test[~test[C.FORMULA].isin(seen_old)].reset_index(drop=True)
    y = test[C.BAND_GAP].to_numpy()
    for name, model in (("oracle-exp1", args.old), (args.name, args.model)):
        pred = load_model(model).predict(test[C.FORMULA].tolist())
        pt = pred[C.BAND_GAP_MEAN].to_numpy()
        ok = np.isfinite(pt)
        err = pt[ok] - y[ok]
        metal = y[ok] <= 0
        c1, c2 = coverage(err, pred[C.BAND_GAP_STD].to_numpy()[ok])
        _save_record(
            f"fold-vs-old/{name}/fold{args.fold}",
            {
                "model": name,
                "task": "mp_gap rows unseen by both",
                "fold": args.fold,
                "model_dir": str(model),
                "test": {
                    "n": int(ok.sum()),
                    "mae_eV": float(np.abs(err).mean()),
                    "rmse_eV": float(np.sqrt((err**2).mean())),
                    "r2": float(1 - (err**2).sum() / ((y[ok] - y[ok].mean()) ** 2).sum()),
                    "metals_below_0.1": float((pt[ok][metal] < METAL_EPS).mean()),
                    "nonmetals_above_0.1": float((pt[ok][~metal] >= METAL_EPS).mean()),
                    "mae_nonmetals_eV": float(np.abs(err[~metal]).mean()),
                    "within_1sigma": c1,
                    "within_2sigma": c2,
                },
            },
        )


# -- markdown ------------------------------------------------------------------------------
def _fmt(v: Any, nd: int = 3) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def _calibration_md(recs: dict[str, Any]) -> list[str]:
    """Coverage of the recalibrated distributions (randomised PIT, closed intervals, ±kσ-equivalent)."""
    rows = []
    for key in sorted(recs):
        r = recs[key]
        cal = r.get("test_distribution") or (r["test"] if "within_1sigma_pit" in r.get("test", {}) else None)
        if cal is None:
            continue
        raw = r.get("test_raw_mixture", {})
        w = cal.get("windows", {}).get("1.00–3.00 eV", {})
        rows.append(
            "| "
            + " | ".join(
                [
                    r["model"],
                    r["task"],
                    _fmt(r.get("fold")),
                    _fmt(cal["mae_eV"]),
                    f"{_fmt(cal['within_1sigma_pit'])} / {_fmt(cal['within_2sigma_pit'])}",
                    f"{_fmt(raw.get('within_1sigma_pit'))} / {_fmt(raw.get('within_2sigma_pit'))}",
                    f"{_fmt(cal['within_1sigma'])} / {_fmt(cal['within_2sigma'])}",
                    f"{_fmt(cal['within_1sigma_nonmetals'])} / {_fmt(cal['within_2sigma_nonmetals'])}",
                    " / ".join(_fmt(cal[f"within_pm{k}_sigma_equivalent"]) for k in (1, 2)),
                    f"{_fmt(w.get('mean_p'))} / {_fmt(w.get('observed'))}",
                ]
            )
            + " |"
        )
    if not rows:
        return []
    return [
        "",
        "## Calibration of the predictive distribution (test folds)",
        "",
        "Recalibrated = isotonic CDF recalibration fitted on the fold's validation rows (Kuleshov et al. "
        "2018) on top of the std scale. `PIT` = share of rows whose randomised PIT lies in the central "
        "68.27 / 95.45 % (the atom at 0 eV shared out at random): the coverage the goal asks for; "
        "`closed` = share of rows inside the closed central intervals (a 0 eV metal is inside every "
        "interval starting at 0, so these over-cover where metals are likely); `±kσ-eq` = median ± k "
        "half-widths of the 68.27 % interval. `P(1-3 eV)` = mean predicted probability of the window "
        "against the observed share.",
        "",
        "| model | task | fold | MAE (eV) | PIT 1σ / 2σ | raw mixture PIT | closed 1σ / 2σ "
        "| closed, non-metals | ±kσ-eq | P(1-3 eV) pred / obs |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def _metal_md(recs: dict[str, Any]) -> list[str]:
    rows = []
    for key in sorted(recs):
        r = recs[key]
        if r["model"] != "hgb-metal":
            continue
        for name, c in r["classifiers"].items():
            a, b = c["at_0.5"], c["at_val_threshold"]
            rows.append(
                f"| {name} | {r['fold']} | {_fmt(c['auc_test'])} | {_fmt(a['metals_below_0.1'])} / "
                f"{_fmt(a['nonmetals_above_0.1'])} | {_fmt(a['mae_eV'])} | {_fmt(b['threshold'], 2)} | "
                f"{_fmt(b['metals_below_0.1'])} / {_fmt(b['nonmetals_above_0.1'])} | {_fmt(b['mae_eV'])} | "
                f"{_fmt(r['blend_weight_hgb'], 2) if name == 'blend' else ''} | "
                f"{r.get('hgb_iterations', '')} |"
            )
    if not rows:
        return []
    return [
        "",
        "## Metal gate: Roost's metal head, a Magpie gradient-boosting classifier, their blend (mp_gap)",
        "",
        "Rule: metal (0 eV) iff P(metal) >= threshold, else the non-metal mixture median. The blend "
        "weight (AUC on validation) and the threshold (best balanced accuracy on validation) are "
        "chosen on the fold's validation rows; the test fold is scored once.",
        "",
        "| classifier | fold | AUC test | metals<0.1 / non-metals>=0.1 at 0.5 | MAE at 0.5 | val threshold "
        "| metals / non-metals at it | MAE at it | HGB weight | HGB iterations |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def _metal_clf_md(recs: dict[str, Any]) -> list[str]:
    """``metal-clf`` records per fold, and mean ± sd over folds beside ``hgb-metal`` (the baseline)."""

    def pair(d: dict[str, Any]) -> str:
        return f"{_fmt(d['metals_below_0.1'])} / {_fmt(d['nonmetals_above_0.1'])}"

    rows, by = [], {}
    for key in sorted(recs):
        r = recs[key]
        if not (r["model"].startswith("metal-clf") or r["model"] == "hgb-metal"):
            continue
        for which in ("classifier", "blend") if r["model"] != "hgb-metal" else ("hgb", "blend"):
            c = r["classifiers"][which]
            name = f"{r['model']} {'classifier' if which == 'hgb' else which}"
            vals = {
                "auc": c["auc_test"],
                **{f"{k} {s}": c[k][f"{s}_below_0.1" if s == "metals" else f"{s}_above_0.1"]
                   for k in ("at_0.5", "at_val_threshold") for s in ("metals", "nonmetals")},
            }  # fmt: skip
            for k, label in (("at_val_goal_threshold", "goal"), ("hard_at_val_goal_threshold", "hard goal")):
                if k in c:
                    vals[f"{label} metals"] = c[k]["metals_below_0.1"]
                    vals[f"{label} nonmetals"] = c[k]["nonmetals_above_0.1"]
            by.setdefault(name, []).append(vals)
            if r["model"] == "hgb-metal":
                continue
            split, hard = c["by_formula_at_val_threshold"], c["hard_at_val_goal_threshold"]
            rows.append(
                f"| {name} | {r['fold']} | {_fmt(c['auc_test'])} | {pair(c['at_0.5'])} | "
                f"{_fmt(c['at_val_threshold']['threshold'], 2)} | {pair(c['at_val_threshold'])} | "
                f"{_fmt(c['at_val_goal_threshold']['threshold'], 2)} | {pair(c['at_val_goal_threshold'])} | "
                f"{_fmt(hard['threshold'], 2)} | {pair(hard)} | "
                f"{_fmt(split['seen_formula']['auc'])} / {_fmt(split['unseen_formula']['auc'])} | "
                f"{pair(split['seen_formula'])} | {pair(split['unseen_formula'])} | "
                f"{r.get('hgb_iterations', '')} | {_fmt(r.get('train_seconds'))} | "
                f"{r.get('load_avg_start', '')}→{r.get('load_avg_end', '')} |"
            )
    if not rows:
        return []

    def ms(v: list[float]) -> str:
        return f"{np.mean(v):.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.3f}"

    cols = ("auc", "at_0.5 metals", "at_0.5 nonmetals", "at_val_threshold metals",
            "at_val_threshold nonmetals", "goal metals", "goal nonmetals", "hard goal metals",
            "hard goal nonmetals")  # fmt: skip
    summary = [
        f"| {name} | {len(v)} | "
        + " | ".join(ms([x[c] for x in v]) if all(c in x for x in v) else "" for c in cols)
        + " |"
        for name, v in sorted(by.items())
    ]
    return [
        "",
        "## Metal classifier variants (`metal-clf`; mp_gap, through `hgb-metal`'s gate)",
        "",
        "Same rule as the table above (metal iff P(metal) >= threshold, else the Roost fold model's "
        "non-metal median); `blend` = the classifier blended with Roost's metal head (weight by validation "
        "AUC). Thresholds from the fold's validation rows: `val thr.` the best balanced accuracy, "
        "`goal thr.` the lowest keeping 95 % of the validation non-metals >= 0.1 eV. `seen` = test rows "
        "whose formula has training rows (another polymorph), `unseen` the others; their shares "
        "at `val thr.`.",
        "",
        "`hard goal thr.`: the same search for the hard gate (0 eV iff P(metal) >= threshold, else the "
        "non-metal regressor's gap itself, not the mixture median, which sinks below 0.1 eV as P(metal) "
        "nears 0.5).",
        "",
        "| model | fold | AUC | metals / non-metals at 0.5 | val thr. | at it | goal thr. | at it "
        "| hard goal thr. | at it | AUC seen / unseen | seen at val thr. | unseen at val thr. | iterations "
        "| fit s | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Mean ± sd over the folds (test): AUC, then metals < 0.1 / non-metals >= 0.1 at 0.5, at the "
        "balanced validation threshold, at the goal threshold (`hgb-metal`: the baseline, 300 iterations, "
        "Magpie only).",
        "",
        "| model | folds | AUC | metals at 0.5 | non-metals at 0.5 | metals at val thr. | non-metals at val "
        "thr. | metals at goal thr. | non-metals at goal thr. | hard gate: metals | non-metals |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *summary,
    ]


def _gap_blend_md(recs: dict[str, Any]) -> list[str]:
    rows = []
    for key in sorted(recs):
        r = recs[key]
        if not r["model"].startswith("roost+hgb-gap-blend"):
            continue
        tag = r["model"].removeprefix("roost+hgb-gap-blend")
        stack = recs.get(f"roost+hgb-gap-stack{tag}/mp_gap/fold{r['fold']}", {}).get("variant")
        alone = recs.get(f"hgb-gap-alone{tag}/mp_gap/fold{r['fold']}", {}).get("variant")
        v = {"roost": r["roost_alone_same_gate"], "hgb": alone, "blend": r["variant"], "stack": stack}
        names = ("roost", "hgb", "blend", "stack")

        def cells(f: Any, v: dict[str, Any] = v, names: tuple[str, ...] = names) -> str:
            return " / ".join(_fmt(f(v[n])) if v[n] else "" for n in names)

        b = r["variant"]
        at, dist = b["at_val_threshold"], b["test_distribution"]
        parts = [
            str(r["fold"]),
            _fmt(r["gap_blend_weight_hgb"], 2),
            str(r["hgb_reg_iterations"]),
            cells(lambda x: x["nonmetal_mu_mae_test"]),
            cells(lambda x: x["at_val_threshold"]["mae_eV"]),
            cells(lambda x: x["at_val_threshold"]["rmse_eV"]),
            f"{_fmt(at['metals_below_0.1'])} / {_fmt(at['nonmetals_above_0.1'])}",
            cells(lambda x: x["test_distribution"]["mae_eV"]),
            f"{_fmt(dist['within_1sigma_pit'])} / {_fmt(dist['within_2sigma_pit'])}",
            _fmt(r["train_seconds"]),
            f"{r['load_avg_start']}→{r['load_avg_end']}",
        ]
        rows.append(f"| {tag or '-'} " + "| " + " | ".join(parts) + " |")
    if not rows:
        return []
    return [
        "",
        "## Non-metal gap: Roost's gap head, a Magpie gradient-boosting regressor, their blend (mp_gap)",
        "",
        "Four non-metal gaps through the same gate (`hgb-metal`'s blended P(metal), its validation "
        "threshold, the Roost fold model's std scale): Roost alone (= the `hgb-metal` row), the HGB "
        "regressor alone, the blend (weight = HGB share, chosen by the validation non-metals' MAE), "
        "a stacker (small booster on Roost mu, HGB mu, Roost std, P(metal), fitted on the validation "
        "non-metals, cross-fitted there). `recal. median` = MAE of the median of the distribution "
        "with std scale and CDF recalibration refitted on validation (PIT coverage of the blend).",
        "",
        "| tag | fold | HGB weight | HGB iterations | non-metal MAE (roost / hgb / blend / stack) "
        "| gated MAE at val threshold | RMSE | blend metals<0.1 / non-metals>=0.1 | recal. median MAE "
        "| blend PIT 1σ / 2σ | fit s | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def _order_md(recs: dict[str, Any]) -> list[str]:
    rows = []
    for key in sorted(recs):
        r = recs[key]
        if "order_check" not in r:
            continue
        g = r["order_check"]["predictions_eV"]
        rows.append(
            f"| {r['model']} | {r.get('fold')} | "
            + " | ".join(_fmt(g[f], 2) for f in ORDER_CHECK)
            + f" | {r['order_check']['ordered']} |"
        )
    if not rows:
        return []
    return [
        "",
        "## The acceptance formulas at experiment fidelity (each fold's model)",
        "",
        "| model | fold | " + " | ".join(ORDER_CHECK) + " | LiF > NaCl > GaAs > Si |",
        "|---|---|" + "---|" * len(ORDER_CHECK) + "---|",
        *rows,
    ]


def write_md() -> None:
    data = _load()
    recs = data["records"]
    lines = [
        "# matbench_mp_gap / matbench_expt_gap / Exp1: the oracle's benchmarks",
        "",
        "Protocol: matbench v0.1 folds, `KFold(n_splits=5, shuffle=True, random_state=18012019)` over the "
        "rows in file order, composition only; 5 % of each fold's training part (seeded) for early "
        "stopping and the std scale. Metals count as 0 eV; `metals < 0.1` = share of the fold's metals "
        "predicted below 0.1 eV, `non-metals >= 0.1` the share of its non-metals at or above. Coverage "
        "= share of test errors within ±1σ / ±2σ after the std scale fitted on validation (targets 68.3 / "
        "95.4 %). Times are wall-clock on 2 cores shared with 4 other jobs (load average at start/end).",
        "",
        "| model | task | fold | n train | MAE (eV) | RMSE | R² | MAE mixture mean | metals < 0.1 | "
        "non-metals >= 0.1 | metal AUC | within 1σ | within 2σ | std scale | train s | s/epoch | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in sorted(recs):
        r = recs[key]
        t = r["test"]
        lines.append(
            "| "
            + " | ".join(
                [
                    r["model"],
                    r["task"],
                    _fmt(r.get("fold")),
                    _fmt(r.get("n_train")),
                    _fmt(t.get("mae_eV")),
                    _fmt(t.get("rmse_eV")),
                    _fmt(t.get("r2")),
                    _fmt(t.get("mae_mixture_mean_eV")),
                    _fmt(t.get("metals_below_0.1")),
                    _fmt(t.get("nonmetals_above_0.1")),
                    _fmt(t.get("metal_auc")),
                    _fmt(t.get("within_1sigma")),
                    _fmt(t.get("within_2sigma")),
                    _fmt(r.get("std_scale"), 2),
                    _fmt(r.get("train_seconds")),
                    _fmt(r.get("seconds_per_epoch")),
                    f"{r.get('load_avg_start', '')}→{r.get('load_avg_end', '')}",
                ]
            )
            + " |"
        )
    by: dict[tuple[str, str], list[float]] = {}
    for r in recs.values():
        if r.get("fold") is not None:
            by.setdefault((r["model"], r["task"]), []).append(r["test"]["mae_eV"])
    lines += [
        "",
        "## Mean over the folds that ran",
        "",
        "| model | task | folds | MAE (eV) mean ± sd |",
        "|---|---|---|---|",
    ]
    for (m, t), v in sorted(by.items()):
        lines.append(
            f"| {m} | {t} | {len(v)} | {np.mean(v):.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.3f} |"
        )
    lines += (
        _calibration_md(recs) + _metal_md(recs) + _metal_clf_md(recs) + _gap_blend_md(recs) + _order_md(recs)
    )
    lines += _ceiling_md(data) + _twins_md(data)
    lines += ["", "Commands:", ""] + [f"    {c}" for c in data.get("commands", [])]
    notes = RESULTS / "bench_matbench_notes.md"
    if notes.is_file():
        lines += ["", notes.read_text().rstrip()]
    MD.write_text("\n".join(lines) + "\n")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("roost")
    r.add_argument("--task", default="mp_gap", choices=["mp_gap", "expt_gap"])
    r.add_argument("--folds", type=int, nargs="+", default=[0])
    r.add_argument("--epochs", type=int, default=20)
    r.add_argument("--patience", type=int, default=6)
    r.add_argument("--members", type=int, default=1)
    r.add_argument("--widths", default="compact")
    r.add_argument("--max-train", type=int, default=0)
    r.add_argument("--extra", nargs="*", default=[])
    r.add_argument("--tag", default="")
    r.add_argument("--pretrain-epochs", type=int, default=0, help="pre-train on task + --extra rows first")
    r.add_argument("--learning-rate", type=float, default=1e-3)
    r.add_argument("--work", default=str(WORK), help="scratch: checkpoints, fold models")
    h = sub.add_parser("hgb")
    h.add_argument("--task", default="mp_gap", choices=["mp_gap", "expt_gap"])
    h.add_argument("--folds", type=int, nargs="+", default=[0])
    h.add_argument("--extra", nargs="*", default=[])
    sr = sub.add_parser("ship-recal")
    sr.add_argument("model_dir")
    sr.add_argument("--kind", choices=["oracle", "experiment"], default="oracle")
    am = sub.add_parser("attach-metal-clf")
    am.add_argument("model_dir")
    am.add_argument("--out", required=True)
    am.add_argument("--max-iter", type=int, default=500)
    am.add_argument("--overwrite", action="store_true", help="refit when the fold is recorded already")
    am.add_argument("--features", default="magpie", choices=["magpie", "magpie+fractions+smact"])
    am.add_argument("--tag", default="", help="suffix of the record's model name")
    ag = sub.add_parser("attach-gap-reg", help="attach a Magpie gap regressor to a saved fold model")
    ag.add_argument("model_dir")
    ag.add_argument("--out", required=True)
    ag.add_argument("--max-iter", type=int, default=1000)
    ag.add_argument("--overwrite", action="store_true")
    ag.add_argument("--tag", default="", help="suffix of the record's model name")
    hm = sub.add_parser("hgb-metal")
    hm.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    hm.add_argument("--max-iter", type=int, default=300)
    hm.add_argument("--work", default=str(WORK / "components"))
    mc = sub.add_parser("metal-clf", help="the Magpie metal classifier with other features / settings")
    mc.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    mc.add_argument("--features", default="magpie", choices=["magpie", "magpie+fractions+smact"])
    mc.add_argument("--max-iter", type=int, default=1500, help="boosting iterations (cap; early stopping)")
    mc.add_argument("--learning-rate", type=float, default=0.1)
    mc.add_argument("--max-leaf-nodes", type=int, default=63)
    mc.add_argument("--components", default=str(WORK / "components"), help="cached Roost fold components")
    mc.add_argument("--work", default=str(WORK / "metal-clf"), help="cached P(metal) per fold")
    mc.add_argument("--tag", default="", help="suffix of the records' model name")
    gb = sub.add_parser("hgb-gap-blend", help="Roost's non-metal gap blended with a Magpie HGB regressor's")
    gb.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    gb.add_argument("--max-iter", type=int, default=1000, help="regressor boosting iterations (cap)")
    gb.add_argument("--clf-max-iter", type=int, default=300, help="metal classifier iterations (hgb-metal's)")
    gb.add_argument("--components", default=str(WORK / "components"), help="cached Roost fold components")
    gb.add_argument("--work", default=str(WORK / "hgb-gap"), help="cached HGB outputs per fold")
    gb.add_argument("--tag", default="", help="suffix of the records' model names and of the caches")
    e = sub.add_parser("expt")
    e.add_argument("--pbe-model", required=True)
    e.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    e.add_argument("--variants", nargs="+", default=["magpie", "magpie+pbe"])
    e.add_argument("--tag", default="")
    e.add_argument("--work", default=str(WORK), help="scratch: the folds' test distributions")
    e.add_argument(
        "--recal-folds", type=int, default=0, help="cross-fit the recalibration (0: validation rows)"
    )
    e.add_argument("--host-fraction", type=float, default=0.0, help="ExperimentHead(host_fraction=...)")
    e.add_argument("--host-magpie", action="store_true", help="ExperimentHead(host_magpie=True)")
    e.add_argument("--target", choices=["gap", "log1p"], default="gap", help="ExperimentHead(target=...)")
    e.add_argument(
        "--reg-learning-rate", type=float, help="gap regressor learning rate (default: the head booster)"
    )
    e.add_argument("--reg-max-iter", type=int, help="the gap regressor's iterations (default the head's)")
    e.add_argument(
        "--reg-max-features", type=float, help="the gap regressor's feature share per split (default all)"
    )
    e.add_argument("--reg-l2", type=float, help="the gap regressor's L2 regularisation (default 0)")
    e.add_argument(
        "--n-bags", type=int, default=1, help="ExperimentHead(n_bags=...): gap regressors averaged"
    )
    e.add_argument(
        "--bag-fraction", type=float, default=0.8, help="ExperimentHead(bag_fraction=...); 1: all rows"
    )
    e.add_argument(
        "--split", choices=["matbench", "cluster"], default="matbench", help="cluster: leave-chemistry-out"
    )
    er = sub.add_parser("expt-roost")
    er.add_argument("--pbe-model", required=True)
    er.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    er.add_argument("--epochs", type=int, default=40)
    er.add_argument("--patience", type=int, default=10)
    er.add_argument("--learning-rate", type=float, default=5e-4)
    er.add_argument("--no-init", dest="init", action="store_false", help="train from scratch (the control)")
    er.add_argument("--tag", default="")
    er.add_argument("--work", default=str(WORK))
    x = sub.add_parser("exp1")
    x.add_argument("--model", required=True)
    x.add_argument("--name", required=True)
    x.add_argument("--exclude-trained-on", action="store_true")
    x.add_argument("--exclude-fold", type=int, default=0)
    x.add_argument("--only-in-mp-gap", action="store_true")
    v = sub.add_parser("fold-vs-old")
    v.add_argument("--model", required=True)
    v.add_argument("--name", required=True)
    v.add_argument("--old", default="default")
    v.add_argument("--fold", type=int, default=0)
    c = sub.add_parser("calib")
    c.add_argument("--model", default="roost-gated")
    c.add_argument("--task", default="mp_gap", choices=["mp_gap", "expt_gap"])
    c.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    c.add_argument("--work", default=str(WORK / "components"))
    sub.add_parser("metal-ceiling")
    doa = sub.add_parser("expt-doa")
    doa.add_argument("--pbe-model", required=True)
    tw = sub.add_parser("expt-twins")
    tw.add_argument("--preds", nargs="+", required=True, help="NAME=path with {fold}")
    sub.add_parser("md")
    args = ap.parse_args()
    {
        "roost": run_roost,
        "hgb": run_hgb,
        "expt": run_expt,
        "exp1": run_exp1,
        "fold-vs-old": run_fold_vs_old,
        "calib": run_calib,
        "attach-metal-clf": run_attach_metal_clf,
        "attach-gap-reg": run_attach_gap_reg,
        "ship-recal": run_ship_recal,
        "hgb-metal": run_hgb_metal,
        "metal-clf": run_metal_clf,
        "hgb-gap-blend": run_hgb_gap_blend,
        "expt-roost": run_expt_roost,
        "metal-ceiling": run_metal_ceiling,
        "expt-twins": run_expt_twins,
        "expt-doa": run_expt_doa,
        "md": lambda a: write_md(),
    }[args.cmd](args)


if __name__ == "__main__":
    main()

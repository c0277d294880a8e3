"""The stages of ``gapforge discover`` and :func:`discover`, which runs them.

Each stage is a function ``(run_dir, config) -> summary`` calling the public
function of its module and writing the tables listed in
:mod:`gapforge.discover.layout`:

==================  ========================================================================
stage               does
==================  ========================================================================
data                loads the labelled set; draws the initial labelled set and a hold-out
oracle              loads the band-gap oracle (shipped Roost ensemble or ``models.oracle``)
autoencoder         loads the composition autoencoder that defines the latent space
campaign            GP + UCB in latent space; decodes proposals, labels them with the oracle
screening_model     the oracle (default) or a model fitted on initial + campaign labels; hold-out parity
generate            draws formulas from the generator (autoregressive RNN or GAN)
screen              predicts and filters (elements, window, simplicity, SMACT, novelty), ranks by P(in window)
structure           nearest known template by ElMD, element substitution, CIFs
relax               CHGNet relaxation, formation energy, energy above hull
stability           joins everything into the ranked ``stability/discoveries.csv``
dft                 optional PBE band gaps with GPAW (skipped when GPAW is missing)
report              ``report.html``
==================  ========================================================================

Models are loaded once per process and shared between stages.

Example:
    >>> from gapforge.discover import discover, resolve_config
    >>> result = discover("runs/wide", resolve_config(gap_min=6.0, quick=True))  # doctest: +SKIP
    >>> [(r.name, r.status, r.seconds) for r in result.stages]  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gapforge import columns as C
from gapforge.discover import layout as L
from gapforge.discover.config import DiscoverConfig
from gapforge.discover.engine import (
    PIPELINE_FILE,
    PipelineResult,
    Stage,
    StageSkipped,
    run_pipeline,
    stage_dir,
)
from gapforge.errors import GapforgeError, InputError
from gapforge.executor.settings import ExecutorSettings
from gapforge.io import read_table, write_json, write_table

log = logging.getLogger(__name__)


class StageUnavailableError(GapforgeError):
    """A stage whose module is not part of this build."""


def _unavailable(stage: str, exc: BaseException) -> StageUnavailableError:
    return StageUnavailableError(f"stage {stage} not available in this build ({type(exc).__name__}: {exc})")


# ---------------------------------------------------------------------------------------------
# shared, cached loaders
# ---------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _oracle(model: str, fidelity: str = "pbe") -> Any:
    from gapforge.models.registry import load_predictor

    return load_predictor(model, kind="oracle", fidelity=fidelity)


@functools.lru_cache(maxsize=4)
def _autoencoder(model: str) -> Any:
    try:
        from gapforge.models.autoencoder import CompositionAutoencoder
    except ImportError as exc:  # pragma: no cover - depends on the build
        raise _unavailable("autoencoder", exc) from exc
    return CompositionAutoencoder.load(model)


@functools.lru_cache(maxsize=2)
def _dataset(name: str) -> pd.DataFrame:
    from gapforge.data import load_dataset

    return load_dataset(name)


def _model_card(directory: Path) -> dict[str, Any]:
    import json

    from gapforge.models.base import MODEL_CARD_FILE

    try:
        return json.loads((directory / MODEL_CARD_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _relabel(oracle: Any, table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with its band gaps replaced by ``oracle``'s predictions (rows it cannot predict dropped)."""
    pred = oracle.predict(table[C.FORMULA].tolist())[C.BAND_GAP_MEAN].to_numpy()
    keep = np.isfinite(pred)
    return table.assign(**{C.BAND_GAP: pred})[keep].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# stages
# ---------------------------------------------------------------------------------------------
def stage_data(run_dir: Path, cfg: DiscoverConfig) -> dict[str, Any]:
    """Draw the hold-out and the initial labelled set from the labelled dataset.

    Writes ``data/holdout.csv`` and ``data/initial.csv`` (``formula``, ``band_gap``, ``source``).
    """
    from gapforge.data import fingerprint, load_dataset

    out = stage_dir(run_dir, "data")
    df = _dataset(cfg.data.dataset)[[C.FORMULA, C.BAND_GAP]].copy()
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(df))
    n_hold = min(cfg.data.n_holdout, max(len(df) - 2, 0))
    holdout = df.iloc[order[:n_hold]].reset_index(drop=True)
    rest = df.iloc[order[n_hold:]].reset_index(drop=True)
    if cfg.data.initial is not None:
        initial = load_dataset(cfg.data.initial)[[C.FORMULA, C.BAND_GAP]]
        initial = initial[~initial[C.FORMULA].isin(set(holdout[C.FORMULA]))].reset_index(drop=True)
        source = str(cfg.data.initial)
    else:
        initial = rest.iloc[: cfg.data.n_initial].reset_index(drop=True)
        source = f"{cfg.data.dataset} (random {cfg.data.n_initial})"
    if len(initial) < 2:
        raise InputError("the initial labelled set needs at least 2 formulas", value=len(initial))
    if cfg.models.fidelity != "pbe":  # the dataset's labels are PBE gaps: relabel with the oracle's head
        oracle = _oracle(cfg.models.oracle, cfg.models.fidelity)
        initial, holdout = (_relabel(oracle, t) for t in (initial, holdout))
        source += f" (labels: the oracle's {cfg.models.fidelity} predictions)"
    initial = initial.assign(source="initial", iteration=0)
    write_table(holdout, out / "holdout.csv")
    write_table(initial, out / "initial.csv")
    return {
        "dataset": cfg.data.dataset,
        "n_dataset": len(df),
        "n_initial": len(initial),
        "n_holdout": len(holdout),
        "initial_source": source,
        "fingerprint": fingerprint(df),
    }


def stage_oracle(run_dir: Path, cfg: DiscoverConfig) -> dict[str, Any]:
    """Load the oracle once (fails early on a missing model) and record which one it is."""
    from gapforge.models.registry import model_dir

    directory = model_dir(cfg.models.oracle, "oracle")
    model = _oracle(cfg.models.oracle, cfg.models.fidelity)
    card = _model_card(directory)
    metrics = (card.get("metadata") or {}).get("metrics") or {}
    write_json(
        {
            "model": str(directory),
            "kind": getattr(model, "kind", card.get("kind")),
            "fidelity": cfg.models.fidelity,
            "params": card.get("params"),
            "metrics": metrics,
        },
        stage_dir(run_dir, "oracle") / "oracle.json",
    )
    test = metrics.get("test") or {}
    return {"model": str(directory), "kind": getattr(model, "kind", None), "test_mae": test.get("mae")}


def stage_autoencoder(run_dir: Path, cfg: DiscoverConfig) -> dict[str, Any]:
    """Load the autoencoder and measure how many initial formulas it reconstructs exactly."""
    ae = _autoencoder(cfg.models.autoencoder)
    initial = read_table(run_dir / L.INITIAL)
    formulas = initial[C.FORMULA].astype(str).tolist()
    enc = ae.encode_batch(formulas)
    encodable = [f for f, ok in zip(formulas, enc.valid, strict=True) if ok]
    rec = ae.reconstruct(encodable) if encodable else []
    exact = float(np.mean([r == f for r, f in zip(rec, encodable, strict=True)])) if encodable else math.nan
    info = {
        "model": str(cfg.models.autoencoder),
        "latent_dim": int(ae.latent_dim),
        "arch": getattr(ae, "arch", None),
        "n_initial": len(formulas),
        "n_encodable": len(encodable),
        "initial_reconstruction_rate": exact,
    }
    if len(encodable) < 2:
        raise InputError(
            "fewer than 2 formulas of the initial set can be encoded by the autoencoder",
            path=run_dir / L.INITIAL,
            value=len(encodable),
        )
    write_json(info, stage_dir(run_dir, "autoencoder") / "autoencoder.json")
    return info


def stage_campaign(run_dir: Path, cfg: DiscoverConfig) -> dict[str, Any]:
    """The active-learning campaign of :mod:`gapforge.active` in ``RUN/campaign`` (resumable).

    GP surrogate on the latent codes of the labelled set, UCB (``kappa``) with
    ``batch_size`` slots per iteration, decode, label the valid new formulas
    with the oracle. The campaign saves its own state after every iteration,
    so a restarted stage continues after the last completed iteration. Then
    writes ``campaign/iterations.csv``, ``campaign/labelled.csv`` and
    ``campaign/latent_map.csv`` for the later stages and the report.
    """
    try:
        from gapforge.active import Campaign, ModelOracle, parse_config
        from gapforge.active.state import STATE_FILE
    except ImportError as exc:  # pragma: no cover - depends on the build
        raise _unavailable("campaign", exc) from exc

    from gapforge.active.config import GoalConfig

    out = stage_dir(run_dir, "campaign")
    config = parse_config(
        {
            "name": "discover",
            "seed": cfg.seed,
            "iterations": max(cfg.campaign.iterations, 1),
            "validity": cfg.campaign.validity,
            "compounds": cfg.campaign.compounds,
            "exclude_elements": list(cfg.exclude_elements),
            "goal": GoalConfig.from_window(cfg.window).model_dump(mode="json"),
            "acquisition": {
                "kind": "ucb",
                "kappa": cfg.campaign.kappa,
                "q": cfg.campaign.batch_size,
                "num_restarts": cfg.campaign.num_restarts,
            },
            "codec": {"kind": "autoencoder", "model": cfg.models.autoencoder},
            "oracle": {"kind": "model", "model": cfg.models.oracle, "model_kind": "oracle"},
            "initial": {"dataset": str((run_dir / L.INITIAL).resolve())},
        }
    )
    oracle = ModelOracle(_oracle(cfg.models.oracle, cfg.models.fidelity), name="oracle")
    if cfg.campaign.iterations == 0:
        result = None
    elif (out / STATE_FILE).is_file():
        camp = Campaign.open(out, oracle=oracle)
        log.info("campaign: resuming after iteration %d", camp.state.iteration)
        result = camp.run(cfg.campaign.iterations - camp.state.iteration)
    else:
        initial = read_table(run_dir / L.INITIAL)[[C.FORMULA, C.BAND_GAP]]
        camp = Campaign.create(config, out, overwrite=True, oracle=oracle, initial=initial)
        result = camp.run()
    ae = _autoencoder(cfg.models.autoencoder)
    if result is None:  # no campaign: the labelled set is the initial one
        labelled = read_table(run_dir / L.INITIAL)
        proposals = pd.DataFrame(columns=["iteration", C.FORMULA, "status", C.BAND_GAP, "z"])
        iterations = pd.DataFrame(columns=["iteration", "n_proposed", "n_valid", "valid_rate", "best_so_far"])
    else:
        # every initial formula (also those the autoencoder cannot encode) + the campaign's labels
        new = result.labelled[result.labelled["source"] != "initial"]
        labelled = pd.concat(
            [
                read_table(run_dir / L.INITIAL),
                new.assign(source="campaign")[[C.FORMULA, C.BAND_GAP, "iteration"]],
            ],
            ignore_index=True,
        )
        labelled["source"] = labelled["source"].fillna("campaign")
        proposals = result.proposals
        iterations = _iteration_table(result.iterations, proposals)
    write_table(labelled[[C.FORMULA, C.BAND_GAP, "source", "iteration"]], run_dir / L.CAMPAIGN_LABELLED)
    write_table(iterations, run_dir / L.CAMPAIGN_ITERATIONS)
    _write_latent_map(run_dir, cfg, ae, labelled, proposals)
    n_prop = int(iterations["n_proposed"].sum()) if len(iterations) else 0
    n_val = int(iterations["n_valid"].sum()) if len(iterations) else 0
    n_lab = int(iterations["n_new"].sum()) if len(iterations) else 0
    return {
        "iterations": len(iterations),
        "n_proposed": n_prop,
        "n_valid": n_val,
        "valid_rate": round(n_val / n_prop, 4) if n_prop else None,
        "labelled_rate": round(n_lab / n_prop, 4) if n_prop else None,
        "n_labelled": len(labelled),
        "n_new": int((labelled["source"] == "campaign").sum()),
        "best_gap": float(iterations["best_so_far"].iloc[-1]) if len(iterations) else None,
        "best_formula": str(iterations["best_formula"].iloc[-1]) if len(iterations) else None,
    }


def _iteration_table(records: pd.DataFrame, proposals: pd.DataFrame) -> pd.DataFrame:
    """The campaign's iteration log in the report's shape (see :mod:`gapforge.discover.layout`)."""
    it = records.copy()
    n = it["n_proposed"].to_numpy(dtype=float)
    labelled = proposals[proposals["status"] == "labelled"]
    best_of = labelled.groupby("iteration")[C.BAND_GAP].max() if len(labelled) else pd.Series(dtype=float)
    return pd.DataFrame(
        {
            "iteration": it["iteration"].astype(int),
            "n_proposed": it["n_proposed"].astype(int),
            "n_valid": it["n_valid"].astype(int),
            "valid_rate": it["n_valid"].to_numpy(dtype=float) / np.maximum(n, 1),
            "valid_first_rate": it["n_valid_first"].to_numpy(dtype=float) / np.maximum(n, 1),
            "n_duplicate": it["n_duplicate"].astype(int),
            "n_new": it["n_labelled"].astype(int),
            "best_gap": it["iteration"].map(best_of).astype(float),
            "best_so_far": it["best_gap"].astype(float),
            "best_formula": it["best_formula"].astype(str),
            "n_hits": it["n_hits"].astype(int),
            "n_new_cumulative": it["n_labelled"].cumsum().astype(int),
            "fit_seconds": it["fit_seconds"].round(2),
            "acquisition_seconds": it["acquisition_seconds"].round(2),
        }
    )


def _write_latent_map(
    run_dir: Path, cfg: DiscoverConfig, ae: Any, labelled: pd.DataFrame, proposals: pd.DataFrame
) -> None:
    """2-D PCA map of the initial set (plus a context pool) with the valid proposals on it."""
    from sklearn.decomposition import PCA

    initial = labelled[labelled["source"] == "initial"]
    pool = _dataset(cfg.data.dataset)
    rng = np.random.default_rng(cfg.seed + 7)
    n_pool = min(cfg.campaign.n_pool, len(pool))
    context = pool.iloc[rng.choice(len(pool), n_pool, replace=False)] if n_pool else pool.iloc[:0]
    base = pd.concat([initial[[C.FORMULA, C.BAND_GAP]], context[[C.FORMULA, C.BAND_GAP]]], ignore_index=True)
    base = base.drop_duplicates(C.FORMULA).reset_index(drop=True)
    z_base = np.asarray(ae.encode(base[C.FORMULA].astype(str).tolist(), errors="nan"), dtype=np.float64)
    ok = np.isfinite(z_base).all(axis=1)
    base, z_base = base[ok].reset_index(drop=True), z_base[ok]
    pca = PCA(n_components=2, random_state=cfg.seed).fit(z_base)
    xy = pca.transform(z_base)
    parts = [base.assign(x=xy[:, 0], y=xy[:, 1], kind="labelled", iteration=0)]
    valid = proposals[proposals["status"].astype(str) != "invalid"] if len(proposals) else proposals
    if len(valid):
        pxy = pca.transform(np.stack([np.asarray(z, dtype=np.float64) for z in valid["z"]]))
        parts.append(
            pd.DataFrame(
                {
                    C.FORMULA: valid[C.FORMULA].astype(str).to_numpy(),
                    C.BAND_GAP: pd.to_numeric(valid[C.BAND_GAP], errors="coerce").to_numpy(),
                    "x": pxy[:, 0],
                    "y": pxy[:, 1],
                    "kind": "proposal",
                    "iteration": valid["iteration"].astype(int).to_numpy(),
                }
            )
        )
    write_table(pd.concat(parts, ignore_index=True), run_dir / L.LATENT_MAP)


def _screening_model(run_dir: Path, cfg: DiscoverConfig) -> Any:
    """The model the screen uses: the oracle (``screening_model.kind = "oracle"``) or the trained one."""
    if cfg.screening_model.kind == "oracle":
        return _oracle(cfg.models.oracle, cfg.models.fidelity)
    from gapforge.models.registry import load_model

    return load_model(run_dir / L.SCREENING_MODEL_DIR)


def stage_screening_model(run_dir: Path, cfg: DiscoverConfig) -> dict[str, Any]:
    """Fit the screening model on the initial + campaign labels (or take the oracle); score on the hold-out.

    With ``screening_model.kind = "oracle"`` nothing is trained; the hold-out
    parity is then the oracle's, and the hold-out was part of the shipped
    oracle's training data when ``data.dataset`` is its training set
    (``metrics.json`` says so in ``note``).
    """
    from gapforge.models.metrics import regression_metrics
    from gapforge.models.registry import make_model

    out = stage_dir(run_dir, "screening_model")
    path = run_dir / L.CAMPAIGN_LABELLED
    labelled = read_table(path if path.is_file() else run_dir / L.INITIAL)
    metrics: dict[str, Any] = {}
    if cfg.screening_model.kind == "oracle":
        model = _oracle(cfg.models.oracle, cfg.models.fidelity)
        metrics["n_train"] = None
        metrics["note"] = (
            f"the oracle ({cfg.models.oracle}) screens; the hold-out rows may be in its training data, "
            "so this parity is not an independent score (the oracle's model card has one)"
        )
    else:
        params: dict[str, Any] = {}
        if cfg.screening_model.kind == "forest":
            params["n_estimators"] = cfg.screening_model.n_estimators
        model = make_model(cfg.screening_model.kind, cfg.seed, **params)
        model.fit(labelled[C.FORMULA].astype(str).tolist(), labelled[C.BAND_GAP].to_numpy(dtype=float))
        metrics["n_train"] = len(labelled)
    holdout = read_table(run_dir / L.HOLDOUT)
    if len(holdout):
        pred = model.predict(holdout[C.FORMULA].astype(str).tolist())
        parity = pd.DataFrame(
            {
                C.FORMULA: holdout[C.FORMULA].to_numpy(),
                C.BAND_GAP: holdout[C.BAND_GAP].to_numpy(dtype=float),
                C.BAND_GAP_MEAN: pred[C.BAND_GAP_MEAN].to_numpy(),
                C.BAND_GAP_STD: pred[C.BAND_GAP_STD].to_numpy(),
            }
        )
        write_table(parity, out / "parity.csv")
        m = regression_metrics(parity[C.BAND_GAP], parity[C.BAND_GAP_MEAN], parity[C.BAND_GAP_STD])
        metrics.update(
            {k: v for k, v in m.to_dict().items() if isinstance(v, int | float | str) or v is None}
        )
    if cfg.screening_model.kind != "oracle":
        model.save(
            out / "model", metadata={"seed": cfg.seed, "trained_on": str(path.name), "metrics": metrics}
        )
    write_json(metrics, out / "metrics.json")
    return {
        "kind": cfg.screening_model.kind,
        **{k: metrics.get(k) for k in ("n_train", "r2", "mae_eV", "rmse_eV")},
    }


def stage_generate(run_dir: Path, cfg: DiscoverConfig) -> dict[str, Any]:
    """Draw ``generate.n_samples`` formulas from the generator; keep the distinct ones."""
    try:
        from gapforge.screening.generate import load_generator
    except ImportError as exc:  # pragma: no cover - depends on the build
        raise _unavailable("generate", exc) from exc
    stage_dir(run_dir, "generate")
    gan = load_generator(cfg.models.generator)
    from gapforge.screening.rules import excluded_mask

    result = gan.generate(cfg.generate.n_samples, seed=cfg.seed, batch_size=cfg.generate.batch_size)
    table = result.table
    bad = excluded_mask(table[C.FORMULA].astype(str).tolist(), cfg.exclude_elements)
    write_table(table[~bad].reset_index(drop=True), run_dir / L.GENERATED)
    stats = {
        "model": str(cfg.models.generator),
        "kind": gan.kind,
        "decode_rule": gan.decode_rule,
        "temperature": gan.temperature,
        **result.stats.to_dict(),
        "n_excluded_elements": int(bad.sum()),
        "n_kept": int((~bad).sum()),
    }
    write_json(stats, run_dir / L.GENERATOR_STATS)
    return {k: stats[k] for k in ("n_samples", "n_decodable", "n_unique", "n_excluded_elements")}


#: What each filter of the screen keeps, for the funnel.
FILTER_DESCRIPTIONS = {
    "duplicates": "one row per distinct reduced formula",
    "readable": "formula can be parsed and encoded",
    "predicted": "the screening model returned a prediction",
    "compound": "at least two elements",
    "allowed_elements": "no excluded element ({excluded})",
    "in_window": "predicted gap in the window",
    "simple": "fewer than {max_atoms} atoms and fewer than {max_elements} elements",
    "smact_valid": "charge-neutral with allowed oxidation states (SMACT)",
    "novel": "not a known formula (mp-e-form, mp-gap, mp-bandgap, mp-formulas) nor in the training data",
    "max_std": "prediction std ≤ {max_std} eV",
    "top": "the {top} most probable in the window",
}


def _known(cfg: DiscoverConfig) -> set[str]:
    """Formulas that are not novel: ``data.known`` (or every MP formula) + the labelled dataset."""
    base = set(_dataset(cfg.data.dataset)[C.FORMULA].astype(str))
    if cfg.data.known == "default":
        from gapforge.screening import known_formulas

        return set(known_formulas()) | base
    from gapforge.screening.screen import read_formula_column

    try:
        names = read_formula_column(cfg.data.known)
    except InputError:
        names = _dataset(cfg.data.known)[C.FORMULA].astype(str).tolist()
    from gapforge.data.loaders import normalize_formulas

    return set(normalize_formulas(names, path=cfg.data.known)) | base


#: Prediction batches of the screen on the executor: at most this many, of at least this many formulas
#: (fewer formulas than one batch are predicted in this process: no cluster is started for them).
SCREEN_MAX_BATCHES = 8
SCREEN_MIN_BATCH = 5_000


def _screen_executor(run_dir: Path, cfg: DiscoverConfig) -> tuple[Any, str | None]:
    """The executor discover opened and the screening model's directory the workers load.

    ``(None, None)`` (predict in this process) when no executor is open, or at the
    experimental fidelity (its head is not a model directory of its own).
    """
    from gapforge.executor import current_executor
    from gapforge.models.registry import model_dir

    executor = current_executor()
    if executor is None or cfg.models.fidelity != "pbe":
        return None, None
    if cfg.screening_model.kind == "oracle":
        return executor, str(model_dir(cfg.models.oracle, "oracle"))
    return executor, str(run_dir / L.SCREENING_MODEL_DIR)


def stage_screen(run_dir: Path, cfg: DiscoverConfig) -> dict[str, Any]:
    """Predict every generated formula, apply the filters, rank by P(gap in window)."""
    try:
        from gapforge.screening import screen
    except ImportError as exc:  # pragma: no cover - depends on the build
        raise _unavailable("screen", exc) from exc

    stage_dir(run_dir, "screen")
    generated = read_table(run_dir / L.GENERATED)
    model = _screening_model(run_dir, cfg)
    settings = cfg.screen.to_settings(cfg.window, cfg.exclude_elements)
    executor, model_ref = _screen_executor(run_dir, cfg)
    if executor is not None:  # split the prediction into batches the workers share
        batch = max(SCREEN_MIN_BATCH, math.ceil(len(generated) / SCREEN_MAX_BATCHES))
        settings = replace(settings, batch_size=min(settings.batch_size, batch))
    result = screen(
        generated[C.FORMULA].astype(str).tolist(),
        model,
        settings,
        known=_known(cfg),
        source=run_dir / L.GENERATED,
        executor=executor,
        model_ref=model_ref,
    )
    fun = result.funnel
    steps = []
    n = int(fun["n_input"])
    if fun.get("n_duplicates"):
        steps.append(_step("duplicates", n, n - int(fun["n_duplicates"]), cfg))
        n -= int(fun["n_duplicates"])
    for name in fun["required"]:
        steps.append(_step(name, n, int(fun["sequential"][name]), cfg))
        steps[-1]["fails_alone"] = int(fun.get("fails_alone", {}).get(name, 0))
        n = int(fun["sequential"][name])
    cand = result.candidates.copy()
    if len(cand) < n:
        steps.append(_step("top", n, len(cand), cfg))
    cand[L.RANK] = np.arange(1, len(cand) + 1)
    write_table(result.table, run_dir / L.SCREENED)
    write_table(cand, run_dir / L.CANDIDATES)
    write_json(
        {
            "steps": steps,
            "n_candidates_all": int(fun["n_candidates"]),
            "n_kept": len(cand),
            "model": cfg.models.oracle if cfg.screening_model.kind == "oracle" else L.SCREENING_MODEL_DIR,
            "settings": settings.to_dict(),
            "raw": fun,
        },
        run_dir / L.FUNNEL,
    )
    if len(cand) == 0:
        log.warning("screen: NO candidate. %s", empty_screen_advice(steps, cfg))
    return {
        "n_screened": int(fun["n_screened"]),
        "n_candidates": int(fun["n_candidates"]),
        "n_kept": len(cand),
        "top": cand[C.FORMULA].iloc[0] if len(cand) else None,
    }


def empty_screen_advice(steps: list[dict[str, Any]], cfg: DiscoverConfig) -> str:
    """Why the screen kept nothing, and what to change (one paragraph for the log and the CLI)."""
    if not steps:
        return "the generator produced no formula; raise generate.n_samples."
    worst = next((s for s in steps if s["n_out"] == 0), steps[-1])
    tips = {
        "in_window": (
            f"no prediction lies in {cfg.window}: lower --gap-min, widen the window, use the oracle as the "
            "screening model (screening_model.kind = 'oracle'), or draw more formulas (generate.n_samples)"
        ),
        "novel": "every formula in the window is known; draw more formulas (generate.n_samples)",
        "smact_valid": "set screen.require_smact = false to see charge-imbalanced formulas",
        "simple": "raise screen.max_atoms / screen.max_elements",
        "max_std": "raise or remove screen.max_std",
        "allowed_elements": "shorten exclude_elements",
    }
    tip = tips.get(worst["filter"], "raise generate.n_samples")
    return f"the '{worst['filter']}' filter removed the last {worst['removed']} formulas; {tip}."


def _step(name: str, n_in: int, n_out: int, cfg: DiscoverConfig) -> dict[str, Any]:
    desc = FILTER_DESCRIPTIONS.get(name, name)
    if name == "in_window":
        desc = f"predicted gap {cfg.window}"
    desc = desc.format(
        max_atoms=cfg.screen.max_atoms,
        max_elements=cfg.screen.max_elements,
        max_std=cfg.screen.max_std,
        top=cfg.screen.top,
        excluded=", ".join(cfg.exclude_elements) or "none",
    )
    return {"filter": name, "description": desc, "n_in": n_in, "n_out": n_out, "removed": n_in - n_out}


def stage_structure(run_dir: Path, cfg: DiscoverConfig) -> dict[str, Any]:
    """Templates by ElMD and element substitution for the top candidates; writes CIFs."""
    try:
        from gapforge.structure.pipeline import StructureSettings, build_structures
        from gapforge.structure.substitution import SubstitutionSettings
        from gapforge.structure.templates import SearchSettings
    except ImportError as exc:  # pragma: no cover - depends on the build
        raise _unavailable("structure", exc) from exc
    cand = read_table(run_dir / L.CANDIDATES).head(cfg.structure.max_candidates)
    if len(cand) == 0:
        raise StageSkipped("no candidate passed the screen (or structure.max_candidates = 0)")
    out = stage_dir(run_dir, "structure")
    cand_path = write_table(cand, out / "input.csv")
    settings = StructureSettings(
        search=SearchSettings(top_k=cfg.structure.templates),
        substitution=SubstitutionSettings(volume_method=cfg.structure.volume_method),
    )
    table = build_structures(cand_path, out, settings=settings, overwrite=True)
    n_cif = int(table[C.CIF_PATH].notna().sum()) if C.CIF_PATH in table else 0
    return {"n_candidates": len(cand), "n_structures": len(table), "n_cifs": n_cif}


def stage_relax(run_dir: Path, cfg: DiscoverConfig) -> dict[str, Any]:
    """CHGNet relaxation of every CIF; formation energy and energy above hull."""
    if not (run_dir / L.STRUCTURES).is_file():
        raise StageSkipped("no structures were built (structure stage skipped)")
    try:
        from gapforge.structure.pipeline import relax_structures
        from gapforge.structure.relax import RelaxSettings
        from gapforge.structure.rescore import SelectionEnergy
        from gapforge.structure.selection import SelectionSettings
    except ImportError as exc:  # pragma: no cover - depends on the build
        raise _unavailable("relax", exc) from exc
    settings = RelaxSettings(fmax=cfg.structure.fmax, max_steps=cfg.structure.relax_steps)
    selection = SelectionSettings(energy=SelectionEnergy(cfg.structure.selection_energy))
    # runs on the executor discover() opened; relax_cache/ makes a killed stage resume
    best = relax_structures(run_dir / L.STRUCTURE_DIR, settings=settings, selection=selection, overwrite=True)
    ehull = pd.to_numeric(best.get(L.E_ABOVE_HULL, pd.Series(dtype=float)), errors="coerce")
    e_form = pd.to_numeric(best.get(L.FORMATION_ENERGY, pd.Series(dtype=float)), errors="coerce")
    return {
        "n_candidates": len(best),
        # a relaxed structure always has a formation energy; e_above_hull is NaN when the
        # hull reference has no phase with one of its elements
        "n_relaxed": int(e_form.notna().sum()),
        "n_with_e_above_hull": int(ehull.notna().sum()),
        "n_on_hull": int((ehull <= 1e-6).sum()),
        "n_within_0.1": int((ehull <= 0.1).sum()),
        # more than 0.05 eV/atom below every known phase: the reference may miss a phase
        "n_below_known_hull": _n_true(best, C.BELOW_KNOWN_HULL),
    }


def _n_true(table: pd.DataFrame, col: str) -> int:
    """Rows whose boolean column is true (CSV round trips give "True" strings)."""
    if col not in table.columns:
        return 0
    return int(table[col].map(lambda v: v is True or str(v) == "True").sum())


def stage_stability(run_dir: Path, cfg: DiscoverConfig) -> dict[str, Any]:
    """Join candidates, structures and stability into the ranked ``stability/discoveries.csv``."""
    table = L.assemble_candidates(run_dir)
    if table is None:
        raise StageSkipped("the screen wrote no candidates")
    table = L.with_full_schema(table)  # every column, even with no discoveries
    write_table(table, stage_dir(run_dir, "stability") / "discoveries.csv")
    ef = pd.to_numeric(table.get(L.FORMATION_ENERGY, pd.Series(dtype=float)), errors="coerce")
    eh = pd.to_numeric(table.get(L.E_ABOVE_HULL, pd.Series(dtype=float)), errors="coerce")
    return {
        "n_candidates": len(table),
        "n_negative_formation": int((ef < 0).sum()),
        "n_within_0.1": int((eh <= 0.1).sum()),
        "n_below_known_hull": _n_true(table, C.BELOW_KNOWN_HULL),
        "top": str(table[C.FORMULA].iloc[0]) if len(table) else None,
    }


def stage_dft(run_dir: Path, cfg: DiscoverConfig) -> dict[str, Any]:
    """PBE band gaps (GPAW) of the ``dft.top`` lowest-energy-above-hull structures (optional)."""
    if not cfg.dft.enabled:
        raise StageSkipped("disabled in the settings (dft.enabled = false)")
    if cfg.dft.top == 0:
        raise StageSkipped("dft.top = 0")
    try:
        from gapforge.structure.dft import gpaw_available, run_dft
    except ImportError as exc:  # pragma: no cover - depends on the build
        raise _unavailable("dft", exc) from exc
    if not gpaw_available():
        raise StageSkipped("GPAW is not installed (pip install 'gapforge[dft]')")
    disc_path = run_dir / L.DISCOVERIES
    table = read_table(disc_path) if disc_path.is_file() else None
    if table is None or L.CIF_LINK not in table.columns:
        raise StageSkipped("no relaxed structures to compute")
    table = table[table[L.CIF_LINK].map(lambda v: isinstance(v, str) and v != "")].head(cfg.dft.top)
    if len(table) == 0:
        raise StageSkipped("no relaxed structures to compute")
    out = stage_dir(run_dir, "dft")
    inp = pd.DataFrame(
        {C.FORMULA: table[C.FORMULA], C.CIF_PATH: [str((run_dir / p).resolve()) for p in table[L.CIF_LINK]]}
    )
    inp_path = write_table(inp, out / "input.csv")
    res = run_dft(inp_path, out)
    ok = pd.to_numeric(res.get(L.DFT_BAND_GAP), errors="coerce")
    return {"n_structures": len(res), "n_gaps": int(ok.notna().sum())}


def stage_report(run_dir: Path, cfg: DiscoverConfig) -> dict[str, Any]:
    """Write ``report.html``."""
    from gapforge.report import build_report

    path = build_report(run_dir)
    return {"report": path.name, "bytes": path.stat().st_size}


DISCOVER_STAGES: tuple[Stage, ...] = (
    Stage("data", stage_data, "initial labelled set and hold-out"),
    Stage("oracle", stage_oracle, "band-gap oracle"),
    Stage("autoencoder", stage_autoencoder, "composition autoencoder"),
    Stage("campaign", stage_campaign, "GP + UCB active learning in latent space", resumable=True),
    Stage(
        "screening_model", stage_screening_model, "screening model (the oracle, or one trained on the labels)"
    ),
    Stage("generate", stage_generate, "formula generator"),
    Stage(
        "screen", stage_screen, "elements, window, simplicity, SMACT and novelty; ranked by P(gap in window)"
    ),
    Stage("structure", stage_structure, "templates by ElMD and element substitution"),
    Stage("relax", stage_relax, "CHGNet relaxation and energy above hull"),
    Stage("stability", stage_stability, "ranked discoveries"),
    Stage("dft", stage_dft, "optional PBE band gaps (GPAW)"),
    Stage("report", stage_report, "report.html"),
)


def discover(
    run_dir: str | Path,
    config: DiscoverConfig,
    *,
    overwrite: bool = False,
    until: str | None = None,
    redo: Sequence[str] = (),
    progress: bool | None = None,
    executor: ExecutorSettings | None = None,
) -> PipelineResult:
    """Run the whole discovery pipeline into ``run_dir`` (resuming it if it exists).

    Args:
        run_dir: run directory (``--out``).
        config: the resolved settings (:func:`gapforge.discover.resolve_config`).
        overwrite: start afresh in an existing run directory.
        until: stop after this stage.
        redo: stages to run again (with every later one).
        progress: progress bar (``None``: only on a terminal).
        executor: where the heavy stages (screen predictions, relax, dft) run; not part of the
            run's configuration, so a run resumes on another executor. Default:
            a local Dask cluster, started only if a heavy stage has work.

    Returns:
        One record per stage with its status, wall time and summary.

    Raises:
        GapforgeError: a stage failed; ``report.html`` then shows the stages done so far.
    """
    from gapforge.executor import open_executor

    pipeline_file = Path(run_dir) / PIPELINE_FILE
    before = _signature(pipeline_file)
    try:
        with open_executor(executor or ExecutorSettings(), deferred=True):
            return run_pipeline(
                run_dir,
                config,
                DISCOVER_STAGES,
                overwrite=overwrite,
                until=until,
                redo=redo,
                progress=progress,
            )
    except GapforgeError:
        # only a stage that failed in this call rewrites the report; a refusal before any stage ran
        # (different settings, run directory in use, unknown stage name) leaves the old run untouched
        after = _signature(pipeline_file)
        if after is not None and after != before:
            _partial_report(Path(run_dir))
        raise


def _signature(path: Path) -> tuple[int, int] | None:
    """(inode, mtime in ns) of a file, or None: changes whenever the file is rewritten (atomically)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _partial_report(run_dir: Path) -> None:
    """After a failed stage, still leave a report of what was done (best effort, never masks the error)."""
    if not (run_dir / "config.json").is_file():
        return
    try:
        from gapforge.report import build_report

        build_report(run_dir)
        log.info("a report of the stages done so far is in %s", run_dir / L.REPORT)
    except Exception as exc:  # the stage's error is the one to report
        log.warning("could not write a partial report: %s", exc)


__all__ = [
    "DISCOVER_STAGES",
    "FILTER_DESCRIPTIONS",
    "StageUnavailableError",
    "discover",
    "empty_screen_advice",
]

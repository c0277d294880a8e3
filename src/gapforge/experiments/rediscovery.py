"""The rediscovery benchmark: does ``discover`` rank real materials with the asked gap near the top?

Known materials are the union of ``mp-bandgap``, the Materials Project tables of
matbench (``matbench/mp_gap``: PBE gaps, metals as 0; ``matbench/mp_e_form``) and
``mp-formulas``; a formula's PBE gap is its ``mp-bandgap`` value where it has one,
else the median over its ``mp_gap`` polymorphs (formulas of ``mp_e_form`` or
``mp-formulas`` alone have no known gap).

Per seeded draw a share (default 10 %) of the chemical systems (element sets)
is held out: every formula of those systems leaves everything gapforge learns
from or compares against here — the oracle's training set, the campaign's
initial set and hold-out, the generator's training formulas and the novelty
reference. Retrained per draw with small budgets (the reason: 2 shared cores):

* the **oracle**: a random forest on Magpie descriptors (:class:`~gapforge.models.forest.ForestModel`,
  60 trees) instead of the shipped Roost ensemble; scored on a 10 % validation split
  of its own data and on the held-out materials;
* the **generator**: the autoregressive RNN, ``generator_epochs`` epochs instead of 30.

Not retrained: the shipped **autoencoder** (the campaign's latent space). It was
trained on every MP formula, held-out ones included: a leak, measured as the share of
the campaign's new labels that are held-out materials (``campaign_heldout_labels``).
The structure, relaxation and stability stages are not part of the draws; they run
afterwards on finished draws: :func:`run_stability` (held-out vs other candidates of one
draw) and :func:`run_stability_rerank` (each draw's top screen candidates get structures
without the held-out systems, CHGNet, an energy above hull without their own formula and
``discover``'s final ranking; hits@k of the screen, final and random orders).

Per draw and target window, on one pool (the distinct generated formulas that pass
discover's filters other than the window: allowed elements, simplicity, SMACT
validity, novelty against the reduced known set), five rankings:

1. ``discover``: ``gapforge discover`` as shipped (stages data → screen, quick
   budgets; the oracle screens and ranks by P(gap in window));
2. ``campaign``: the paper's route, a forest trained on the initial set plus the
   campaign's labels, ranking by P(gap in window);
3. ``random-labels``: the same with as many random known labels (true PBE gaps)
   instead of the campaign's;
4. ``oracle``: the oracle's predicted mean alone (highest first; nearest the centre
   of a closed window), no probability, no campaign;
5. ``base-rate``: the pool in random order.

A **hit** is a held-out material whose known PBE gap lies in the window (**exists**:
any held-out material). Metrics: precision@k and hits@k (k = 10, 50, 100), recall@100
of the held-out in-window materials, the share of them the pool holds at all
(``pool_recall``: the generator's ceiling), EF@k = precision@k / base rate (base rate
exact over the pool).

The work is independent tasks on :mod:`gapforge.executor` (serial, a local Dask
cluster, a scheduler or SLURM/PBS): per draw its two models, then per draw and target
the discover run and the five rankings. Each (draw, target, variant) becomes one JSON
file under ``OUT/runs/``, written by the main process as its task ends; task results
are keyed by content, so a rerun submits only what is missing, and the per-draw models
and discover runs resume from disk.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import time
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gapforge import columns as C
from gapforge.discover.config import QUICK_PRESET
from gapforge.errors import InputError
from gapforge.io import read_table, write_json, write_table, write_text
from gapforge.window import GapWindow

if TYPE_CHECKING:
    from collections.abc import Sequence

    from gapforge.executor import ExecutorSettings

log = logging.getLogger(__name__)

VARIANTS = ("discover", "campaign", "random-labels", "oracle", "base-rate")
KS = (10, 50, 100)
CHEMSYS = "chemsys"
HELD_OUT = "held_out"


@dataclass(frozen=True)
class RediscoverySettings:
    """What :func:`run_rediscovery` runs.

    Attributes:
        draws: hold-out draws (seeds ``seed + draw``).
        holdout_fraction: share of the chemical systems held out per draw.
        seed: base seed.
        targets: the windows, as ``(gap_min, gap_max or None)`` pairs (eV).
        generator_epochs: epochs of the retrained RNN generator (shipped: 30).
        oracle_estimators: trees of the retrained forest oracle.
        n_samples: generator samples per draw and target (discover's ``generate.n_samples``).
        campaign_iterations: campaign iterations (discover's quick preset: 5).
        campaign_batch: proposals per iteration (quick preset: 10).
        screening_estimators: trees of the variant-2/3 screening forests.
    """

    draws: int = 5
    holdout_fraction: float = 0.1
    seed: int = 0
    targets: tuple[tuple[float, float | None], ...] = ((4.0, None), (2.0, 3.0))
    generator_epochs: int = 6
    oracle_estimators: int = 60
    n_samples: int = 100_000
    campaign_iterations: int = 5
    campaign_batch: int = 10
    screening_estimators: int = 100
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.draws < 1 or not 0 < self.holdout_fraction < 1:
            raise InputError("need draws >= 1 and 0 < holdout_fraction < 1")
        for lo, hi in self.targets:
            GapWindow(lo, hi)

    @property
    def windows(self) -> tuple[GapWindow, ...]:
        """The target windows."""
        return tuple(GapWindow(lo, hi) for lo, hi in self.targets)


def window_key(window: GapWindow) -> str:
    """``ge4`` / ``2-3``: a file-name key of a window."""
    if window.open:
        return f"ge{window.gap_min:g}"
    return f"{window.gap_min:g}-{window.gap_max:g}"


# -- known materials ----------------------------------------------------------------------------
def _matbench(name: str) -> pd.DataFrame:
    from gapforge.data.registry import find_data_file

    path = find_data_file(f"{name}.csv.gz", "matbench")
    return pd.read_csv(path, keep_default_na=False, na_values=[])


def chemical_system(formula: str) -> str:
    """``"F-Li"`` for LiF: the sorted element symbols joined by ``-``."""
    from gapforge.screening.rules import _elements_of

    els = _elements_of(formula)
    return "-".join(sorted(els)) if els else ""


def build_known(cache: Path | None = None) -> pd.DataFrame:
    """Every known formula with its PBE gap where known (see the module doc).

    Returns:
        ``formula``, ``band_gap`` (eV or NaN), ``chemsys``, ``in_mp_bandgap``, ``in_mp_gap``,
        ``in_mp_e_form``, ``in_mp_formulas``.
    """
    if cache is not None and cache.is_file():
        return pd.read_parquet(cache)
    from gapforge.data import load_dataset, load_formulas
    from gapforge.data.loaders import normalize_formulas

    t0 = time.perf_counter()
    bg = load_dataset("mp-bandgap")[[C.FORMULA, C.BAND_GAP]]
    gap = _matbench("mp_gap")
    gap[C.FORMULA] = normalize_formulas(gap["formula"].tolist(), path="matbench/mp_gap")
    gap_med = gap.groupby(C.FORMULA)["target"].median()
    ef = _matbench("mp_e_form")
    ef_formulas = set(normalize_formulas(ef["formula"].tolist(), path="matbench/mp_e_form"))
    mpf = set(load_formulas("mp-formulas")[C.FORMULA])
    bg_gap = dict(zip(bg[C.FORMULA], bg[C.BAND_GAP], strict=True))
    formulas = sorted(set(bg_gap) | set(gap_med.index) | ef_formulas | mpf)
    gaps = [bg_gap.get(f, gap_med.get(f, np.nan)) for f in formulas]
    known = pd.DataFrame(
        {
            C.FORMULA: formulas,
            C.BAND_GAP: np.asarray(gaps, dtype=np.float64),
            CHEMSYS: [chemical_system(f) for f in formulas],
            "in_mp_bandgap": [f in bg_gap for f in formulas],
            "in_mp_gap": [f in gap_med.index for f in formulas],
            "in_mp_e_form": [f in ef_formulas for f in formulas],
            "in_mp_formulas": [f in mpf for f in formulas],
        }
    )
    known = known[known[CHEMSYS] != ""].reset_index(drop=True)
    log.info("known materials: %d formulas (%.0f s)", len(known), time.perf_counter() - t0)
    if cache is not None:
        write_table(known, cache)
    return known


def draw_holdout(known: pd.DataFrame, fraction: float, seed: int) -> set[str]:
    """The held-out chemical systems of one draw (``round(fraction * n_systems)``, seeded)."""
    systems = np.array(sorted(known[CHEMSYS].unique()))
    rng = np.random.default_rng(seed)
    n = max(1, round(fraction * len(systems)))
    return set(systems[rng.choice(len(systems), n, replace=False)].tolist())


# -- per-draw models ------------------------------------------------------------------------------
def _train_oracle(train: pd.DataFrame, held: pd.DataFrame, directory: Path, settings, seed: int) -> dict:
    """Forest oracle on 90 % of the non-held-out labels; scored on the other 10 % and on held-out ones."""
    from gapforge.models.forest import ForestModel
    from gapforge.models.metrics import regression_metrics

    if (directory / "model.json").is_file():
        return json.loads((directory / "scores.json").read_text())
    rng = np.random.default_rng(seed)
    is_val = rng.random(len(train)) < 0.1
    fit, val = train[~is_val], train[is_val]
    t0 = time.perf_counter()
    model = ForestModel(n_estimators=settings.oracle_estimators, n_jobs=1, random_state=seed)
    model.fit(fit[C.FORMULA].tolist(), fit[C.BAND_GAP].to_numpy(dtype=float))
    seconds = time.perf_counter() - t0
    scores: dict[str, Any] = {"n_train": len(fit), "fit_seconds": round(seconds, 1)}
    for name, part in (("validation", val), ("held_out", held)):
        pred = model.predict(part[C.FORMULA].tolist())
        m = regression_metrics(part[C.BAND_GAP], pred[C.BAND_GAP_MEAN], pred[C.BAND_GAP_STD])
        scores[name] = {k: v for k, v in m.to_dict().items() if k in ("n", "r2", "mae_eV", "rmse_eV")}
    model.save(
        directory, metadata={"seed": seed, "trained_on": "known minus held-out systems", "scores": scores}
    )
    write_json(scores, directory / "scores.json")
    return scores


def _train_generator(formulas: list[str], directory: Path, settings, seed: int) -> dict:
    from gapforge.models.formula_rnn import FormulaRNN

    if (directory / "model.json").is_file():
        meta = json.loads((directory / "model.json").read_text())["metadata"]
    else:
        model = FormulaRNN(epochs=settings.generator_epochs, seed=seed).fit(formulas)
        model.save(directory, metadata={"seed": seed, "training_data": "known minus held-out systems"})
        meta = json.loads((directory / "model.json").read_text())["metadata"]
    hist = meta.get("history") or []
    best = min((h["val_nll"] for h in hist if "val_nll" in h), default=float("nan"))
    return {
        "epochs": settings.generator_epochs,
        "best_val_nll": best,
        "n_train_formulas": meta.get("n_train_formulas"),
        "train_seconds": meta.get("train_seconds"),
    }


# -- rankings and metrics -------------------------------------------------------------------------
def ranking_metrics(
    ranked: list[str], pool_size: int, hits: set[str], exists: set[str], n_in_window: int, n_pool_hits: int
) -> dict[str, Any]:
    """precision@k, hits@k, exists@k, EF@k, recall@100 of one ranked list (see the module doc)."""
    base = n_pool_hits / pool_size if pool_size else float("nan")
    out: dict[str, Any] = {"base_rate": base, "n_pool": pool_size, "n_pool_hits": n_pool_hits}
    for k in KS:
        top = ranked[:k]
        h = sum(f in hits for f in top)
        out[f"hits@{k}"] = h
        out[f"exists@{k}"] = sum(f in exists for f in top)
        out[f"precision@{k}"] = h / k
        out[f"ef@{k}"] = (h / k) / base if base > 0 else float("nan")
    out["recall@100"] = out["hits@100"] / n_in_window if n_in_window else float("nan")
    out["pool_recall"] = n_pool_hits / n_in_window if n_in_window else float("nan")
    return out


def _rank_by_probability(
    pool: pd.DataFrame, mean: np.ndarray, std: np.ndarray, window: GapWindow
) -> list[str]:
    from gapforge.screening.screen import rank_candidates

    t = pd.DataFrame(
        {
            C.FORMULA: pool[C.FORMULA].to_numpy(),
            C.BAND_GAP_MEAN: mean,
            C.BAND_GAP_STD: std,
            C.P_IN_WINDOW: window.probability(mean, std),
            "candidate": True,
            "dropped_by": "",
        }
    )
    return rank_candidates(t, window)[C.FORMULA].tolist()


def _rank_by_mean(pool: pd.DataFrame, window: GapWindow) -> list[str]:
    mean = pool[C.BAND_GAP_MEAN].to_numpy(dtype=np.float64)
    score = mean if window.open else -np.abs(mean - window.centre)
    order = np.lexsort((pool[C.BAND_GAP_STD].to_numpy(), -np.nan_to_num(score, nan=-np.inf)))
    return pool[C.FORMULA].to_numpy()[order].tolist()


def _fit_predict(
    labels: pd.DataFrame, pool: pd.DataFrame, settings, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    from gapforge.models.forest import ForestModel

    model = ForestModel(n_estimators=settings.screening_estimators, n_jobs=1, random_state=seed)
    model.fit(labels[C.FORMULA].astype(str).tolist(), labels[C.BAND_GAP].to_numpy(dtype=float))
    pred = model.predict(pool[C.FORMULA].astype(str).tolist())
    return pred[C.BAND_GAP_MEAN].to_numpy(dtype=np.float64), pred[C.BAND_GAP_STD].to_numpy(dtype=np.float64)


POOL_FLAGS = ("readable", "predicted", "allowed_elements", "simple", "smact_valid", "novel")


# -- the benchmark as tasks ------------------------------------------------------------------------
class DrawModel(StrEnum):
    """The models retrained per draw, each an independent task."""

    ORACLE = "oracle"
    GENERATOR = "generator"


@dataclass(frozen=True)
class ModelTask:
    """Train one per-draw model into ``OUT/work/draw{draw}/{model}`` (reused there when present)."""

    draw: int
    model: DrawModel


@dataclass(frozen=True)
class ModelResult:
    """What a :class:`ModelTask` reports: the model's scores (oracle) or training facts (generator)."""

    info: dict[str, Any]
    seconds: float


@dataclass(frozen=True)
class WindowTask:
    """One draw and target window: the discover run to the screen and every ranking of its pool.

    Runs once both models of its draw exist.
    """

    draw: int
    target: tuple[float, float | None]

    @property
    def window(self) -> GapWindow:
        """The target window."""
        return GapWindow(*self.target)


@dataclass(frozen=True)
class WindowResult:
    """The rows of one :class:`WindowTask`, one per variant (in the order of :data:`VARIANTS`)."""

    rows: list[dict[str, Any]]
    seconds: float


#: Settings that do not change any draw's result (how many draws are run).
_NOT_SCIENTIFIC = ("draws",)


def _scientific(settings: RediscoverySettings) -> dict[str, Any]:
    d = json.loads(json.dumps(asdict(settings), default=str))
    return {k: v for k, v in d.items() if k not in _NOT_SCIENTIFIC}


def known_fingerprint(known: pd.DataFrame) -> str:
    """A content hash of the known materials (formulas and gaps)."""
    h = pd.util.hash_pandas_object(known[[C.FORMULA, C.BAND_GAP]], index=False).to_numpy()
    return hashlib.sha256(h.tobytes()).hexdigest()[:16]


def _task_key(kind: str, fields: dict[str, Any]) -> str:
    text = json.dumps({"task": kind, **fields}, sort_keys=True, default=str)
    return f"{kind}-" + hashlib.sha256(text.encode()).hexdigest()[:20]


def model_key(task: ModelTask, settings: RediscoverySettings, fingerprint: str) -> str:
    """Content key of a model task: what its model depends on."""
    budget = (
        {"oracle_estimators": settings.oracle_estimators}
        if task.model is DrawModel.ORACLE
        else {"generator_epochs": settings.generator_epochs}
    )
    return _task_key(
        task.model.value,
        {
            "seed": settings.seed + task.draw,
            "holdout_fraction": settings.holdout_fraction,
            "known": fingerprint,
            **budget,
        },
    )


def window_key_of(task: WindowTask, settings: RediscoverySettings, fingerprint: str) -> str:
    """Content key of a window task: every setting and the draw's seed and window."""
    return _task_key(
        "window",
        {**_scientific(settings), "draw": task.draw, "target": task.target, "known": fingerprint},
    )


def run_rediscovery(
    settings: RediscoverySettings,
    out: str | Path,
    *,
    executor: Executor | ExecutorSettings | None = None,
    known: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Run every (draw, target) not done yet as tasks; write the per-run files and the summary.

    Two rounds of independent tasks on one executor: the per-draw models (oracle
    and generator of every draw, :class:`ModelTask`), then per draw and target the
    discover run and its rankings (:class:`WindowTask`). Every task is a pure
    function of its seed (``settings.seed + draw``) and inputs, so the rows do not
    depend on where or in which order tasks run. Tasks are keyed by content and
    their results kept under ``OUT/work/tasks``; this process alone writes the
    per-run files ``OUT/runs/*.json`` as each task ends, and a rerun submits only
    what is missing. The models and discover runs are written by the task that owns
    them, in its draw's own directory ``OUT/work/draw{d}`` (shared storage on a cluster).

    Args:
        settings: what to run.
        out: output directory.
        executor: where the tasks run: an open executor, settings, or ``None``: the
            one open in this context, else a local Dask cluster on every core.
        known: the known materials (default: :func:`build_known`); a small table
            makes a tiny benchmark (tests).

    Returns:
        One row per (draw, target, variant) done so far.

    Raises:
        InputError: ``out`` holds a run made with other settings or other known materials.
    """
    from gapforge.executor import ExecutorSettings, JsonStore, TaskFailure, choose_executor, run_tasks
    from gapforge.executor.engine import open_executor

    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    if known is None:
        known = build_known(out / "work" / "known.parquet")
    fingerprint = known_fingerprint(known)
    _check_same_settings(out, settings, fingerprint)
    write_json(
        {"settings": asdict(settings), "known_fingerprint": fingerprint, "n_known": len(known)},
        out / "settings.json",
    )
    facts = {draw: _prepare_draw(settings, known, draw, out) for draw in range(settings.draws)}
    store_dir = out / "work" / "tasks"
    model_store: JsonStore[ModelResult] = JsonStore(
        store_dir, encode=asdict, decode=lambda d: ModelResult(**d)
    )
    window_store: JsonStore[WindowResult] = JsonStore(
        store_dir, encode=asdict, decode=lambda d: WindowResult(**d)
    )
    where = choose_executor(executor)
    if isinstance(where, ExecutorSettings):
        opened = open_executor(where, deferred=True, make_current=False)
    else:
        opened = contextlib.nullcontext(where)

    model_tasks = [ModelTask(d, m) for d in range(settings.draws) for m in DrawModel]
    window_tasks: list[WindowTask] = []

    def rows_arrived(i: int, result: WindowResult | TaskFailure) -> None:  # in this process only
        if isinstance(result, TaskFailure):
            log.error("draw %d %s failed: %s", window_tasks[i].draw, window_tasks[i].window, result.reason)
            return
        _write_rows(result, out)

    with opened as ex:
        models = run_tasks(
            functools.partial(model_task, settings=settings, out=str(out)),
            model_tasks,
            executor=ex,
            key=lambda t: model_key(t, settings, fingerprint),
            store=model_store,
            cost=lambda t: 1.0 if t.model is DrawModel.ORACLE else 0.9,
            desc="rediscovery models",
            unit="model",
        )
        ready = set(range(settings.draws))
        for task, res in zip(model_tasks, models.results, strict=True):
            if isinstance(res, TaskFailure):
                log.error("draw %d %s failed: %s", task.draw, task.model, res.reason)
                ready.discard(task.draw)
        window_tasks.extend(WindowTask(d, t) for d in sorted(ready) for t in settings.targets)
        windows = run_tasks(
            functools.partial(window_task, settings=settings, out=str(out)),
            window_tasks,
            executor=ex,
            key=lambda t: window_key_of(t, settings, fingerprint),
            store=window_store,
            on_result=rows_arrived,
            desc="rediscovery draws x targets",
            unit="run",
        )
    for res in windows.results:  # results kept from an earlier call whose files are missing
        if isinstance(res, WindowResult):
            _write_rows(res, out, only_missing=True)
    model_pairs = list(zip(model_tasks, models.results, strict=True))
    window_pairs = list(zip(window_tasks, windows.results, strict=True))
    for draw in range(settings.draws):
        _write_draw_info(draw, facts[draw], model_pairs, window_pairs, out)
    failed = models.failed + windows.failed
    if failed:
        log.warning("%d rediscovery tasks failed; rerun to retry them", failed)
    rows = collect_runs(out)
    write_summary(rows, settings, out)
    return rows


def _check_same_settings(out: Path, settings: RediscoverySettings, fingerprint: str) -> None:
    path = out / "settings.json"
    if not path.is_file():
        return
    old = json.loads(path.read_text())
    before = {k: v for k, v in old.get("settings", {}).items() if k not in _NOT_SCIENTIFIC}
    if before and json.loads(json.dumps(before)) != _scientific(settings):
        raise InputError(
            "this directory holds a rediscovery run with other settings; use another --out",
            path=path,
            value={k: v for k, v in before.items() if _scientific(settings).get(k) != v},
        )
    if old.get("known_fingerprint", fingerprint) != fingerprint:
        raise InputError(
            "this directory holds a rediscovery run on other known materials; use another --out", path=path
        )


def _run_name(draw: int, window: GapWindow, variant: str) -> str:
    return f"draw{draw}_{window_key(window)}_{variant}.json"


def _draw_dir(out: str | Path, draw: int) -> Path:
    return Path(out) / "work" / f"draw{draw}"


def _prepare_draw(settings: RediscoverySettings, known: pd.DataFrame, draw: int, out: Path) -> dict[str, Any]:
    """The draw's hold-out and the tables its tasks read (written here, before any task)."""
    seed = settings.seed + draw
    work = _draw_dir(out, draw)
    work.mkdir(parents=True, exist_ok=True)
    held_systems = draw_holdout(known, settings.holdout_fraction, seed)
    held_mask = known[CHEMSYS].isin(held_systems).to_numpy()
    kept = known[~held_mask]
    heldout = known[held_mask]
    if not (work / "heldout.parquet").is_file():
        write_text("\n".join(sorted(held_systems)) + "\n", out / f"heldout_systems_draw{draw}.txt")
        train = kept[kept[C.BAND_GAP].notna()][[C.FORMULA, C.BAND_GAP]].reset_index(drop=True)
        write_table(train, work / "train.parquet")
        write_table(train, work / "train.csv")  # discover's data.dataset
        write_table(kept[[C.FORMULA]], work / "known.csv")  # discover's data.known and the generator's
        write_table(heldout[[C.FORMULA, C.BAND_GAP]].reset_index(drop=True), work / "heldout.parquet")
    return {
        "draw": draw,
        "seed": seed,
        "n_systems_held_out": len(held_systems),
        "n_known": len(known),
        "n_held_out": int(held_mask.sum()),
        "n_held_out_with_gap": int(heldout[C.BAND_GAP].notna().sum()),
    }


def model_task(task: ModelTask, settings: RediscoverySettings, out: str) -> ModelResult:
    """Train (or reuse) one model of one draw; a pure function of the draw's seed and tables."""
    from gapforge.executor.engine import limit_threads

    limit_threads(1)  # the same numbers in this process and on any worker
    work = _draw_dir(out, task.draw)
    seed = settings.seed + task.draw
    t0 = time.perf_counter()
    if task.model is DrawModel.ORACLE:
        train = pd.read_parquet(work / "train.parquet")
        held = pd.read_parquet(work / "heldout.parquet")
        info = _train_oracle(train, held[held[C.BAND_GAP].notna()], work / "oracle", settings, seed)
    else:
        kept = read_table(work / "known.csv")[C.FORMULA].astype(str).tolist()
        info = _train_generator(kept, work / "generator", settings, seed)
    return ModelResult(info, round(time.perf_counter() - t0, 1))


def window_task(task: WindowTask, settings: RediscoverySettings, out: str) -> WindowResult:
    """Discover to the screen for one draw and window, and every variant's ranking of its pool."""
    from gapforge.discover import discover, resolve_config
    from gapforge.discover.config import DiscoverConfig
    from gapforge.executor import ExecutorSettings
    from gapforge.executor.engine import limit_threads

    limit_threads(1)
    t_task = time.perf_counter()
    draw, window = task.draw, task.window
    seed = settings.seed + draw
    work = _draw_dir(out, draw)
    train = pd.read_parquet(work / "train.parquet")
    heldout = pd.read_parquet(work / "heldout.parquet")
    held_labelled = heldout[heldout[C.BAND_GAP].notna()]
    exists = set(heldout[C.FORMULA])
    hits = set(held_labelled.loc[window.contains(held_labelled[C.BAND_GAP].to_numpy()), C.FORMULA])
    run_dir = work / f"discover_{window_key(window)}"
    base = resolve_config(gap_min=window.gap_min, gap_max=window.gap_max, quick=True, seed=seed).to_dict()
    base["data"].update(
        {"dataset": str((work / "train.csv").resolve()), "known": str((work / "known.csv").resolve())}
    )
    base["models"].update(
        {"oracle": str((work / "oracle").resolve()), "generator": str((work / "generator").resolve())}
    )
    base["campaign"].update(
        {"iterations": settings.campaign_iterations, "batch_size": settings.campaign_batch}
    )
    base["generate"]["n_samples"] = settings.n_samples
    cfg = DiscoverConfig.from_dict(base)
    t0 = time.perf_counter()
    # this task is the unit of work: discover's own stages run inside it, never on a second cluster
    result = discover(run_dir, cfg, until="screen", progress=False, executor=ExecutorSettings.serial())
    discover_seconds = time.perf_counter() - t0
    screened = pd.read_parquet(run_dir / "screen" / "screened.parquet")
    ok = np.ones(len(screened), dtype=bool)
    for flag in POOL_FLAGS:
        ok &= screened[flag].to_numpy(dtype=bool)
    pool = screened[ok].reset_index(drop=True)
    n_pool_hits = len(set(pool[C.FORMULA]) & hits)
    labelled = pd.read_csv(run_dir / "campaign" / "labelled.csv", keep_default_na=False, na_values=[""])
    new = labelled[labelled["source"] == "campaign"]
    initial = labelled[labelled["source"] == "initial"]
    camp = result.record("campaign").summary
    common = {
        "draw": draw,
        "seed": seed,
        "target": str(window),
        "window": window_key(window),
        "n_held_out_in_window": len(hits),
        "discover_seconds": round(discover_seconds, 1),
        "n_candidates_discover": int(result.record("screen").summary.get("n_candidates", 0)),
        "campaign_new_labels": len(new),
        "campaign_labelled_rate": camp.get("labelled_rate"),
        "campaign_heldout_labels": int(new[C.FORMULA].isin(exists).sum()),
        "campaign_in_window_labels": int(window.contains(new[C.BAND_GAP].to_numpy(dtype=float)).sum()),
    }
    rng = np.random.default_rng(seed + 17)
    rows = []
    for variant in VARIANTS:
        t0 = time.perf_counter()
        extra: dict[str, Any] = {}
        if variant == "discover":
            mean = pool[C.BAND_GAP_MEAN].to_numpy(dtype=np.float64)
            std = pool[C.BAND_GAP_STD].to_numpy(dtype=np.float64)
            ranked = _rank_by_probability(pool, mean, std, window)
        elif variant == "campaign":
            mean, std = _fit_predict(labelled, pool, settings, seed)
            ranked = _rank_by_probability(pool, mean, std, window)
            extra["n_train"] = len(labelled)
        elif variant == "random-labels":
            avail = train[~train[C.FORMULA].isin(set(initial[C.FORMULA]))]
            pick = avail.sample(n=min(len(new), len(avail)), random_state=seed)
            labels = pd.concat([initial[[C.FORMULA, C.BAND_GAP]], pick], ignore_index=True)
            mean, std = _fit_predict(labels, pool, settings, seed)
            ranked = _rank_by_probability(pool, mean, std, window)
            extra["n_train"] = len(labels)
            extra["random_in_window_labels"] = int(window.contains(pick[C.BAND_GAP].to_numpy()).sum())
        elif variant == "oracle":
            ranked = _rank_by_mean(pool, window)
        else:
            ranked = pool[C.FORMULA].to_numpy()[rng.permutation(len(pool))].tolist()
        rows.append(
            {
                **common,
                "variant": variant,
                **ranking_metrics(ranked, len(pool), hits, exists, len(hits), n_pool_hits),
                **extra,
                "top10": ranked[:10],
                "top10_hits": [f for f in ranked[:10] if f in hits],
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
    return WindowResult(rows, round(time.perf_counter() - t_task, 1))


def _write_rows(result: WindowResult, out: Path, *, only_missing: bool = False) -> None:
    for row in result.rows:
        path = out / "runs" / _run_name(int(row["draw"]), _window_of(row["window"]), row["variant"])
        if only_missing and path.is_file():
            continue
        write_json(row, path)
        log.info(
            "draw %d %s %s: P@10 %.2f P@100 %.3f EF@100 %.1f",
            row["draw"],
            row["target"],
            row["variant"],
            row["precision@10"],
            row["precision@100"],
            row["ef@100"],
        )


def _window_of(key: str) -> GapWindow:
    """Inverse of :func:`window_key`."""
    if key.startswith("ge"):
        return GapWindow(float(key[2:]))
    lo, hi = key.split("-")
    return GapWindow(float(lo), float(hi))


def _write_draw_info(
    draw: int,
    facts: dict[str, Any],
    models: list[tuple[ModelTask, ModelResult | Any]],
    windows: list[tuple[WindowTask, WindowResult | Any]],
    out: Path,
) -> None:
    """``runs/draw{d}_info.json``: the draw's facts, model scores and task times (once it has rows)."""
    info = dict(facts)
    seconds = 0.0
    for task, res in models:
        if task.draw == draw and isinstance(res, ModelResult):
            info[task.model.value] = res.info
            info[f"{task.model.value}_seconds"] = res.seconds
            seconds += res.seconds
    n_windows = 0
    for task, res in windows:
        if task.draw == draw and isinstance(res, WindowResult):
            info[f"{window_key(task.window)}_seconds"] = res.seconds
            seconds += res.seconds
            n_windows += 1
    if n_windows == 0:
        return
    info["seconds"] = round(seconds, 1)  # task time: the draw's tasks may have run side by side
    write_json(info, _draw_dir(out, draw) / "draw.json")
    write_json(info, out / "runs" / f"draw{draw}_info.json")


def run_stability(
    out: str | Path,
    *,
    draw: int = 0,
    window: GapWindow = GapWindow(4.0),
    n_each: int = 15,
    relax_steps: int = 100,
    executor: Executor | ExecutorSettings | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """ROC-AUC with which the pipeline's energy above hull separates held-out materials from other candidates.

    Takes discover's candidates of one finished draw and window (pool formulas with the
    predicted mean in the window), up to ``n_each`` that are held-out materials and as
    many random others; builds their structures from templates **without** the held-out
    systems (the structure is not given away) and relaxes them with CHGNet
    (``relax_steps``, fmax 0.1 eV/Å).

    The energy above hull of each candidate is then taken against the hull of **every
    known phase except its own formula** (``mp-e-form``, leave-one-formula-out): a
    held-out material competes with the real phases of its own chemical system, as an
    unknown material would. (Against the hull without the held-out *systems*, kept as
    ``roc_auc_system_hull``, a held-out material faces its subsystems only and lands
    below that hull by construction: that separation is an artefact.) Single elements
    are left out of the measure (the screen now requires a compound). Writes
    ``OUT/runs/stability_draw{draw}_{window}.json``.
    """
    from gapforge.structure.hull import HullReference
    from gapforge.structure.library import load_library
    from gapforge.structure.pipeline import StructureSettings, build_structures, relax_structures
    from gapforge.structure.relax import RelaxSettings
    from gapforge.structure.templates import SearchSettings

    out = Path(out)
    t0 = time.perf_counter()
    held = set((out / f"heldout_systems_draw{draw}.txt").read_text().split())
    known = build_known(out / "work" / "known.parquet")
    exists = set(known.loc[known[CHEMSYS].isin(held), C.FORMULA])
    run_dir = out / "work" / f"draw{draw}" / f"discover_{window_key(window)}"
    screened = pd.read_parquet(run_dir / "screen" / "screened.parquet")
    ok = screened["in_window"].to_numpy(dtype=bool).copy()
    for flag in POOL_FLAGS:
        ok &= screened[flag].to_numpy(dtype=bool)
    cand = screened[ok]
    is_held = cand[C.FORMULA].isin(exists)
    pos, neg = cand[is_held], cand[~is_held]
    n = min(n_each, len(pos), len(neg))
    pick = pd.concat([pos.sample(n=n, random_state=seed), neg.sample(n=n, random_state=seed)])
    sdir = out / "work" / f"draw{draw}" / f"stability_{window_key(window)}"
    sdir.mkdir(parents=True, exist_ok=True)
    picked = pick[[C.FORMULA, C.BAND_GAP_MEAN, C.BAND_GAP_STD]].reset_index(drop=True)
    same = (sdir / "input.csv").is_file() and read_table(sdir / "input.csv")[C.FORMULA].astype(
        str
    ).tolist() == picked[C.FORMULA].tolist()
    inp = write_table(picked, sdir / "input.csv")
    library = load_library(max_e_above_hull=0.1)
    lib_sys = library.table[C.REDUCED_FORMULA].astype(str).map(chemical_system)
    library = library.subset(~lib_sys.isin(held).to_numpy())
    build_structures(
        inp,
        sdir,
        library=library,
        settings=StructureSettings(search=SearchSettings(top_k=1)),
        overwrite=not same,
    )
    system_hull = HullReference.from_dataset(exclude_systems=held)
    best = relax_structures(
        sdir,
        settings=RelaxSettings(fmax=0.1, max_steps=relax_steps),
        hull=system_hull,
        executor=executor,
        overwrite=not same,  # relaxations already done are reused from relax_cache/ either way
    )
    res = stability_measure(best, exists, HullReference.from_dataset())
    res = {
        "draw": draw,
        "target": str(window),
        "n_held_out_candidates": int(is_held.sum()),
        "n_other_candidates": int((~is_held).sum()),
        "n_each": n,
        **res,
        "relax_steps": relax_steps,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_json(res, out / "runs" / f"stability_draw{draw}_{window_key(window)}.json")
    return res


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    fin = np.isfinite(score)
    if not fin.any() or not 0 < y[fin].sum() < fin.sum():
        return float("nan")
    return float(roc_auc_score(y[fin], score[fin]))


def stability_measure(relaxed: pd.DataFrame, exists: set[str], hull: Any) -> dict[str, Any]:
    """ROC-AUC of -e_above_hull (leave-one-formula-out on ``hull``) for held-out vs other candidates.

    Args:
        relaxed: one row per candidate with ``formula``, ``formation_energy_per_atom``
            (eV/atom, on ``hull``'s scale) and the ``e_above_hull`` the relax stage
            measured (against the hull without the held-out systems).
        exists: the held-out materials (reduced formulas).
        hull: a :class:`~gapforge.structure.hull.HullReference` of every known phase.

    Returns:
        ``roc_auc`` (leave-one-formula-out), ``roc_auc_system_hull`` (the biased one),
        counts (positives, negatives, pairs), medians and one row per candidate.
    """
    from gapforge.structure.hull import chemical_system as element_set

    formulas = relaxed[C.FORMULA].astype(str).tolist()
    compound = np.array([len(element_set(f)) > 1 for f in formulas])
    e_form = pd.to_numeric(relaxed[C.FORMATION_ENERGY_PER_ATOM], errors="coerce").to_numpy(dtype=float)
    system = pd.to_numeric(relaxed[C.E_ABOVE_HULL], errors="coerce").to_numpy(dtype=float)
    own_out = own_formula_left_out(formulas, e_form, hull)
    lofo = own_out[C.E_ABOVE_HULL].to_numpy(dtype=float)
    n_phases = own_out[C.HULL_KNOWN_PHASES].to_numpy(dtype=int)
    y = np.array([f in exists for f in formulas])
    use = compound & np.isfinite(lofo)
    pos, neg = int((y & use).sum()), int((~y & use).sum())
    return {
        "n_elements_left_out": int((~compound).sum()),
        "n_with_e_above_hull": int(use.sum()),
        "n_positive": pos,
        "n_negative": neg,
        "n_pairs": pos * neg,
        "roc_auc": _auc(y[use], -lofo[use]),
        "median_e_above_hull_held_out": float(np.median(lofo[y & use])) if pos else float("nan"),
        "median_e_above_hull_other": float(np.median(lofo[~y & use])) if neg else float("nan"),
        "roc_auc_system_hull": _auc(y[use], -system[use]),
        "median_system_hull_held_out": float(np.nanmedian(system[y & use])) if pos else float("nan"),
        "median_system_hull_other": float(np.nanmedian(system[~y & use])) if neg else float("nan"),
        "hull": "every known phase except the candidate's own formula (leave-one-formula-out)",
        "rows": [
            {
                "formula": f,
                "held_out": bool(h),
                "compound": bool(c),
                "e_above_hull": None if not np.isfinite(a) else float(a),
                "known_phases_in_system": int(k),
                "e_above_hull_system_hull": None if not np.isfinite(b) else float(b),
            }
            for f, h, c, a, k, b in zip(formulas, y, compound, lofo, n_phases, system, strict=True)
        ],
    }


# -- the stability stage on the draws: does P(in window) x P(stable) bring held-out materials up? --
#: Cut-offs of hits@k in the re-ranking measure (within the top ``n_candidates`` of the screen).
RERANK_KS = (5, 10, 20)
#: The orders compared: the screen's (P in window), discover's final one (x P(stable)), a random one.
RERANK_ORDERS = ("screen", "final", "random")
HIT = "hit"
#: The screen's rank column of a candidate table (``discover``'s ``rank``, 1 = first).
RANK = "rank"
SCREEN_RANK = "screen_rank"
FINAL_RANK = "final_rank"
#: Stability call of the share-within measure (eV/atom), the same as ``p_stable``'s.
WITHIN = 0.1


@dataclass(frozen=True)
class RerankSettings:
    """What :func:`run_stability_rerank` runs per draw and window.

    Attributes:
        n_candidates: the top of the screen given a structure (default: discover's quick
            preset's ``structure.max_candidates``).
        templates: templates relaxed per candidate (discover's ``structure.templates``;
            the kept one chosen as discover chooses it).
        relax_steps: most FIRE steps per relaxation (:func:`run_stability`'s 100).
        fmax: force criterion (eV/Å; :func:`run_stability`'s 0.1).
        ks: cut-offs of hits@k and exists@k.
        bootstrap: resamples of the ROC-AUC interval (0: none).
        seed: of the bootstrap.
    """

    n_candidates: int = QUICK_PRESET["structure"]["max_candidates"]
    templates: int = 1
    relax_steps: int = 100
    fmax: float = 0.1
    ks: tuple[int, ...] = RERANK_KS
    bootstrap: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_candidates", "templates", "relax_steps"):
            if getattr(self, name) < 1:
                raise InputError(f"re-ranking {name} must be >= 1", value=getattr(self, name))
        if not self.fmax > 0:
            raise InputError("re-ranking fmax must be > 0 eV/Å", value=self.fmax)
        if not self.ks or min(self.ks) < 1:
            raise InputError("hits@k cut-offs must be >= 1", value=self.ks)

    def per_window(self) -> dict[str, Any]:
        """The settings a draw and window's rows depend on (a saved result is reused when they match)."""
        return {
            "n_candidates": self.n_candidates,
            "templates": self.templates,
            "relax_steps": self.relax_steps,
            "fmax": self.fmax,
        }


def own_formula_left_out(formulas: list[str], formation_energy: np.ndarray, hull: Any) -> pd.DataFrame:
    """Energy above hull of each formula against every phase of ``hull`` except its own formula.

    A held-out material then competes with the real phases of its own chemical system,
    as an unknown material would; a formula the reference does not hold meets the
    whole hull.

    Args:
        formulas: reduced formulas.
        formation_energy: (n,) formation energies per atom (eV/atom, on ``hull``'s scale; NaN: none).
        hull: a :class:`~gapforge.structure.hull.HullReference`.

    Returns:
        ``e_above_hull`` (eV/atom, NaN where there is no energy or no reference phase) and
        ``hull_known_phases`` (known compounds of the system, the own formula not counted).
    """
    e_hull = np.full(len(formulas), np.nan)
    n_phases = np.zeros(len(formulas), dtype=int)
    for i, (f, e) in enumerate(zip(formulas, formation_energy, strict=True)):
        if np.isfinite(e):
            r = hull.e_above_hull(f, float(e), leave_out=[f])
            e_hull[i], n_phases[i] = r.e_above_hull, r.n_known_phases
    return pd.DataFrame({C.E_ABOVE_HULL: e_hull, C.HULL_KNOWN_PHASES: n_phases})


def rerank_measure(
    table: pd.DataFrame, hits: set[str], exists: set[str], ks: tuple[int, ...] = RERANK_KS
) -> dict[str, Any]:
    """hits@k and exists@k of the screen's order, discover's final order and a random order of one top-N.

    Args:
        table: the top-N of the screen, one row per candidate: ``formula``, ``rank``
            (the screen's, 1..N), ``p_in_window`` and ``e_above_hull`` (eV/atom; NaN
            where no structure was relaxed).
        hits: held-out materials with their known gap in the window.
        exists: every held-out material.
        ks: cut-offs.

    Returns:
        ``{order}_hits@{k}`` and ``{order}_exists@{k}`` for order in
        :data:`RERANK_ORDERS` (``random``: the exact expectation, hits in the top-N
        x min(k, N) / N), ``n``, ``n_hits``, ``n_exists`` and ``final_order`` (the
        formulas in :func:`~gapforge.discover.layout.rank_discoveries` order, the
        function ``discover`` ranks its final list with).
    """
    from gapforge.discover.layout import rank_discoveries

    n = len(table)
    screen = table.sort_values(RANK, kind="stable")[C.FORMULA].astype(str).tolist()
    final = rank_discoveries(table)[C.FORMULA].astype(str).tolist()
    out: dict[str, Any] = {
        "n": n,
        "n_hits": sum(f in hits for f in screen),
        "n_exists": sum(f in exists for f in screen),
    }
    for k in ks:
        for name, order in (("screen", screen), ("final", final)):
            out[f"{name}_hits@{k}"] = sum(f in hits for f in order[:k])
            out[f"{name}_exists@{k}"] = sum(f in exists for f in order[:k])
        share = min(k, n) / n if n else 0.0
        out[f"random_hits@{k}"] = out["n_hits"] * share
        out[f"random_exists@{k}"] = out["n_exists"] * share
    out["final_order"] = final
    return out


def _rerank_path(out: Path, draw: int, window: GapWindow) -> Path:
    return out / "runs" / f"rerank_draw{draw}_{window_key(window)}.json"


def screen_top(out: str | Path, draw: int, window: GapWindow, n: int) -> pd.DataFrame:
    """The first ``n`` of the pool of one finished draw and window in the screen's order (``rank`` 1..n).

    The pool and order are those of the draws' ``discover`` variant (P(gap in window),
    :func:`gapforge.screening.screen.rank_candidates`); its first ``screen.top`` are the
    discover run's ``screen/candidates.csv``.
    """
    path = _draw_dir(out, draw) / f"discover_{window_key(window)}" / "screen" / "screened.parquet"
    if not path.is_file():
        raise InputError("this draw and window has no screen (run the draws first)", path=path)
    screened = pd.read_parquet(path)
    ok = np.ones(len(screened), dtype=bool)
    for flag in POOL_FLAGS:
        ok &= screened[flag].to_numpy(dtype=bool)
    pool = screened[ok].reset_index(drop=True)
    mean = pool[C.BAND_GAP_MEAN].to_numpy(dtype=np.float64)
    std = pool[C.BAND_GAP_STD].to_numpy(dtype=np.float64)
    order = _rank_by_probability(pool, mean, std, window)[:n]
    top = pool.set_index(C.FORMULA).loc[order, [C.BAND_GAP_MEAN, C.BAND_GAP_STD]].reset_index()
    top[C.P_IN_WINDOW] = window.probability(
        top[C.BAND_GAP_MEAN].to_numpy(dtype=np.float64), top[C.BAND_GAP_STD].to_numpy(dtype=np.float64)
    )
    top[RANK] = np.arange(1, len(top) + 1)
    return top


def held_out_systems(out: str | Path, draw: int) -> set[str]:
    """The chemical systems draw ``draw`` held out (``OUT/heldout_systems_draw{draw}.txt``)."""
    path = Path(out) / f"heldout_systems_draw{draw}.txt"
    if not path.is_file():
        raise InputError("no held-out systems for this draw (run the draws first)", path=path)
    return set(path.read_text().split())


@dataclass(frozen=True)
class RerankReferences:
    """What every draw's structure and stability stages compare against (loaded once).

    Attributes:
        library: the template library (the draw's held-out systems are removed per draw).
        prototypes: prototype counts of the template ranking (held-out formulas removed per draw).
        hull: every known phase (each candidate's own formula left out per query).
    """

    library: Any
    prototypes: Any
    hull: Any

    @classmethod
    def load(cls) -> RerankReferences:
        """The defaults of ``discover``: the offline MP library, ``mp-formulas`` counts, ``mp-e-form``."""
        from gapforge.structure.hull import HullReference
        from gapforge.structure.library import load_library
        from gapforge.structure.prototypes import PrototypeCounts

        return cls(load_library(max_e_above_hull=0.1), PrototypeCounts.load(), HullReference.from_dataset())

    def without(self, held: set[str]) -> tuple[Any, Any]:
        """The library and prototype counts without any formula of the chemical systems ``held``."""
        lib_sys = self.library.table[C.REDUCED_FORMULA].astype(str).map(chemical_system)
        library = self.library.subset(~lib_sys.isin(held).to_numpy())
        drop = [f for f in self.prototypes.formula_totals if chemical_system(f) in held]
        return library, self.prototypes.without_formulas(drop)


def rerank_window(
    out: str | Path,
    draw: int,
    window: GapWindow,
    settings: RerankSettings = RerankSettings(),
    *,
    references: RerankReferences | None = None,
    executor: Executor | ExecutorSettings | None = None,
    known: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Structures, relaxation, stability and discover's final ranking of one draw and window's top-N.

    The first ``settings.n_candidates`` of the screen (:func:`screen_top`) get
    structures from templates **without** the draw's held-out systems (library and
    prototype counts), are relaxed with CHGNet (one task per structure on the
    executor; kept in ``OUT/work/relax_cache`` by content, shared by every draw and
    window), and their energy above hull is taken against every known phase except
    their own formula (:func:`own_formula_left_out`). The final order is
    :func:`~gapforge.discover.layout.rank_discoveries`, discover's own. Written to
    ``OUT/runs/rerank_draw{draw}_{window}.json``; a file with the same
    :meth:`RerankSettings.per_window` is returned as is (resumable per draw and window).
    """
    from gapforge.structure.pipeline import StructureSettings, build_structures, relax_structures
    from gapforge.structure.relax import RelaxSettings
    from gapforge.structure.templates import SearchSettings

    out = Path(out)
    path = _rerank_path(out, draw, window)
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("settings") == settings.per_window():
            log.info("draw %d %s: re-ranking done before (%s); reused", draw, window, path)
            return old
    t0 = time.perf_counter()
    held = held_out_systems(out, draw)
    if known is None:
        known = build_known(out / "work" / "known.parquet")
    held_known = known[known[CHEMSYS].isin(held)]
    exists = set(held_known[C.FORMULA])
    labelled = held_known[held_known[C.BAND_GAP].notna()]
    hits = set(labelled.loc[window.contains(labelled[C.BAND_GAP].to_numpy(dtype=float)), C.FORMULA])
    refs = references if references is not None else RerankReferences.load()
    library, prototypes = refs.without(held)

    top = screen_top(out, draw, window, settings.n_candidates)
    sdir = _draw_dir(out, draw) / f"rerank_{window_key(window)}"
    sdir.mkdir(parents=True, exist_ok=True)
    inp = write_table(top, sdir / "input.csv")
    build_structures(
        inp,
        sdir,
        library=library,
        settings=StructureSettings(search=SearchSettings(top_k=settings.templates)),
        overwrite=True,  # cheap and deterministic: the same CIFs, so the relaxations come from the cache
        prototypes=prototypes,
    )
    relaxed = relax_structures(
        sdir,
        settings=RelaxSettings(fmax=settings.fmax, max_steps=settings.relax_steps),
        hull=refs.hull,
        executor=executor,
        overwrite=True,
        cache_dir=out / "work" / "relax_cache",
    )
    rel = relaxed.drop_duplicates(C.FORMULA).set_index(C.FORMULA)
    formulas = top[C.FORMULA].astype(str).tolist()
    e_form = pd.to_numeric(rel[C.FORMATION_ENERGY_PER_ATOM].reindex(formulas), errors="coerce").to_numpy(
        dtype=float
    )
    lofo = own_formula_left_out(formulas, e_form, refs.hull)
    table = top.assign(
        **{
            C.FORMATION_ENERGY_PER_ATOM: e_form,
            C.E_ABOVE_HULL: lofo[C.E_ABOVE_HULL].to_numpy(),
            C.HULL_KNOWN_PHASES: lofo[C.HULL_KNOWN_PHASES].to_numpy(),
        }
    )
    measure = rerank_measure(table, hits, exists, settings.ks)
    final_rank = {f: i for i, f in enumerate(measure.pop("final_order"), start=1)}
    from gapforge.structure.stability import p_stable

    rows = []
    for _, r in table.iterrows():
        f = str(r[C.FORMULA])
        eh = float(r[C.E_ABOVE_HULL])
        info = rel.loc[f] if f in rel.index else None
        rows.append(
            {
                C.FORMULA: f,
                SCREEN_RANK: int(r[RANK]),
                FINAL_RANK: final_rank[f],
                C.P_IN_WINDOW: float(r[C.P_IN_WINDOW]),
                C.BAND_GAP_MEAN: float(r[C.BAND_GAP_MEAN]),
                C.E_ABOVE_HULL: eh if np.isfinite(eh) else None,
                C.P_STABLE: float(p_stable(eh)) if np.isfinite(eh) else None,
                C.HULL_KNOWN_PHASES: int(r[C.HULL_KNOWN_PHASES]),
                HELD_OUT: f in exists,
                HIT: f in hits,
                C.TEMPLATE_FORMULA: _text(info, C.TEMPLATE_FORMULA),
                C.CONVERGED: _text(info, C.CONVERGED),
                C.REASON: _text(info, C.REASON),
            }
        )
    res = {
        "draw": draw,
        "target": str(window),
        "window": window_key(window),
        "settings": settings.per_window(),
        "n_held_out_in_window": len(hits),
        "n_relaxed": int(np.isfinite(e_form).sum()),
        "n_with_e_above_hull": int(np.isfinite(lofo[C.E_ABOVE_HULL]).sum()),
        **measure,
        "rows": rows,
        "hull": f"{refs.hull.source}; every known phase except the candidate's own formula",
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_json(res, path)
    log.info(
        "draw %d %s: hits@10 screen %d final %d (of %d held-out in the top %d), %.0f s",
        draw, window, res["screen_hits@10"] if 10 in settings.ks else -1,
        res["final_hits@10"] if 10 in settings.ks else -1, res["n_hits"], res["n"], res["seconds"],
    )  # fmt: skip
    return res


def _text(info: pd.Series | None, col: str) -> Any:
    if info is None or col not in info.index:
        return None
    v = info[col]
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return None
    return v if isinstance(v, bool) else str(v)


def bootstrap_auc(y: np.ndarray, score: np.ndarray, n_boot: int, seed: int = 0) -> tuple[float, float, float]:
    """ROC-AUC and its 95 % percentile interval, resampling positives and negatives separately."""
    auc = _auc(y, score)
    if n_boot <= 0 or not np.isfinite(auc):
        return auc, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    pos, neg = score[y], score[~y]
    vals = np.empty(n_boot)
    for b in range(n_boot):
        p = rng.choice(pos, len(pos))
        q = rng.choice(neg, len(neg))
        # Mann-Whitney: the share of pairs a positive wins, ties counting half
        vals[b] = ((p[:, None] > q[None, :]).sum() + 0.5 * (p[:, None] == q[None, :]).sum()) / (
            len(p) * len(q)
        )
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return auc, float(lo), float(hi)


def _mean_sd(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=float)
    return {
        "mean": float(v.mean()) if len(v) else float("nan"),
        "sd": float(v.std(ddof=1)) if len(v) > 1 else float("nan"),
    }


def summarize_rerank(results: list[dict[str, Any]], settings: RerankSettings) -> dict[str, Any]:
    """Per window: mean ± sd over draws of every hits@k, and pooled stability measures.

    Also the paired final − screen difference per draw, the stability ROC-AUC of
    held-out vs other compounds pooled over draws with a bootstrap interval, and the
    share within 0.1 eV/atom of the hull of each.
    """
    from gapforge.structure.hull import chemical_system as element_set

    def pooled(rs: list[dict[str, Any]], seed: int) -> dict[str, Any]:
        rows = [r for res in rs for r in res["rows"]]
        eh = np.array([np.nan if r[C.E_ABOVE_HULL] is None else r[C.E_ABOVE_HULL] for r in rows], dtype=float)
        y = np.array([bool(r[HELD_OUT]) for r in rows])
        compound = np.array([len(element_set(r[C.FORMULA])) > 1 for r in rows], dtype=bool)
        use = compound & np.isfinite(eh)
        auc, lo, hi = bootstrap_auc(y[use], -eh[use], settings.bootstrap, seed)
        n_pos, n_neg = int((y & use).sum()), int((~y & use).sum())
        within = eh <= WITHIN
        return {
            "roc_auc": auc,
            "roc_auc_ci95": [lo, hi],
            "n_positive": n_pos,
            "n_negative": n_neg,
            "n_pairs": n_pos * n_neg,
            "n_rows": len(rows),
            "n_held_out": int(y.sum()),
            "n_held_out_with_e_above_hull": int((y & np.isfinite(eh)).sum()),
            "n_other_with_e_above_hull": int((~y & np.isfinite(eh)).sum()),
            "held_out_within": int((y & within).sum()),
            "other_within": int((~y & within).sum()),
            "share_within_held_out": float((y & within).sum() / max(1, (y & np.isfinite(eh)).sum())),
            "share_within_other": float((~y & within).sum() / max(1, (~y & np.isfinite(eh)).sum())),
            "median_e_above_hull_held_out": float(np.median(eh[y & use])) if n_pos else float("nan"),
            "median_e_above_hull_other": float(np.median(eh[~y & use])) if n_neg else float("nan"),
        }

    windows: list[dict[str, Any]] = []
    by_window: dict[str, list[dict[str, Any]]] = {}
    for res in results:
        by_window.setdefault(res["target"], []).append(res)
    for i, (target, unsorted) in enumerate(by_window.items()):
        rs = sorted(unsorted, key=lambda r: r["draw"])
        w: dict[str, Any] = {"target": target, "draws": [r["draw"] for r in rs]}
        for key in ("n_hits", "n_exists", "n_relaxed", "n_with_e_above_hull"):
            w[key] = _mean_sd([r[key] for r in rs])
        for k in settings.ks:
            for what in ("hits", "exists"):
                for order in RERANK_ORDERS:
                    w[f"{order}_{what}@{k}"] = _mean_sd([r[f"{order}_{what}@{k}"] for r in rs])
                diff = [r[f"final_{what}@{k}"] - r[f"screen_{what}@{k}"] for r in rs]
                w[f"final_minus_screen_{what}@{k}"] = {
                    **_mean_sd(diff),
                    "ahead": sum(d > 0 for d in diff),
                    "behind": sum(d < 0 for d in diff),
                    "per_draw": diff,
                }
        w["stability"] = pooled(rs, settings.seed + i)
        windows.append(w)
    return {
        "settings": asdict(settings),
        "windows": windows,
        "stability_all_windows": pooled(results, settings.seed + len(windows)),
    }


def run_stability_rerank(
    out: str | Path,
    settings: RerankSettings = RerankSettings(),
    *,
    draws: Sequence[int] = range(5),
    windows: Sequence[GapWindow] = (GapWindow(4.0), GapWindow(2.0, 3.0)),
    executor: Executor | ExecutorSettings | None = None,
    references: RerankReferences | None = None,
    known: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """:func:`rerank_window` for every draw and window (finished ones reused), then :func:`summarize_rerank`.

    The relaxations of every draw and window run on one executor (opened here when
    given as settings, started at the first relaxation that is not cached).

    Returns:
        The summary, with ``results`` (one dict per draw and window).
    """
    from gapforge.executor import ExecutorSettings, choose_executor
    from gapforge.executor.engine import open_executor

    out = Path(out)
    if known is None:
        known = build_known(out / "work" / "known.parquet")
    todo = [(d, w) for d in draws for w in windows]
    done = []
    for d, w in todo:
        p = _rerank_path(out, d, w)
        if p.is_file() and json.loads(p.read_text()).get("settings") == settings.per_window():
            done.append((d, w))
    refs = references
    if refs is None and len(done) < len(todo):
        refs = RerankReferences.load()
    where = choose_executor(executor)
    if isinstance(where, ExecutorSettings):
        opened = open_executor(where, deferred=True, make_current=False)
    else:
        opened = contextlib.nullcontext(where)
    results = []
    with opened as ex:
        for d, w in todo:
            results.append(rerank_window(out, d, w, settings, references=refs, executor=ex, known=known))
    summary = summarize_rerank(results, settings)
    summary["results"] = results
    return summary


def _fmt_ms(d: dict[str, float], fmt: str = ".2f") -> str:
    if not np.isfinite(d["mean"]):
        return "-"
    return f"{d['mean']:{fmt}}" if not np.isfinite(d["sd"]) else f"{d['mean']:{fmt}} ± {d['sd']:{fmt}}"


def _sd_text(sd: float) -> str:
    return f" ± {sd:.2f}" if np.isfinite(sd) else ""


def render_rerank_markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    """The re-ranking measure as markdown: hits@k of the three orders, the paired difference, stability."""
    s = summary["settings"]
    lines = [
        "# Does the stability stage earn its place? Re-ranking the screen's top by P(in window) x P(stable)",
        "",
        f"- command: `{meta.get('command', '')}`",
        f"- date: {meta.get('date', '')}; wall time of this call: "
        f"{meta.get('wall_minutes', float('nan')):.1f} min; machine: {meta.get('machine', '')}",
        f"- load: {meta.get('uptime_start', '')} (start) / {meta.get('uptime_end', '')} (end)",
        f"- settings: top {s['n_candidates']} of the screen per draw and window, "
        f"{s['templates']} template(s) per candidate, CHGNet {s['relax_steps']} FIRE steps at fmax "
        f"{s['fmax']} eV/Å; energy above hull "
        "against every known phase except the candidate's own formula; final order = "
        "`rank_discoveries` (discover's)",
        "",
        "Hit: a held-out material with its PBE gap in the window; exists: any held-out material. "
        "Random: the exact expectation of a random order of the same top-N.",
        "",
        "| target | draws | order | " + " | ".join(f"hits@{k}" for k in s["ks"]) + " | "
        + " | ".join(f"exists@{k}" for k in s["ks"]) + " |",
        "|---|---|---|" + "---|" * (2 * len(s["ks"])),
    ]  # fmt: skip
    for w in summary["windows"]:
        for order in RERANK_ORDERS:
            cells = [_fmt_ms(w[f"{order}_hits@{k}"]) for k in s["ks"]]
            cells += [_fmt_ms(w[f"{order}_exists@{k}"]) for k in s["ks"]]
            lines.append(f"| {w['target']} | {len(w['draws'])} | {order} | " + " | ".join(cells) + " |")
    lines += ["", "## Final − screen, paired per draw", ""]
    for w in summary["windows"]:
        for what in ("hits", "exists"):
            parts = []
            for k in s["ks"]:
                d = w[f"final_minus_screen_{what}@{k}"]
                parts.append(
                    f"@{k}: {d['mean']:+.2f}{_sd_text(d['sd'])} "
                    f"(ahead {d['ahead']}, behind {d['behind']}; "
                    f"per draw {', '.join(f'{x:+d}' for x in d['per_draw'])})"
                )
            lines.append(f"- {w['target']}, {what}: " + "; ".join(parts))
    lines += [
        "",
        "## Stability of held-out materials vs other candidates (pooled over draws)",
        "",
        "ROC-AUC of −e_above_hull, compounds with an energy above hull; 95 % bootstrap interval "
        "(positives and negatives resampled separately).",
        "",
        "| target | held-out + other | pairs | ROC-AUC [95 %] | median e_hull held-out / other (eV/atom) "
        "| within 0.1 eV/atom: held-out | other |",
        "|---|---|---|---|---|---|---|",
    ]
    for target, st in [(w["target"], w["stability"]) for w in summary["windows"]] + [
        ("both windows", summary["stability_all_windows"])
    ]:
        lo, hi = st["roc_auc_ci95"]
        lines.append(
            f"| {target} | {st['n_positive']} + {st['n_negative']} | {st['n_pairs']} | "
            f"{st['roc_auc']:.3f} [{lo:.3f}, {hi:.3f}] | "
            f"{st['median_e_above_hull_held_out']:+.3f} / {st['median_e_above_hull_other']:+.3f} | "
            f"{st['held_out_within']}/{st['n_held_out_with_e_above_hull']} "
            f"({100 * st['share_within_held_out']:.0f} %) | "
            f"{st['other_within']}/{st['n_other_with_e_above_hull']} "
            f"({100 * st['share_within_other']:.0f} %) |"
        )
    lines += ["", "## Per draw", ""]
    lines += [
        "| draw | target | held-out in top-N (hits) | relaxed | screen hits@10 | final hits@10 "
        "| final top 5 (held-out in bold) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summary.get("results", []):
        top5 = sorted(r["rows"], key=lambda x: x[FINAL_RANK])[:5]
        names = ", ".join(f"**{x[C.FORMULA]}**" if x[HELD_OUT] else x[C.FORMULA] for x in top5)
        lines.append(
            f"| {r['draw']} | {r['target']} | {r['n_exists']} ({r['n_hits']}) | {r['n_relaxed']}/{r['n']} | "
            f"{r.get('screen_hits@10', '-')} | {r.get('final_hits@10', '-')} | {names} |"
        )
    lines.append("")
    return "\n".join(lines)


def collect_runs(out: str | Path) -> pd.DataFrame:
    """Every per-run JSON file under ``OUT/runs`` as one table."""
    files = sorted(Path(out, "runs").glob("draw*_*.json"))
    rows = [json.loads(p.read_text()) for p in files if not p.name.endswith("_info.json")]
    return pd.DataFrame(rows)


METRICS = (
    "precision@10", "precision@50", "precision@100", "ef@10", "ef@100", "recall@100", "pool_recall",
    "base_rate", "hits@100", "exists@100",
)  # fmt: skip


def aggregate(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over draws per (target, variant)."""
    out = []
    if not len(rows):
        return pd.DataFrame()
    for (target, variant), g in rows.groupby(["target", "variant"], sort=False):
        r: dict[str, Any] = {"target": target, "variant": variant, "draws": len(g)}
        for m in METRICS:
            v = pd.to_numeric(g[m], errors="coerce")
            r[f"{m}_mean"] = float(v.mean())
            r[f"{m}_sd"] = float(v.std(ddof=1)) if v.notna().sum() > 1 else float("nan")
        out.append(r)
    table = pd.DataFrame(out)
    table["_o"] = table["variant"].map({v: i for i, v in enumerate(VARIANTS)})
    return table.sort_values(["target", "_o"]).drop(columns="_o").reset_index(drop=True)


def _pm(row: pd.Series, m: str, fmt: str) -> str:
    mean, sd = row[f"{m}_mean"], row[f"{m}_sd"]
    if pd.isna(mean):
        return "-"
    return f"{mean:{fmt}}" if pd.isna(sd) else f"{mean:{fmt}} ± {sd:{fmt}}"


def render_markdown(table: pd.DataFrame, rows: pd.DataFrame, meta: dict[str, Any]) -> str:
    """The results table (mean ± sd over draws) with the settings and the per-draw facts."""
    lines = [
        "# Rediscovery benchmark (mean ± sd over hold-out draws)",
        "",
        f"- command: `{meta.get('command', '')}`",
        f"- settings: {meta.get('settings')}",
        f"- draws done: {meta.get('draws_done')}; "
        f"task time of the draws (summed over tasks, which may run side by side): "
        f"{meta.get('task_minutes', 0):.1f} min",
        "",
        "| target | variant | draws | P@10 | P@50 | P@100 | EF@10 | EF@100 | recall@100 | pool recall "
        "| base rate (%) | hits@100 | exists@100 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        lines.append(
            f"| {r['target']} | {r['variant']} | {r['draws']} | {_pm(r, 'precision@10', '.2f')} | "
            f"{_pm(r, 'precision@50', '.3f')} | {_pm(r, 'precision@100', '.3f')} | "
            f"{_pm(r, 'ef@10', '.1f')} | "
            f"{_pm(r, 'ef@100', '.1f')} | {_pm(r, 'recall@100', '.3f')} | {_pm(r, 'pool_recall', '.2f')} | "
            f"{100 * r['base_rate_mean']:.3f} | {_pm(r, 'hits@100', '.1f')} | {_pm(r, 'exists@100', '.1f')} |"
        )
    if len(rows):
        lines += ["", "## Campaign vs random labels (P@100 per draw)", ""]
        for target, g in rows.groupby("target", sort=False):
            a = g[g["variant"] == "campaign"].set_index("draw")["precision@100"]
            b = g[g["variant"] == "random-labels"].set_index("draw")["precision@100"]
            both = a.index.intersection(b.index)
            if len(both):
                diff = (a[both] - b[both]).to_numpy()
                lines.append(
                    f"- {target}: campaign − random labels = {diff.mean():+.3f} ± "
                    f"{diff.std(ddof=1) if len(diff) > 1 else float('nan'):.3f} (P@100; "
                    f"campaign ahead in {(diff > 0).sum()}/{len(diff)} draws, behind in {(diff < 0).sum()})"
                )
    stab = meta.get("stability") or []
    if stab:
        lines += ["", "## Stability: energy above hull of held-out materials vs other candidates", ""]
        lines.append(
            "Hull: every known phase except the candidate's own formula (leave-one-formula-out); "
            "the last columns use the hull without the held-out systems, which puts every held-out "
            "material below it by construction (not a measure)."
        )
        lines.append("")
        lines.append(
            "| draw | target | held-out + other (compounds) | pairs | ROC-AUC "
            "| median e_hull held-out / other (eV/atom) | ROC-AUC, system-less hull | its medians |"
        )
        lines.append("|---|---|---|---|---|---|---|---|")
        for r in stab:
            if "n_positive" not in r:  # a file written before the leave-one-formula-out hull
                continue
            lines.append(
                f"| {r['draw']} | {r['target']} | {r['n_positive']} + {r['n_negative']} | {r['n_pairs']} | "
                f"{r['roc_auc']:.3f} | "
                f"{r['median_e_above_hull_held_out']:.3f} / {r['median_e_above_hull_other']:.3f} | "
                f"{r['roc_auc_system_hull']:.3f} | "
                f"{r['median_system_hull_held_out']:.3f} / {r['median_system_hull_other']:.3f} |"
            )
    lines.append("")
    return "\n".join(lines)


def write_summary(
    rows: pd.DataFrame, settings: RediscoverySettings, out: Path, meta: dict | None = None
) -> str:
    """Write ``rediscovery.json`` and ``rediscovery.md`` from the per-run rows."""
    infos = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("draw*_info.json"))]
    stability = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("stability_*.json"))]
    meta = {
        "stability": stability,
        "settings": asdict(settings),
        "draws_done": sorted({int(d) for d in rows["draw"]}) if len(rows) else [],
        "task_minutes": sum(i.get("seconds", 0.0) for i in infos) / 60,
        **(meta or {}),
    }
    table = aggregate(rows)
    md = render_markdown(table, rows, meta)
    write_json(
        {**meta, "table": table.to_dict("records"), "draws": infos, "runs": rows.to_dict("records")},
        out / "rediscovery.json",
    )
    write_text(md, out / "rediscovery.md")
    return md


__all__ = [
    "KS",
    "RERANK_KS",
    "RERANK_ORDERS",
    "VARIANTS",
    "DrawModel",
    "ModelResult",
    "ModelTask",
    "RediscoverySettings",
    "RerankReferences",
    "RerankSettings",
    "WindowResult",
    "WindowTask",
    "aggregate",
    "bootstrap_auc",
    "build_known",
    "chemical_system",
    "collect_runs",
    "draw_holdout",
    "held_out_systems",
    "known_fingerprint",
    "model_task",
    "own_formula_left_out",
    "ranking_metrics",
    "render_rerank_markdown",
    "rerank_measure",
    "rerank_window",
    "run_rediscovery",
    "run_stability",
    "run_stability_rerank",
    "screen_top",
    "stability_measure",
    "summarize_rerank",
    "window_key",
    "window_task",
]

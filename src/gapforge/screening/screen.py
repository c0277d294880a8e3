"""The screen: predict band gaps of many formulas and keep those that pass every filter.

Xin et al. screened MATGAN's 1.18 M formulas with their band-gap model and
kept formulas with a predicted gap of at least 6 eV, fewer than 8 atoms and
fewer than 4 elements; SMACT validity and novelty were checked afterwards.
:func:`screen` does all of it in one pass, in batches, and keeps every flag:

``formula, band_gap_mean, band_gap_std, p_in_window, reason, n_atoms,
n_elements, readable, predicted, allowed_elements, in_window, simple,
smact_valid, novel, max_std, candidate, dropped_by, rank``

``dropped_by`` names every filter a formula failed (``""`` for candidates),
and the funnel counts how many formulas each filter removed, in order and
on its own. ``in_window`` asks for the predicted mean inside the
:class:`~gapforge.window.GapWindow`; candidates are ranked by ``p_in_window``,
the probability that the gap lies in the window under the model's normal
predictive distribution (highest first), ties by higher mean for an open
window (nearer the centre for a closed one), then by lower std.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from gapforge import columns as C
from gapforge.encoding import FormulaEncoder, n_atoms, n_elements_of
from gapforge.errors import InputError
from gapforge.io import read_formula_column, table_format, write_json, write_table
from gapforge.screening.filters import is_novel, is_simple, smact_valid
from gapforge.screening.rules import DEFAULT_EXCLUDED_ELEMENTS, check_elements, excluded_counts_mask
from gapforge.screening.validity import SmactConfig
from gapforge.window import GapWindow

logger = logging.getLogger(__name__)

#: Flag columns, in the order the funnel applies them.
FLAGS = (
    "readable",
    "predicted",
    "compound",
    "allowed_elements",
    "in_window",
    "simple",
    "smact_valid",
    "novel",
    "max_std",
)
#: Largest count per element the screen reads (bigger formulas are flagged unreadable).
MAX_COUNT = 64


@dataclass(frozen=True)
class ScreenSettings:
    """What the screen keeps.

    Attributes:
        window: the target band-gap window; a candidate's predicted mean lies in it.
        max_atoms: keep formulas with *fewer* atoms per reduced formula unit.
        max_elements: keep formulas with *fewer* distinct elements.
        require_simple: apply the simplicity rule.
        require_smact: require SMACT validity.
        require_novel: require the formula to be unknown.
        require_compound: require at least two elements (F2 or O2 is no discovery).
        exclude_elements: formulas with any of these elements are dropped (default:
            radioactive elements and noble gases,
            :data:`~gapforge.screening.rules.DEFAULT_EXCLUDED_ELEMENTS`).
        max_std: drop predictions whose standard deviation (eV) exceeds this (``None``: keep all).
        top: candidates kept, best first (``None``: all).
        batch_size: formulas per prediction batch (bounds memory).
        smact: the pinned SMACT settings.
    """

    window: GapWindow = field(default_factory=lambda: GapWindow(6.0))
    max_atoms: int = 8
    max_elements: int = 4
    require_simple: bool = True
    require_smact: bool = True
    require_novel: bool = True
    require_compound: bool = True
    exclude_elements: tuple[str, ...] = DEFAULT_EXCLUDED_ELEMENTS
    max_std: float | None = None
    top: int | None = None
    batch_size: int = 100_000
    smact: SmactConfig = field(default_factory=SmactConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.window, GapWindow):
            raise InputError("the screen's window must be a GapWindow", value=self.window)
        if self.max_atoms < 1 or self.max_elements < 1:
            raise InputError("--max-atoms and --max-elements must be >= 1")
        if self.batch_size < 1:
            raise InputError("--batch-size must be >= 1", value=self.batch_size)
        if self.max_std is not None and not self.max_std > 0:
            raise InputError("max_std must be > 0 eV", value=self.max_std)
        if self.top is not None and self.top < 1:
            raise InputError("top must be >= 1", value=self.top)
        object.__setattr__(self, "exclude_elements", check_elements(self.exclude_elements))

    def required(self) -> tuple[str, ...]:
        """The flags a candidate must have."""
        req = ["readable", "predicted"]
        if self.require_compound:
            req.append("compound")
        if self.exclude_elements:
            req.append("allowed_elements")
        req.append("in_window")
        if self.require_simple:
            req.append("simple")
        if self.require_smact:
            req.append("smact_valid")
        if self.require_novel:
            req.append("novel")
        if self.max_std is not None:
            req.append("max_std")
        return tuple(req)

    def to_dict(self) -> dict:
        """JSON-ready record of the settings (the window as ``gap_min``/``gap_max``)."""
        d = asdict(self)
        d.pop("window")
        d = {**self.window.to_dict(), **d}
        d["exclude_elements"] = list(self.exclude_elements)
        d["smact"] = self.smact.to_dict()
        return d


@dataclass(frozen=True)
class ScreenResult:
    """The output of :func:`screen`.

    Attributes:
        table: every distinct input formula with its prediction and flags, ranked.
        funnel: counts per filter (see :func:`screen`).
        settings: what was applied.
        summary_path: where the funnel JSON was written (file screens only).
    """

    table: pd.DataFrame
    funnel: dict
    settings: ScreenSettings
    summary_path: Path | None = None

    @property
    def candidates(self) -> pd.DataFrame:
        """The rows that passed every required filter, ranked."""
        return self.table[self.table["candidate"]].reset_index(drop=True)

    @property
    def n_candidates(self) -> int:
        """Number of candidates."""
        return int(self.table["candidate"].sum())


def _predict(
    model,
    formulas: np.ndarray,
    counts: np.ndarray,
    elements,
    ok: np.ndarray,
    batch_size: int,
    *,
    executor=None,
    model_ref: str | Path | None = None,
    window: GapWindow | None = None,
):
    """Mean, std, reason and P(gap in ``window``) per row; uses ``predict_counts`` when the model has it.

    P(gap in window) comes from the model's own predictive distribution where it has one
    (``predict_distribution``: the gated, recalibrated distribution of
    :class:`~gapforge.models.metal_gate.GapDistribution`), else it is NaN and the caller
    reads it from a Normal with the predicted mean and std.

    With an executor that is not serial, a ``model_ref`` (the model's
    directory or ``"default"``) and more than one batch, each batch is a task on
    the executor; every worker loads the model once.
    """
    n = len(formulas)
    mean = np.full(n, np.nan)
    std = np.full(n, np.nan)
    reason = np.full(n, "", dtype=object)
    p_win = np.full(n, np.nan)
    rows = np.flatnonzero(ok)
    batches = [rows[lo : lo + batch_size] for lo in range(0, len(rows), batch_size)]
    # one batch gains nothing on a worker (and would start a deferred cluster): predicted here
    if len(batches) > 1 and executor is not None and model_ref is not None and not _in_process(executor):
        import functools

        from gapforge.executor import TaskFailure, run_tasks

        els = tuple(elements)
        items = [BatchInput([str(f) for f in formulas[i]], counts[i], els, window) for i in batches]
        run = run_tasks(
            functools.partial(predict_batch, model_ref=str(model_ref)),
            items,
            executor=executor,
            desc="predict",
            unit="batch",
        )
        for idx, res in zip(batches, run.results, strict=True):
            if isinstance(res, TaskFailure):
                reason[idx] = f"prediction failed: {res.reason}"
                continue
            mean[idx], std[idx], reason[idx] = res.mean, res.std, res.reasons
            if res.p_in_window is not None:
                p_win[idx] = res.p_in_window
        return mean, std, reason, p_win
    from tqdm.auto import tqdm

    for idx in tqdm(batches, desc="predict", disable=None):
        res = _predict_one(
            model, BatchInput([str(f) for f in formulas[idx]], counts[idx], tuple(elements), window)
        )
        mean[idx], std[idx], reason[idx] = res.mean, res.std, res.reasons
        if res.p_in_window is not None:
            p_win[idx] = res.p_in_window
    return mean, std, reason, p_win


@dataclass(frozen=True)
class BatchInput:
    """One prediction task: formulas with their element counts ``(N, E)`` over ``elements``."""

    formulas: list[str]
    counts: np.ndarray
    elements: tuple[str, ...]
    window: GapWindow | None = None


@dataclass(frozen=True)
class BatchPrediction:
    """Predicted gap mean and std (eV), the reason where there is none and P(gap in window), per formula."""

    mean: np.ndarray
    std: np.ndarray
    reasons: np.ndarray
    p_in_window: np.ndarray | None = None


def _predict_one(model, batch: BatchInput) -> BatchPrediction:
    if batch.window is not None and hasattr(model, "predict_distribution"):
        dist = model.predict_distribution(batch.formulas)
        if len(dist) != len(batch.formulas):
            raise InputError(f"the model returned {len(dist)} predictions for {len(batch.formulas)} formulas")
        return BatchPrediction(
            dist.median(),
            dist.reported_std(),
            np.asarray(dist.reasons, dtype=object),
            dist.window_probability(batch.window),
        )
    if hasattr(model, "predict_counts"):
        p = model.predict_counts(batch.counts, list(batch.elements))
        return BatchPrediction(np.asarray(p.mean), np.asarray(p.std), np.asarray(p.reasons, dtype=object))
    table = model.predict(batch.formulas)
    if len(table) != len(batch.formulas):
        raise InputError(f"the model returned {len(table)} predictions for {len(batch.formulas)} formulas")
    return BatchPrediction(
        table[C.BAND_GAP_MEAN].to_numpy(dtype=np.float64),
        table[C.BAND_GAP_STD].to_numpy(dtype=np.float64),
        table[C.REASON].astype(str).to_numpy(dtype=object),
    )


def predict_batch(batch: BatchInput, model_ref: str) -> BatchPrediction:
    """The per-batch task: predict with the model ``model_ref`` (loaded once per process)."""
    return _predict_one(_cached_model(model_ref), batch)


@functools.lru_cache(maxsize=2)
def _cached_model(model_ref: str):
    from gapforge.executor.engine import limit_threads

    limit_threads(1)
    return load_band_gap_model(model_ref)


def _in_process(executor) -> bool:
    from gapforge.executor import ExecutorKind, ExecutorSettings

    settings = executor if isinstance(executor, ExecutorSettings) else getattr(executor, "settings", None)
    return settings is not None and settings.kind is ExecutorKind.SERIAL


def screen(
    formulas: Sequence[str],
    model,
    settings: ScreenSettings | None = None,
    *,
    known: Collection[str] | None = None,
    source: str | Path | None = None,
    executor=None,
    model_ref: str | Path | None = None,
) -> ScreenResult:
    """Predict and filter formulas.

    Args:
        formulas: formula strings (duplicates, by reduced formula, are screened once).
        model: a fitted :class:`~gapforge.models.base.BandGapModel`; one with
            ``predict_counts(counts, elements)`` (the forest) is fed counts directly.
        settings: filters to apply.
        known: reduced formulas that are not novel (default: every Materials
            Project formula, :func:`gapforge.screening.filters.known_formulas`).
        source: input file, named in error messages.
        executor: where prediction batches run (:mod:`gapforge.executor` settings or
            an open executor); ``None`` or serial: in this process.
        model_ref: the model's directory (or ``"default"``), which workers load;
            needed to run batches on an executor.

    Returns:
        A :class:`ScreenResult`. Its funnel holds ``n_input``, ``n_duplicates``,
        ``n_screened``, ``sequential`` (formulas left after each required
        filter, in order), ``removed`` (how many each required filter removed
        in that order), ``fails_alone`` (how many fail each filter on its own)
        and ``n_candidates``.

    Raises:
        InputError: no formula given, or no formula that can be read.
    """
    settings = settings or ScreenSettings()
    start = time.perf_counter()
    formulas = np.asarray([_as_text(f) for f in formulas], dtype=object)
    if len(formulas) == 0:
        raise InputError("no formulas to screen", path=source)
    encoder = FormulaEncoder(n_levels=MAX_COUNT)
    # one row per distinct input text, encoded in blocks (bounded memory)
    texts, first_text = np.unique(formulas.astype(str), return_index=True)
    texts = texts[np.argsort(first_text)]
    step = settings.batch_size
    parts = [encoder.encode(texts[i : i + step]) for i in range(0, len(texts), step)]
    valid = np.concatenate([b.valid for b in parts])
    if not valid.any():
        i = 0
        raise InputError(
            f"no formula could be read (first: {parts[0].reasons[i]})",
            path=source,
            row=i + 1,
            value=formulas[i],
        )
    reduced = np.concatenate([b.reduced for b in parts]).astype(object)
    # then one row per distinct reduced formula (Li2F2 and LiF are the same material)
    key = np.where(valid, reduced, "\x00" + texts.astype(object)).astype(str)
    _, first = np.unique(key, return_index=True)
    first = np.sort(first)
    n_dup = len(formulas) - len(first)
    names = np.where(valid[first], reduced[first], texts[first]).astype(object)
    counts = np.concatenate([b.counts for b in parts])[first]
    readable = valid[first]
    reasons = np.concatenate([b.reasons for b in parts])[first].astype(object)
    del parts

    mean, std, pred_reason, p_in_window = _predict(
        model,
        names,
        counts,
        encoder.elements,
        readable,
        settings.batch_size,
        executor=executor,
        model_ref=model_ref,
        window=settings.window,
    )
    predicted = readable & np.isfinite(mean)
    reasons = np.where(readable & ~predicted & (pred_reason != ""), pred_reason, reasons)
    reasons = np.where(readable & ~predicted & (reasons == ""), "model returned no prediction", reasons)

    t_smact = time.perf_counter()
    window = settings.window
    flags = {
        "readable": readable,
        "predicted": predicted,
        "compound": readable & (n_elements_of(counts) >= 2),
        "allowed_elements": readable
        & ~excluded_counts_mask(counts, encoder.elements, settings.exclude_elements),
        "in_window": window.contains(mean),
        "simple": readable & is_simple(counts, settings.max_atoms, settings.max_elements),
        "smact_valid": readable & smact_valid(counts, encoder.elements, settings.smact),
    }
    with np.errstate(invalid="ignore"):
        flags["max_std"] = predicted & (
            std <= settings.max_std if settings.max_std is not None else np.ones(len(std), dtype=bool)
        )
    t_smact = time.perf_counter() - t_smact
    if known is None:
        from gapforge.screening.filters import known_formulas

        known = known_formulas()
    flags["novel"] = readable & is_novel(names, known)

    required = settings.required()
    candidate = np.ones(len(names), dtype=bool)
    sequential = {}
    removed = {}
    for name in required:
        before = int(candidate.sum())
        candidate &= flags[name]
        sequential[name] = int(candidate.sum())
        removed[name] = before - sequential[name]
    dropped = np.full(len(names), "", dtype=object)
    for name in required:
        fail = ~flags[name]
        dropped[fail] = np.where(dropped[fail] == "", name, dropped[fail] + "," + name)

    table = pd.DataFrame(
        {
            C.FORMULA: pd.Series(names, dtype=object),
            C.BAND_GAP_MEAN: mean,
            C.BAND_GAP_STD: std,
            C.P_IN_WINDOW: np.where(np.isfinite(p_in_window), p_in_window, window.probability(mean, std)),
            C.REASON: pd.Series(reasons, dtype=object).astype(str),
            "n_atoms": n_atoms(counts).astype(np.int64),
            "n_elements": n_elements_of(counts).astype(np.int64),
            **{k: v.astype(bool) for k, v in flags.items()},
            "candidate": candidate,
            "dropped_by": pd.Series(dropped, dtype=object).astype(str),
        }
    )
    table = rank_candidates(table, window, settings.top)
    funnel = {
        "n_input": len(formulas),
        "n_duplicates": int(n_dup),
        "n_screened": len(names),
        "required": list(required),
        "sequential": sequential,
        "removed": removed,
        "fails_alone": {k: int((~v).sum()) for k, v in flags.items()},
        "n_candidates": int(candidate.sum()),
        "n_kept": int(table["candidate"].sum()),
        "seconds": round(time.perf_counter() - start, 2),
        "smact_seconds": round(t_smact, 2),
    }
    logger.info("screened %d formulas: %d candidates", len(names), funnel["n_candidates"])
    return ScreenResult(table, funnel, settings)


def _as_text(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def rank_candidates(table: pd.DataFrame, window: GapWindow, top: int | None = None) -> pd.DataFrame:
    """Order rows, candidates first, by the probability that the gap lies in the window.

    Keys: ``p_in_window`` (highest first), the predicted mean (highest for an open
    window, nearest the centre for a closed one), lower std. The first ``top``
    candidates are numbered 1.. in ``rank`` (0 = not kept).

    Candidates beyond ``top`` stay in the table with ``candidate`` False and
    ``dropped_by`` ``"top"``.
    """
    gap = table[C.BAND_GAP_MEAN].to_numpy(dtype=np.float64)
    score = gap if window.open else -np.abs(gap - window.centre)
    p = table[C.P_IN_WINDOW].to_numpy(dtype=np.float64)
    order = np.lexsort((table[C.BAND_GAP_STD].to_numpy(), -np.nan_to_num(score, nan=-np.inf),
                        -np.nan_to_num(p, nan=-1.0), ~table["candidate"].to_numpy()))  # fmt: skip
    table = table.iloc[order].reset_index(drop=True)
    n_c = int(table["candidate"].sum())
    if top is not None and n_c > top:
        cut = np.arange(len(table)) >= top
        over = cut & table["candidate"].to_numpy()
        table.loc[over, "dropped_by"] = "top"
        table.loc[over, "candidate"] = False
        n_c = top
    rank = np.zeros(len(table), dtype=np.int64)
    rank[:n_c] = np.arange(1, n_c + 1)
    table["rank"] = rank  # 0 = not a candidate
    return table


def screened_path(out: str | Path) -> Path:
    """Where :func:`screen_file` writes every screened row (``<out stem>.screened<suffix>``)."""
    out = Path(out)
    return out.with_name(f"{_stem(out)}.screened{_suffix(out)}")


def funnel_path(out: str | Path) -> Path:
    """Where :func:`screen_file` writes the funnel (``<out stem>.funnel.json``)."""
    out = Path(out)
    return out.with_name(f"{_stem(out)}.funnel.json")


def _suffix(out: Path) -> str:
    return ".csv.gz" if out.name.lower().endswith(".csv.gz") else out.suffix


def _stem(out: Path) -> str:
    return out.name[: -len(_suffix(out))] if _suffix(out) else out.name


def screen_file(
    input_path: str | Path,
    out: str | Path,
    *,
    model: str | Path | None = "default",
    settings: ScreenSettings | None = None,
    known: Collection[str] | None = None,
    overwrite: bool = False,
    fidelity: str = "pbe",
    executor=None,
) -> ScreenResult:
    """``gapforge screen``: screen a formula table and write the results.

    Writes three files: ``out`` (the candidates, ranked, every flag kept; an
    empty table with headers when nothing passes), ``<stem>.screened<ext>``
    (every screened formula with its flags and ``dropped_by``) and
    ``<stem>.funnel.json`` (settings, model and the funnel).

    Args:
        input_path: CSV/Parquet table with a formula column (``formula``,
            ``composition`` or ``pretty_formula``).
        out: candidate table to write (CSV or Parquet).
        model: band-gap model directory or ``"default"`` (the shipped forest).
        settings: filters.
        known: reduced formulas that are not novel (default: the MP formulas).
        overwrite: replace existing outputs.
        fidelity: ``pbe`` (default: ``model``'s PBE gaps) or ``experiment``: the gaps
            of the oracle's experimental head (``model`` then names an oracle directory
            or ``"default"`` for the shipped oracle; Roost + head, ~10x slower than the forest).
        executor: where prediction batches run (default: this process; PBE fidelity only).

    Raises:
        InputError: unreadable/empty input, no formula column, outputs exist.
        ModelError: the model cannot be loaded.
    """
    out = Path(out)
    table_format(out)  # fail on a bad output name before any work
    for path in (out, screened_path(out), funnel_path(out)):
        if path.exists() and not overwrite:
            raise InputError("output exists (use --overwrite)", path=path)
    settings = settings or ScreenSettings()
    values = read_formula_column(input_path)
    if fidelity == "pbe":
        fitted = load_band_gap_model(model)
    else:
        from gapforge.models.registry import load_predictor

        fitted = load_predictor(model, kind="oracle", fidelity=fidelity)
    result = screen(
        values,
        fitted,
        settings,
        known=known,
        source=input_path,
        # workers load the model by name: only the PBE model loads that way
        executor=executor if fidelity == "pbe" else None,
        model_ref=model,
    )
    write_table(result.table, screened_path(out))
    write_table(result.candidates, out)
    summary = {
        "input": str(input_path),
        "model": str(model),
        "model_kind": getattr(fitted, "kind", type(fitted).__name__),
        "fidelity": fidelity,
        "settings": settings.to_dict(),
        "funnel": result.funnel,
        "outputs": {"candidates": str(out), "screened": str(screened_path(out))},
    }
    write_json(summary, funnel_path(out))
    if result.n_candidates == 0:
        logger.warning("no formula passed every filter; %s is an empty table with headers", out)
    return ScreenResult(result.table, result.funnel, settings, funnel_path(out))


def load_band_gap_model(model: str | Path | None):
    """The screening model: a saved model directory, or the shipped forest for ``"default"``."""
    from gapforge.models.registry import load_model

    return load_model(model, kind="forest")


__all__ = [
    "FLAGS",
    "ScreenResult",
    "ScreenSettings",
    "funnel_path",
    "load_band_gap_model",
    "rank_candidates",
    "read_formula_column",
    "screen",
    "screen_file",
    "screened_path",
]

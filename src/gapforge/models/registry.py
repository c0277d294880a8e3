"""Find, load, train and evaluate band-gap models by name.

* :func:`load_model` turns a ``--model`` value (directory, ``"default"`` or
  ``None``) into a fitted :class:`~gapforge.models.base.BandGapModel`, dispatching
  on the ``kind`` in its ``model.json`` (``roost`` or ``forest``).
* :func:`train_model` is ``gapforge train oracle|forest``: load a labelled
  set, hold out a named set, split, fit, score and save with the full record.
* :func:`evaluate_model` is ``gapforge evaluate``; :func:`predict_formulas`
  and :func:`predict_file` are ``gapforge predict``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gapforge import columns as C
from gapforge.errors import InputError, ModelError
from gapforge.models.base import MODEL_CARD_FILE, BandGapModel, resolve_model_dir
from gapforge.models.metrics import RegressionMetrics, parity_plot, regression_metrics

log = logging.getLogger(__name__)

#: role name -> directory name of the shipped default under gapforge/pretrained/
DEFAULT_MODELS = {"oracle": "oracle", "roost": "oracle", "forest": "forest"}
#: names of other shipped models ``--model NAME`` accepts (``oracle-exp1``: the paper-setting
#: oracle trained on mp-bandgap only, the default before issue 18; ``reproduce table1`` uses it)
SHIPPED_MODELS = {"oracle-exp1": "oracle_exp1"}


def _model_classes() -> dict[str, Callable[[], type]]:
    def roost() -> type:
        from gapforge.models.roost import RoostEnsemble

        return RoostEnsemble

    def forest() -> type:
        from gapforge.models.forest import ForestModel

        return ForestModel

    return {"roost": roost, "forest": forest}


def read_model_card(directory: str | Path) -> dict[str, Any]:
    """Read and check ``model.json`` of a model directory.

    Raises:
        ModelError: unreadable JSON, or no ``kind``/``params``.
    """
    path = Path(directory) / MODEL_CARD_FILE
    try:
        card = json.loads(path.read_text())
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model card ({exc.strerror})") from exc
    except ValueError as exc:
        raise ModelError(f"{path}: model card is not valid JSON ({exc})") from exc
    if not isinstance(card, dict) or "kind" not in card or "params" not in card:
        raise ModelError(f"{path}: model card lacks 'kind' or 'params' (partial or foreign directory)")
    return card


def load_model(model: str | Path | None = None, kind: str = "oracle") -> BandGapModel:
    """Load a fitted band-gap model.

    Args:
        model: a model directory, or ``"default"``/``None`` for the model
            shipped with gapforge for ``kind``.
        kind: which shipped default to use: ``"oracle"`` (Roost) or ``"forest"``.
            A directory given in ``model`` is loaded whatever its kind.

    Raises:
        ModelError: missing, partial or incompatible directory, or not a band-gap model.
    """
    if kind not in DEFAULT_MODELS:
        raise ModelError(f"unknown model kind {kind!r} (use {', '.join(sorted(DEFAULT_MODELS))})")
    directory = model_dir(model, kind)
    card = read_model_card(directory)
    classes = _model_classes()
    if card["kind"] not in classes:
        raise ModelError(
            f"{directory}: a {card['kind']!r} model, not a band-gap model (expected {' or '.join(classes)})"
        )
    cls = classes[card["kind"]]()
    return cls.load(directory)


def model_dir(model: str | Path | None, kind: str = "oracle") -> Path:
    """The directory of a ``--model`` value: a path, ``"default"`` or a name in :data:`SHIPPED_MODELS`."""
    from gapforge.models.base import pretrained_dir

    if isinstance(model, str) and model in SHIPPED_MODELS and not Path(model).exists():
        return pretrained_dir(SHIPPED_MODELS[model])
    return resolve_model_dir(model, DEFAULT_MODELS[kind])


def load_predictor(model: str | Path | None = None, kind: str = "oracle", fidelity: str = "pbe") -> Any:
    """A band-gap model for ``fidelity``.

    ``pbe`` gives the model itself; ``experiment`` the oracle with the experimental
    head stored beside it (``<model>/experiment``, :class:`~gapforge.models.experiment.ExperimentPredictor`).

    Raises:
        ModelError: unknown fidelity, or no experimental head in the model's directory.
    """
    from gapforge.models.experiment import ExperimentHead, ExperimentPredictor, Fidelity, head_dir

    try:
        fid = Fidelity(fidelity)
    except ValueError:
        raise ModelError(f"unknown fidelity {fidelity!r} (use {' or '.join(Fidelity)})") from None
    pbe = load_model(model, kind)
    if fid is Fidelity.PBE:
        return pbe
    directory = head_dir(model_dir(model, kind))
    if not (directory / MODEL_CARD_FILE).is_file():
        raise ModelError(
            f"{directory.parent}: no experimental-gap head ({directory.name}/ is missing); "
            "--fidelity experiment needs an oracle shipped or trained with one"
        )
    return ExperimentPredictor(pbe, ExperimentHead.load(directory))


# -- prediction ----------------------------------------------------------------------------
def predict_formulas(
    formulas: Sequence[str], model: str | Path | None = None, kind: str = "oracle", fidelity: str = "pbe"
) -> pd.DataFrame:
    """Predict band gaps of formulas with a saved or shipped model.

    Args:
        formulas: formula strings.
        model: a model directory, ``"default"``/``None`` or a shipped name (``oracle-exp1``).
        kind: which shipped default ``model="default"`` means (``oracle`` or ``forest``).
        fidelity: ``pbe`` (the model's PBE gap, default) or ``experiment`` (the
            oracle's experimental-gap head).

    Returns:
        ``formula``, ``band_gap_mean``, ``band_gap_std`` (eV), ``p_metal`` (NaN for a
        model without a metal gate), ``fidelity``, ``reason``.
    """
    out = load_predictor(model, kind, fidelity).predict(list(formulas))
    if C.P_METAL not in out.columns:
        out.insert(3, C.P_METAL, np.nan)
    out.insert(4, C.FIDELITY, str(fidelity))
    return out


def predict_file(
    input_path: str | Path,
    output_path: str | Path,
    model: str | Path | None = None,
    kind: str = "oracle",
    fidelity: str = "pbe",
) -> pd.DataFrame:
    """Predict every formula of a CSV/Parquet table and write the predictions atomically.

    The formula column is found under ``formula``, ``composition`` or
    ``pretty_formula`` (see :data:`gapforge.columns.FORMULA_ALIASES`).

    Raises:
        InputError: unreadable or empty input, no formula column.
    """
    from gapforge.io import find_column, read_table, table_format, write_table

    table_format(output_path)  # fail on a bad output name before any work
    df = read_table(input_path)
    if len(df) == 0:
        raise InputError("no data rows", path=input_path)
    col = find_column(df, C.FORMULA_ALIASES, what="formula", path=input_path)
    formulas = ["" if pd.isna(v) else str(v) for v in df[col].tolist()]
    out = predict_formulas(formulas, model, kind, fidelity)
    write_table(out, output_path)
    return out


# -- evaluation ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Evaluation:
    """The result of scoring a model on a labelled table."""

    metrics: RegressionMetrics
    predictions: pd.DataFrame  # formula, band_gap, band_gap_mean, band_gap_std, reason
    plot: Path | None = None


def evaluate_on(model: BandGapModel, df: pd.DataFrame) -> Evaluation:
    """Score a fitted model on a labelled table (``formula``, ``band_gap``)."""
    pred = model.predict(df[C.FORMULA].tolist())
    table = pd.DataFrame(
        {
            C.FORMULA: df[C.FORMULA].to_numpy(),
            C.BAND_GAP: df[C.BAND_GAP].to_numpy(dtype=np.float64),
            C.BAND_GAP_MEAN: pred[C.BAND_GAP_MEAN].to_numpy(),
            C.BAND_GAP_STD: pred[C.BAND_GAP_STD].to_numpy(),
            C.REASON: pred[C.REASON].to_numpy(),
        }
    )
    metrics = regression_metrics(table[C.BAND_GAP], table[C.BAND_GAP_MEAN], table[C.BAND_GAP_STD])
    return Evaluation(metrics, table)


def evaluate_model(
    model: str | Path | None, data: str | Path, *, out: str | Path | None = None, kind: str = "oracle"
) -> Evaluation:
    """Score a saved or shipped model on a named dataset or labelled file.

    Args:
        model: model directory or ``"default"``.
        data: dataset name (``test-500``, ``mp-bandgap``, ...) or a labelled table path.
        out: parity plot PNG to write (optional).
        kind: shipped default to use when ``model`` is ``"default"``.
    """
    from gapforge.data import load_dataset

    fitted = load_model(model, kind)
    df = load_dataset(data)
    ev = evaluate_on(fitted, df)
    plot = None
    if out is not None:
        name = Path(str(model)).name if model not in (None, "default") else f"default {kind}"
        plot = parity_plot(
            ev.predictions[C.BAND_GAP],
            ev.predictions[C.BAND_GAP_MEAN],
            out,
            y_std=ev.predictions[C.BAND_GAP_STD],
            title=f"{name} on {Path(str(data)).name}",
            metrics=ev.metrics,
        )
    return Evaluation(ev.metrics, ev.predictions, plot)


# -- training ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_model` produced."""

    directory: Path
    kind: str
    seconds: float
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)


def make_model(kind: str, seed: int = 0, **params: Any) -> BandGapModel:
    """A new, unfitted model of ``kind`` (``oracle``/``roost`` or ``forest``)."""
    if kind in ("oracle", "roost"):
        from gapforge.models.roost import RoostEnsemble

        return RoostEnsemble(seed=seed, **params)
    if kind == "forest":
        from gapforge.models.forest import ForestModel

        return ForestModel(random_state=seed, **params)
    raise ModelError(f"unknown model kind {kind!r} (use oracle or forest)")


def fit_on_split(model: Any, split: Any) -> Any:
    """Fit ``model`` on ``split.train``; Roost also gets ``split.val`` for early stopping."""
    if model.kind == "roost" and len(split.val):
        return model.fit(
            split.train[C.FORMULA].tolist(),
            split.train[C.BAND_GAP].to_numpy(),
            val_formulas=split.val[C.FORMULA].tolist(),
            val_band_gaps=split.val[C.BAND_GAP].to_numpy(),
        )
    return model.fit(split.train[C.FORMULA].tolist(), split.train[C.BAND_GAP].to_numpy())


def train_model(
    kind: str,
    data: str | Path,
    out: str | Path,
    *,
    seed: int = 0,
    holdout: Sequence[str] = (),
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    overwrite: bool = False,
    params: dict[str, Any] | None = None,
    command: str | None = None,
) -> TrainResult:
    """Train, score and save a band-gap model.

    Steps: load ``data``; drop every formula of the ``holdout`` datasets
    (e.g. ``test-500``, which is a subset of ``mp-bandgap``) so they stay
    unseen; split the rest ``fractions`` (train/validation/test, seeded);
    fit on train (Roost early-stops on validation); score validation, test
    and each hold-out set; save to ``out`` with the seed, split, data
    fingerprint, metrics, timing and versions in ``model.json``.

    The directory is written to a temporary sibling and renamed into place,
    so an interrupted run never leaves a partial model at ``out``.

    Raises:
        InputError: ``out`` exists and ``overwrite`` is False, or bad data.
    """
    from gapforge.data import fingerprint, load_dataset, split_dataset

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError("output directory exists and is not empty (use --overwrite)", path=out)
    df = load_dataset(data)
    held: dict[str, pd.DataFrame] = {}
    for name in holdout:
        held[name] = load_dataset(name)
        before = len(df)
        df = df[~df[C.FORMULA].isin(set(held[name][C.FORMULA]))].reset_index(drop=True)
        log.info("held out %d formulas of %s", before - len(df), name)
    split = split_dataset(df, fractions, seed)
    if len(split.train) == 0:
        raise InputError("no training rows after the split", path=str(data))
    model = make_model(kind, seed, **(params or {}))
    log.info("training %s on %d formulas (val %d, test %d)", kind, *split.sizes().values())
    t0 = time.perf_counter()
    fit_on_split(model, split)
    seconds = time.perf_counter() - t0
    metrics: dict[str, dict[str, Any]] = {}
    for part, table in (("validation", split.val), ("test", split.test), *held.items()):
        if len(table):
            metrics[part] = evaluate_on(model, table).metrics.to_dict()
            log.info("%s: %s", part, metrics[part])
    meta = {
        "seed": seed,
        "data": str(data),
        "data_fingerprint": fingerprint(df),
        "train_fingerprint": fingerprint(split.train),
        "holdout": list(holdout),
        "split_fractions": list(fractions),
        "split_sizes": split.sizes(),
        "train_seconds": round(seconds, 1),
        "torch_threads": _torch_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "metrics": metrics,
        "command": command,
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save(tmp, metadata=meta)
        tmp.chmod(0o755)  # mkdtemp/mkstemp create owner-only entries; models are shared/package data
        for f in tmp.iterdir():
            f.chmod(0o644)
        if out.exists():
            shutil.rmtree(out)
        tmp.replace(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return TrainResult(out, model.kind, seconds, metrics, split.sizes())


def _torch_threads() -> int | None:
    try:
        import torch

        return torch.get_num_threads()
    except ImportError:  # pragma: no cover
        return None


__all__ = [
    "DEFAULT_MODELS",
    "Evaluation",
    "TrainResult",
    "evaluate_model",
    "evaluate_on",
    "load_model",
    "load_predictor",
    "make_model",
    "model_dir",
    "predict_file",
    "predict_formulas",
    "read_model_card",
    "train_model",
]

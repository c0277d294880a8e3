"""What every formula generator shares: training formulas, batch de-duplication, quality, saving.

The generators (:class:`gapforge.models.gan.FormulaGAN`, the MATGAN-style GAN,
and :class:`gapforge.models.formula_rnn.FormulaRNN`, the autoregressive one)
differ in how they draw count vectors; everything around that lives here:

* :func:`training_counts` - the distinct encodable training formulas (optionally
  only the SMACT-valid ones, as MATGAN trained on);
* :func:`collect_distinct` - turn a generator's decoded batches into one row per
  distinct formula with bounded memory (:class:`GeneratedFormulas`);
* :func:`generation_quality` - decodable, unique, novel, SMACT-valid and the
  yield the paper's screen can use (:class:`GenerationQuality`);
* :func:`prepare_generator_training` / :func:`save_trained_generator` - the
  ``gapforge train gan|rnn`` bookkeeping around ``fit``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gapforge import columns as C
from gapforge.encoding import FormulaEncoder, n_atoms, n_elements_of
from gapforge.errors import InputError
from gapforge.models.base import MODEL_CARD_FILE

logger = logging.getLogger(__name__)

#: training sets a generator can use: every encodable formula, or the SMACT-valid ones
TRAIN_SETS = ("all", "smact-valid")


@dataclass(frozen=True)
class GenerationStats:
    """Counts from one :meth:`FormulaGAN.generate` call.

    Attributes:
        n_samples: samples drawn from the generator.
        n_decodable: samples that decode to a formula.
        n_unique: distinct formulas among the decodable ones.
        seconds: wall time of generation + decoding + de-duplication.
    """

    n_samples: int
    n_decodable: int
    n_unique: int
    seconds: float

    @property
    def decodable_fraction(self) -> float:
        """Share of samples that decode to a formula."""
        return self.n_decodable / self.n_samples if self.n_samples else math.nan

    @property
    def unique_fraction(self) -> float:
        """Distinct formulas per decodable sample."""
        return self.n_unique / self.n_decodable if self.n_decodable else math.nan

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return {
            **asdict(self),
            "decodable_fraction": self.decodable_fraction,
            "unique_fraction": self.unique_fraction,
        }


@dataclass(frozen=True)
class GeneratedFormulas:
    """Distinct formulas from a generator, with their counts.

    Attributes:
        table: ``formula``, ``n_generated`` (times drawn), ``n_atoms``,
            ``n_elements``; one row per distinct formula, in order of first draw.
        counts: ``(n_unique, E)`` int8 reduced counts, aligned with ``table``.
        stats: the sample / decodable / unique counts.
    """

    table: pd.DataFrame
    counts: np.ndarray
    stats: GenerationStats


def training_counts(
    formulas: Sequence[str], encoder: FormulaEncoder, train_set: str, *, label: str
) -> np.ndarray:
    """Distinct encodable counts of ``formulas`` a generator trains on (``train_set``: all or SMACT-valid).

    Raises:
        InputError: nothing encodable, or nothing left after the SMACT filter.
    """
    batch = encoder.encode(formulas)
    counts = batch.counts[batch.valid]
    if len(counts) == 0:
        raise InputError(f"no encodable formula to train the {label} on")
    counts = np.unique(counts, axis=0)
    n_dropped = int((~batch.valid).sum())
    if n_dropped:
        logger.info("%s: %d of %d formulas not encodable, dropped", label, n_dropped, len(batch))
    if train_set == "smact-valid":
        from gapforge.screening.validity import SmactChecker

        ok = SmactChecker(encoder.elements).check_counts(counts)
        logger.info("%s: %d of %d distinct formulas pass SMACT, training on those", label, ok.sum(), len(ok))
        counts = counts[ok]
    if len(counts) == 0:
        raise InputError("no training formula left after the SMACT filter")
    return counts


def collect_distinct(
    batches: Iterator[tuple[np.ndarray, np.ndarray]],
    n: int,
    encoder: FormulaEncoder,
    *,
    progress: bool | None = None,
) -> GeneratedFormulas:
    """De-duplicate a generator's decoded batches into a :class:`GeneratedFormulas`.

    Memory stays bounded by one batch plus the distinct formulas found so far.

    Args:
        batches: ``(counts (m, E), valid (m,))`` per batch, reduced counts.
        n: total samples the batches hold (for the progress bar and the stats).
        encoder: the codec of the counts.
        progress: show a progress bar (``None``: only on a terminal).

    Raises:
        InputError: ``n`` is negative.
    """
    if n < 0:
        raise InputError("number of samples must be >= 0", value=n)
    from tqdm.auto import tqdm

    start = time.perf_counter()
    seen: dict[str, int] = {}
    kept: list[np.ndarray] = []
    n_dec = 0
    width = encoder.n_elements
    bar = tqdm(total=n, desc="generate", unit="formula", disable=None if progress is None else not progress)
    try:
        for counts, valid in batches:
            bar.update(len(valid))
            good = counts[valid].astype(np.int8)
            n_dec += len(good)
            if not len(good):
                continue
            keys = np.ascontiguousarray(good).view(np.dtype((np.void, width))).ravel()
            _, first, times = np.unique(keys, return_index=True, return_counts=True)
            order = np.sort(first)
            times = times[np.argsort(first)]
            uniq = good[order]
            names = encoder.counts_to_formulas(uniq)
            new_rows = []
            for i, (name, t) in enumerate(zip(names, times.tolist(), strict=True)):
                if name in seen:
                    seen[name] += t
                else:
                    seen[name] = t
                    new_rows.append(i)
            kept.append(uniq[new_rows])
    finally:
        bar.close()
    counts_all = np.concatenate(kept) if kept else np.zeros((0, width), np.int8)
    table = pd.DataFrame(
        {
            C.FORMULA: pd.Series(list(seen.keys()), dtype=object),
            "n_generated": np.fromiter(seen.values(), dtype=np.int64, count=len(seen)),
            "n_atoms": n_atoms(counts_all).astype(np.int64),
            "n_elements": n_elements_of(counts_all).astype(np.int64),
        }
    )
    stats = GenerationStats(n, n_dec, len(table), time.perf_counter() - start)
    logger.info(
        "generated %d samples: %d decodable, %d distinct (%.1f s)", n, n_dec, len(table), stats.seconds
    )
    return GeneratedFormulas(table, counts_all, stats)


@dataclass(frozen=True)
class GenerationQuality:
    """How good a generator's samples are (MATGAN's measures and distribution checks).

    Attributes:
        n_samples: samples drawn.
        decodable: share of samples that decode to a formula.
        unique: distinct formulas per decodable sample.
        novel: share of distinct formulas not among the known formulas.
        smact_valid: share of distinct formulas passing SMACT (charge neutral +
            electronegativity balanced).
        smact_valid_samples: the same over all decodable samples (duplicates
            counted, MATGAN's convention).
        novel_of_valid: share of the SMACT-valid distinct formulas that are novel.
        n_distinct: distinct formulas.
        n_valid_novel: distinct formulas that are SMACT-valid and novel.
        n_valid_novel_simple: those of them that pass the paper's simplicity rule
            (fewer than 8 atoms, fewer than 4 elements): what its screen can use.
        element_freq_corr: Pearson r between per-element occurrence frequencies
            of generated and training formulas.
        element_freq_tvd: total-variation distance between the two element
            distributions (0 = identical, 1 = disjoint).
        n_elements_hist: share of distinct formulas with 1, 2, ... elements,
            generated vs training.
        count_hist: share of element counts equal to 1..L, generated vs training.
    """

    n_samples: int
    decodable: float
    unique: float
    novel: float
    smact_valid: float
    smact_valid_samples: float
    novel_of_valid: float
    n_distinct: int
    n_valid_novel: int
    n_valid_novel_simple: int
    element_freq_corr: float
    element_freq_tvd: float
    n_elements_hist: dict
    count_hist: dict

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return asdict(self)


def _share_hist(values: np.ndarray, top: int) -> list[float]:
    h = np.bincount(np.clip(values, 0, top), minlength=top + 1)[1:]
    return (h / max(h.sum(), 1)).round(5).tolist()


def generation_quality(
    generated: GeneratedFormulas,
    *,
    known_formulas: Sequence[str],
    train_counts: np.ndarray,
    encoder: FormulaEncoder,
) -> GenerationQuality:
    """Measure a generation run against the known and the training formulas.

    Args:
        generated: the output of :meth:`FormulaGAN.generate`.
        known_formulas: every known formula (novelty reference).
        train_counts: ``(M, E)`` reduced counts of the training formulas.
        encoder: the codec of both.
    """
    from gapforge.screening.filters import is_simple
    from gapforge.screening.validity import SmactChecker

    stats = generated.stats
    table = generated.table
    known = encoder.encode(list(known_formulas))
    known_set = set(known.reduced[known.valid].tolist())
    novel = ~table[C.FORMULA].isin(known_set).to_numpy()
    valid = SmactChecker(encoder.elements).check_counts(generated.counts)
    n_gen = table["n_generated"].to_numpy()
    n_u = max(len(table), 1)
    freq_g = (generated.counts > 0).sum(axis=0) / n_u
    freq_t = (train_counts > 0).sum(axis=0) / max(len(train_counts), 1)
    corr = float(np.corrcoef(freq_g, freq_t)[0, 1]) if len(table) > 1 else math.nan
    pg = freq_g / max(freq_g.sum(), 1e-12)
    pt = freq_t / max(freq_t.sum(), 1e-12)
    top = encoder.n_levels
    return GenerationQuality(
        n_samples=stats.n_samples,
        decodable=stats.decodable_fraction,
        unique=stats.unique_fraction,
        novel=float(novel.mean()) if len(table) else math.nan,
        smact_valid=float(valid.mean()) if len(table) else math.nan,
        smact_valid_samples=float((valid * n_gen).sum() / max(n_gen.sum(), 1)),
        novel_of_valid=float(novel[valid].mean()) if valid.any() else math.nan,
        n_distinct=len(table),
        n_valid_novel=int((valid & novel).sum()),
        n_valid_novel_simple=int((valid & novel & is_simple(generated.counts)).sum()),
        element_freq_corr=corr,
        element_freq_tvd=float(0.5 * np.abs(pg - pt).sum()),
        n_elements_hist={
            "generated": _share_hist(n_elements_of(generated.counts), top),
            "training": _share_hist(n_elements_of(train_counts), top),
        },
        count_hist={
            "generated": _share_hist(generated.counts[generated.counts > 0].astype(np.int64), top),
            "training": _share_hist(train_counts[train_counts > 0].astype(np.int64), top),
        },
    )


def prepare_generator_training(
    out: str | Path, formulas: Sequence[str] | None, *, overwrite: bool
) -> tuple[Path, list[str]]:
    """Check the output directory and load the training formulas (default: the MP formulas).

    Raises:
        InputError: ``out`` already holds a model and ``overwrite`` is false.
    """
    out = Path(out)
    if (out / MODEL_CARD_FILE).exists() and not overwrite:
        raise InputError("model directory already exists (use --overwrite)", path=out)
    return out, list(formulas) if formulas is not None else mp_training_formulas()


def save_trained_generator(
    model: Any, out: Path, known: list[str], *, seed: int, n_eval: int, user_formulas: bool
) -> GenerationQuality:
    """Measure a freshly trained generator on ``n_eval`` samples (seed + 1) and save it with the figures."""
    from gapforge.data import fingerprint

    generated = model.generate(n_eval, seed=seed + 1)
    quality = generation_quality(
        generated, known_formulas=known, train_counts=model.train_counts_, encoder=model.encoder
    )
    meta = {
        "seed": seed,
        "data_fingerprint": fingerprint(pd.DataFrame({C.FORMULA: known})),
        "training_data": "user formulas" if user_formulas else "mp-formulas + mp-bandgap",
        "metrics": {f"quality_{n_eval}_samples": quality.to_dict()},
    }
    model.save(out, metadata=meta)
    return quality


def read_generator_card(directory: str | Path) -> tuple[dict, dict, dict]:
    """``(params, metadata, quality)`` of a saved generator's ``model.json`` (for its model card)."""
    import json

    card = json.loads((Path(directory) / MODEL_CARD_FILE).read_text())
    meta = card["metadata"]
    return card["params"], meta, next(iter(meta.get("metrics", {}).values()), {})


def quality_markdown(quality: dict) -> str:
    """The quality table of a generator's model card, with MATGAN's published figures under it."""

    def pct(key: str) -> str:
        v = quality.get(key)
        return "n/a" if v is None else f"{100 * v:.1f} %"

    return f"""| measure | value |
|---|---|
| decodable | {pct("decodable")} |
| unique (distinct / decodable) | {pct("unique")} |
| novel (not a known MP formula) | {pct("novel")} |
| SMACT-valid (distinct formulas) | {pct("smact_valid")} |
| SMACT-valid (all samples) | {pct("smact_valid_samples")} |
| novel among SMACT-valid | {pct("novel_of_valid")} |

MATGAN's published figures (GAN trained on SMACT-screened ICSD, 2 M samples):
novelty 92.53 %, chemically valid 84.5 %."""


def load_weights(module: Any, path: Path, what: str = "generator weights") -> Any:
    """Load a ``torch.save(state_dict)`` file into ``module`` (``weights_only``), in eval mode.

    Raises:
        ModelError: unreadable file or weights that do not fit ``module`` (first line of torch's reason).
    """
    import torch

    from gapforge.errors import ModelError

    try:
        module.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{path}: cannot load {what} ({first})") from None
    return module.eval()


def library_versions() -> dict:
    """Versions recorded in a saved generator's card (gapforge, torch, numpy, python)."""
    import sys

    import torch

    import gapforge

    return {
        "gapforge": getattr(gapforge, "__version__", "unknown"),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }


def mp_training_formulas() -> list[str]:
    """Distinct Materials Project formulas: ``mp-formulas`` + ``mp-bandgap`` (needs the data)."""
    from gapforge.data import load_dataset, load_formulas

    a = load_formulas("mp-formulas")[C.FORMULA]
    b = load_dataset("mp-bandgap")[C.FORMULA]
    return list(dict.fromkeys([*a.tolist(), *b.tolist()]))


__all__ = [
    "TRAIN_SETS",
    "GeneratedFormulas",
    "GenerationQuality",
    "GenerationStats",
    "collect_distinct",
    "generation_quality",
    "library_versions",
    "load_weights",
    "mp_training_formulas",
    "prepare_generator_training",
    "quality_markdown",
    "read_generator_card",
    "save_trained_generator",
    "training_counts",
]

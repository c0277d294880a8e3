"""What is in a labelled table: the numbers behind ``gapforge data show``."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from gapforge import columns as C
from gapforge.encoding import FormulaEncoder

#: Histogram bucket edges (eV) of ``gapforge data show``.
GAP_BUCKETS: tuple[float, ...] = (0.0, 0.01, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, np.inf)


@dataclass(frozen=True)
class DatasetSummary:
    """Counts and band-gap statistics of one labelled table (gaps in eV)."""

    name: str
    rows: int
    distinct_formulas: int
    n_elements: int
    elements: list[str]
    gap_min: float
    gap_max: float
    gap_mean: float
    gap_median: float
    gap_std: float
    gap_histogram: dict[str, int]
    encodable: int
    not_encodable: int
    not_encodable_reasons: dict[str, int] = field(default_factory=dict)
    n_levels: int = 8

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)


def _bucket_label(lo: float, hi: float) -> str:
    return f">= {lo:g}" if np.isinf(hi) else f"[{lo:g}, {hi:g})"


def _reason_kind(reason: str) -> str:
    text = reason.split(":", maxsplit=1)[0]
    if text.startswith("count "):
        return f"a count above the encoding's maximum ({text.rsplit(' ', 1)[-1]})"
    if text.startswith("element ") and "vocabulary" in text:
        return "an element outside the vocabulary"
    return text


def summarize_dataset(
    df: pd.DataFrame, *, name: str = "table", encoder: FormulaEncoder | None = None
) -> DatasetSummary:
    """Summarise a labelled table (``formula``, ``band_gap``).

    Args:
        df: a table as returned by :func:`gapforge.data.load_dataset`.
        name: shown in the summary.
        encoder: encoding whose reach is reported (default: 89 elements, counts 1..8).
    """
    encoder = encoder or FormulaEncoder()
    gaps = df[C.BAND_GAP].to_numpy(dtype=float)
    formulas = df[C.FORMULA].astype(str)
    batch = encoder.encode(formulas.to_numpy())
    elements: set[str] = set()
    for f in formulas.unique():
        elements.update(_symbols(f))
    hist, _ = np.histogram(gaps, bins=np.array(GAP_BUCKETS))
    labels = [_bucket_label(lo, hi) for lo, hi in itertools.pairwise(GAP_BUCKETS)]
    reasons = pd.Series([_reason_kind(r) for r in batch.reasons[~batch.valid]], dtype=object)
    from gapforge.formula import atomic_number

    return DatasetSummary(
        name=name,
        rows=len(df),
        distinct_formulas=int(formulas.nunique()),
        n_elements=len(elements),
        elements=sorted(elements, key=atomic_number),
        gap_min=float(gaps.min()) if len(gaps) else float("nan"),
        gap_max=float(gaps.max()) if len(gaps) else float("nan"),
        gap_mean=float(gaps.mean()) if len(gaps) else float("nan"),
        gap_median=float(np.median(gaps)) if len(gaps) else float("nan"),
        gap_std=float(gaps.std()) if len(gaps) else float("nan"),
        gap_histogram=dict(zip(labels, map(int, hist), strict=True)),
        encodable=int(batch.valid.sum()),
        not_encodable=int((~batch.valid).sum()),
        not_encodable_reasons={str(k): int(v) for k, v in reasons.value_counts().items()},
        n_levels=encoder.n_levels,
    )


def _symbols(formula: str) -> list[str]:
    from gapforge.formula import parse_formula

    return list(parse_formula(formula))

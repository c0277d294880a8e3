"""Oracles: who labels the formulas a campaign proposes.

An oracle is anything with ``label(formulas) -> (N,) band gaps in eV`` (NaN
where it cannot label a formula). Three are provided:

* :class:`TableOracle` - a table of known gaps (a lookup; formulas outside it
  come back NaN). The honest oracle for benchmarks on known data.
* :class:`ModelOracle` - a trained band-gap model (the paper's Roost oracle
  standing in for DFT), through :func:`gapforge.models.registry.load_model`
  or any fitted :class:`~gapforge.models.base.BandGapModel`.
* :class:`ExternalOracle` - a lab or a DFT queue: the campaign writes its
  proposals (``gapforge campaign ask``) and reads measured gaps back
  (``gapforge campaign tell``); its ``label`` is never called.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from gapforge import columns as C
from gapforge.errors import GapforgeError


@runtime_checkable
class Oracle(Protocol):
    """Labels formulas with band gaps (eV)."""

    name: str

    def label(self, formulas: Sequence[str]) -> np.ndarray:
        """``(N,)`` band gaps in eV of reduced formulas; NaN where the oracle cannot label."""
        ...


class PendingLabelsError(GapforgeError):
    """An external oracle was asked to label synchronously: use ask/tell."""


class TableOracle:
    """Look up gaps in a table of known labels.

    Args:
        table: a labelled table (``formula``, ``band_gap``) or a ``{formula: gap}`` mapping;
            formulas must already be pymatgen reduced formulas.
        name: name recorded as the label source.
    """

    def __init__(self, table: pd.DataFrame | Mapping[str, float], name: str = "table") -> None:
        if isinstance(table, pd.DataFrame):
            table = dict(zip(table[C.FORMULA].astype(str), table[C.BAND_GAP].astype(float), strict=True))
        self.gaps = dict(table)
        self.name = name

    @classmethod
    def from_file(cls, path: str | Path) -> TableOracle:
        """Read a labelled table file (or a registry dataset name) with :func:`gapforge.data.load_dataset`."""
        from gapforge.data import load_dataset

        return cls(load_dataset(path, duplicates="mean"), name=f"table:{Path(str(path)).name}")

    def label(self, formulas: Sequence[str]) -> np.ndarray:
        """Known gaps (eV); NaN for formulas not in the table."""
        return np.array([self.gaps.get(f, np.nan) for f in formulas], dtype=np.float64)


class ModelOracle:
    """Label with a fitted band-gap model's predicted mean.

    Args:
        model: a fitted :class:`~gapforge.models.base.BandGapModel`.
        name: name recorded as the label source.
    """

    def __init__(self, model, name: str = "model") -> None:
        self.model = model
        self.name = name

    @classmethod
    def load(cls, model: str | Path = "default", kind: str = "oracle") -> ModelOracle:
        """Load a saved or shipped model with :func:`gapforge.models.registry.load_model`."""
        from gapforge.models.registry import load_model

        return cls(load_model(model, kind=kind), name=f"{kind}:{model}")

    def label(self, formulas: Sequence[str]) -> np.ndarray:
        """Predicted mean gaps (eV); NaN where the model cannot predict."""
        if len(formulas) == 0:
            return np.zeros(0)
        pred = self.model.predict(list(formulas))
        return pred[C.BAND_GAP_MEAN].to_numpy(dtype=np.float64)


class ExternalOracle:
    """A lab or DFT queue driven through ask/tell; cannot label synchronously."""

    name = "external"

    def label(self, formulas: Sequence[str]) -> np.ndarray:
        """Always raises: an external oracle labels through ``campaign tell``."""
        raise PendingLabelsError(
            f"the external oracle cannot label {len(formulas)} formulas now; "
            "use 'gapforge campaign ask' and 'gapforge campaign tell'"
        )

"""Every known formula: what a candidate must not be to count as new.

The union, as pymatgen reduced formulas, of

- ``mp-e-form``: 95,118 formulas with Materials Project formation energies (matbench);
- ``mp-gap``: the formulas of matbench's Materials Project band gaps (``matbench/mp_gap.csv.gz``,
  metals included);
- ``mp-bandgap``: the paper's 42,669 Materials Project compositions;
- ``mp-formulas``: 123,805 Materials Project ids (89,374 distinct formulas).

``exclude_systems`` drops the formulas whose element set is one of the given
chemical systems (a rediscovery benchmark holds out whole systems).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from pathlib import Path

from gapforge import columns as C
from gapforge.data.registry import REGISTRY, find_data_file, resolve
from gapforge.errors import DatasetNotFoundError, FormulaError
from gapforge.formula import normalize_formula, parse_formula
from gapforge.io import find_column, read_table

log = logging.getLogger(__name__)

#: Datasets whose formulas are known (registry names; ``mp-gap`` is read by file when not registered).
KNOWN_SOURCES: tuple[str, ...] = ("mp-e-form", "mp-gap", "mp-bandgap", "mp-formulas")
_MP_GAP_FILE = ("mp_gap.csv.gz", "matbench")


def known_formulas(*, exclude_systems: Iterable[str | Iterable[str]] = ()) -> frozenset[str]:
    """Reduced formulas of every known composition (see the module docstring).

    Needs the data (``GAPFORGE_DATA_PATH`` or the cache); parsed once per process.

    Raises:
        DatasetNotFoundError: one of the sources is not available.
    """
    files = _data_key()
    if not exclude_systems:
        return _all_known(files)
    from gapforge.structure.hull import chemical_system

    if isinstance(exclude_systems, str):
        exclude_systems = [exclude_systems]
    return _known_without(files, frozenset(chemical_system(s) for s in exclude_systems))


@functools.lru_cache(maxsize=8)
def _known_without(files: tuple[str, ...], held_out: frozenset[frozenset[str]]) -> frozenset[str]:
    return frozenset(f for f in _all_known(files) if _elements(f) not in held_out)


@functools.cache
def _elements(formula: str) -> frozenset[str]:
    return frozenset(parse_formula(formula))


def _source_file(name: str) -> Path:
    if name in REGISTRY:
        return resolve(name)
    if name == "mp-gap":
        return find_data_file(*_MP_GAP_FILE)
    raise DatasetNotFoundError(f"{name}: not a known dataset")


def _data_key() -> tuple[str, ...]:
    """The files the union is built from (the cache key: another data path gives another union)."""
    return tuple(str(_source_file(name).resolve()) for name in KNOWN_SOURCES)


@functools.cache
def _all_known(files: tuple[str, ...]) -> frozenset[str]:
    out: set[str] = set()
    for name, file in zip(KNOWN_SOURCES, files, strict=True):
        df = read_table(file)
        col = find_column(df, C.FORMULA_ALIASES, what="formula", path=file)
        texts = set(df[col].astype(str).str.strip())
        before = len(out)
        for text in texts:
            try:
                out.add(normalize_formula(text))
            except FormulaError:  # a formula gapforge cannot read is never a candidate either
                log.debug("%s: skipping unreadable formula %r", file, text)
        log.info(
            "known formulas: %s adds %d (%d distinct formulas in it)", name, len(out) - before, len(texts)
        )
    return frozenset(out)


__all__ = ["KNOWN_SOURCES", "known_formulas"]

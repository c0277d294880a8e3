"""Load band-gap tables into the labelled-table contract.

The contract (``../shared/DESIGN.md``): ``formula`` (pymatgen reduced formula),
``band_gap`` (eV, float), optional ``id`` and ``source``. Column names are
normalised (``composition``/``pretty_formula`` -> ``formula``; ``Eg``/``gap``
-> ``band_gap``).

Duplicate policy: rows whose formulas reduce to the same formula are merged
when their gaps agree within 1e-6 eV. When they disagree (polymorphs), the
``duplicates`` argument decides: ``"error"`` (the default for user files:
stop and name both rows), ``"mean"``, ``"median"``, ``"min"``, ``"max"``,
``"first"`` or ``"keep"`` (no merging: one row per entry, in file order, as the
matbench protocols need).

Sets with one row per structure (``mp-gap``, ``expt-gap``, the OQMD and AFLOW
sets) load with ``"median"`` by default: the polymorphs of a formula become one
row with their median gap (metals count as 0 eV). ``oqmd-gap`` and ``aflow-gap``
are their train/val/test files together; ``pbe-gap-all`` is every PBE source with
one row per formula taken from the first source that has it, in the order
:data:`PBE_SOURCE_PRIORITY` (MP, then AFLOW, then OQMD: MP is the paper's and
matbench's reference, AFLOW and OQMD only add formulas MP lacks). The ``source``
column names the set each row came from.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from gapforge import columns as C
from gapforge.data.registry import REGISTRY, resolve
from gapforge.errors import FormulaError, InputError
from gapforge.formula import normalize_formula
from gapforge.io import find_column, read_table

log = logging.getLogger(__name__)

DuplicatePolicy = Literal["error", "mean", "median", "min", "max", "first", "keep"]
NegativePolicy = Literal["error", "clip"]

#: Registry sets whose labels come from the paper's oracle (Roost predictions),
#: which include small negative gaps (27 in exp2-al, 37 in exp3-al); they load
#: with ``negative="clip"`` (negatives set to 0 eV, counted in the log).
ORACLE_LABELLED_SETS = frozenset({"exp2-al", "exp3-al"})
#: Datasets made of several registry files (loaded one after the other).
COMPOSITE_SETS: dict[str, tuple[str, ...]] = {
    "oqmd-gap": ("oqmd-gap-train", "oqmd-gap-val", "oqmd-gap-test"),
    "aflow-gap": ("aflow-gap-train", "aflow-gap-val", "aflow-gap-test"),
}
#: Sets with one row per structure (a formula repeats per polymorph): merged by median by default.
MULTI_ENTRY_SETS = frozenset(
    {"mp-gap", "expt-gap", *COMPOSITE_SETS, *(p for v in COMPOSITE_SETS.values() for p in v)}
)
#: Sets holding disordered (doped, off-stoichiometric) compositions, kept with decimal amounts.
FRACTIONAL_SETS = MULTI_ENTRY_SETS
#: Which source wins where several PBE sources hold the same formula (first wins).
PBE_SOURCE_PRIORITY: tuple[str, ...] = ("mp-gap", "aflow-gap", "oqmd-gap")


def normalize_formulas(
    values: Sequence[object], *, path: str | Path | None = None, fractional: bool = False
) -> list[str]:
    """Reduced formulas of ``values``; the first bad one raises with its row (1-based).

    With ``fractional`` a disordered composition that does not scale to integers
    (``Bi0.002Te0.003Pb0.999Se0.999``, a doped crystal) is kept as pymatgen's
    reduced formula with decimal amounts instead of being an error.
    """
    out = []
    cache: dict[str, str] = {}
    for i, v in enumerate(values):
        text = str(v).strip() if v is not None else ""
        f = cache.get(text)
        if f is None:
            try:
                f = normalize_formula(text)
            except FormulaError as exc:
                if not (fractional and "fractional" in exc.message):
                    raise InputError(exc.message, path=path, row=i + 1, value=v) from None
                from pymatgen.core import Composition

                f = Composition(text).reduced_formula
            cache[text] = f
        out.append(f)
    return out


def labelled_table(
    df: pd.DataFrame,
    *,
    path: str | Path | None = None,
    source: str | None = None,
    duplicates: DuplicatePolicy = "error",
    negative: NegativePolicy = "error",
    fractional: bool = False,
) -> pd.DataFrame:
    """Validate and normalise a table of formulas and band gaps.

    ``fractional`` keeps disordered compositions (see :func:`normalize_formulas`).

    Negative gaps are an error unless ``negative="clip"`` (set to 0 eV; meant
    for model-predicted labels such as the paper's AL sets).

    Raises:
        InputError: no rows, missing columns, bad formula, non-numeric,
            NaN or negative gap, or conflicting duplicates under ``"error"``.
    """
    if len(df) == 0:
        raise InputError("no data rows", path=path)
    fcol = find_column(df, C.FORMULA_ALIASES, what="formula", path=path)
    gcol = find_column(df, C.BAND_GAP_ALIASES, what="band-gap", path=path)
    formulas = normalize_formulas(df[fcol].tolist(), path=path, fractional=fractional)
    gaps = np.empty(len(df), dtype=np.float64)
    for i, v in enumerate(df[gcol].tolist()):
        try:
            g = float(v)
        except (TypeError, ValueError):
            raise InputError("band gap is not a number", path=path, row=i + 1, value=v) from None
        if math.isnan(g) or math.isinf(g):
            raise InputError("band gap is missing (NaN)", path=path, row=i + 1, value=v)
        if g < 0 and negative != "clip":
            raise InputError("band gap is negative", path=path, row=i + 1, value=v)
        gaps[i] = g
    if negative == "clip" and (gaps < 0).any():
        log.info("%s: clipped %d negative band gaps to 0 eV", path or "table", int((gaps < 0).sum()))
        gaps = np.clip(gaps, 0.0, None)
    out = pd.DataFrame({C.FORMULA: formulas, C.BAND_GAP: gaps})
    try:
        icol = find_column(df, C.ID_ALIASES, what="id")
        out[C.ID] = df[icol].astype(str).to_numpy()
    except InputError:
        out[C.ID] = [str(i + 1) for i in range(len(df))]
    out[C.SOURCE] = source if source is not None else (Path(path).name if path else "table")
    return merge_duplicates(out, policy=duplicates, path=path)


def merge_duplicates(
    df: pd.DataFrame, *, policy: DuplicatePolicy = "error", path: str | Path | None = None
) -> pd.DataFrame:
    """Apply the duplicate policy of the module docstring to a labelled table."""
    dup = df.duplicated(C.FORMULA, keep=False)
    if not dup.any():
        return df.reset_index(drop=True)
    groups = df[dup].groupby(C.FORMULA, sort=False)[C.BAND_GAP]
    spread = groups.max() - groups.min()
    conflicting = spread[spread > 1e-6]
    if len(conflicting) and policy == "error":
        f = conflicting.index[0]
        rows = (np.flatnonzero(df[C.FORMULA].to_numpy() == f) + 1).tolist()
        gaps = df.loc[df[C.FORMULA] == f, C.BAND_GAP].tolist()
        raise InputError(
            f"duplicate formula with different band gaps {gaps} at rows {rows} "
            "(choose a policy: --duplicates mean|min|max|first)",
            path=path,
            row=rows[1],
            value=f,
        )
    if policy == "keep":
        return df.reset_index(drop=True)
    if policy in ("error", "first"):
        out = df.drop_duplicates(C.FORMULA, keep="first")
    else:
        agg = {C.BAND_GAP: policy, C.ID: "first", C.SOURCE: "first"}
        agg = {k: v for k, v in agg.items() if k in df.columns}
        out = df.groupby(C.FORMULA, sort=False, as_index=False).agg(agg)
    log.info("merged %d duplicate rows (policy %s)", len(df) - len(out), policy)
    return out.reset_index(drop=True)


def load_dataset(
    name: str | Path,
    *,
    path: str | Path | None = None,
    duplicates: DuplicatePolicy | None = None,
    negative: NegativePolicy | None = None,
) -> pd.DataFrame:
    """Load a named dataset or a local CSV/JSON/Parquet table as a labelled table.

    Args:
        name: a registry name (``mp-bandgap``, ``exp2-al``, ...) or a file path.
        path: explicit file to use for a registry name.
        duplicates: duplicate policy; default ``"error"`` (the shipped sets have none).
        negative: negative-gap policy; default ``"error"``, ``"clip"`` for
            :data:`ORACLE_LABELLED_SETS`.

    Returns:
        Columns ``formula``, ``band_gap`` (eV), ``id``, ``source``.

    Example:
        >>> df = load_dataset("mp-bandgap")  # doctest: +SKIP
        >>> len(df)  # doctest: +SKIP
        42669
    """
    name = str(name)
    if name in COMPOSITE_SETS or name == "pbe-gap-all":
        if path is not None:
            raise InputError(f"dataset {name} is made of several files; it takes no path")
        return _load_composite(name, duplicates=duplicates)
    entry = REGISTRY.get(name)
    if entry is not None and entry.kind != "bandgap":
        raise InputError(f"dataset {name} has no band gaps; use load_formulas")
    if duplicates is None and name in MULTI_ENTRY_SETS:
        duplicates = "median"
    file = resolve(name, path=path)
    df = read_table(file)
    source = name if entry is not None else file.name
    if negative is None:
        negative = "clip" if name in ORACLE_LABELLED_SETS else "error"
    return labelled_table(
        df,
        path=file,
        source=source,
        duplicates=duplicates or "error",
        negative=negative,
        fractional=name in FRACTIONAL_SETS,
    )


def _load_composite(name: str, *, duplicates: DuplicatePolicy | None) -> pd.DataFrame:
    """``oqmd-gap``/``aflow-gap`` (their parts concatenated) or ``pbe-gap-all`` (see module doc)."""
    if name == "pbe-gap-all":
        if duplicates not in (None, "median"):
            raise InputError("pbe-gap-all keeps one row per formula (median within a source, then priority)")
        tables = [load_dataset(src) for src in PBE_SOURCE_PRIORITY]
        out = pd.concat(tables, ignore_index=True).drop_duplicates(C.FORMULA, keep="first")
        log.info("pbe-gap-all: %s", out[C.SOURCE].value_counts().to_dict())
        return out.reset_index(drop=True)
    parts = [load_dataset(p, duplicates="keep") for p in COMPOSITE_SETS[name]]
    df = pd.concat(parts, ignore_index=True)
    df[C.SOURCE] = name
    df[C.ID] = [f"{s}:{i}" for s, i in zip(pd.concat([p[C.SOURCE] for p in parts]), df[C.ID], strict=True)]
    return merge_duplicates(df, policy=duplicates or "median", path=name)


def load_metal_labels(name: str = "mp-is-metal", *, path: str | Path | None = None) -> pd.DataFrame:
    """Load a metal / non-metal table (``mp-is-metal``: 1 = metal), one row per entry in file order.

    Returns:
        Columns ``formula`` (reduced), ``is_metal`` (bool), ``source``.

    Raises:
        InputError: a bad formula or a label other than 0/1 (names the row).
    """
    file = resolve(name, path=path)
    df = read_table(file)
    if len(df) == 0:
        raise InputError("no data rows", path=file)
    fcol = find_column(df, C.FORMULA_ALIASES, what="formula", path=file)
    tcol = find_column(df, (C.IS_METAL, "target", "is_metal"), what="metal label", path=file)
    labels = np.empty(len(df), dtype=bool)
    for i, v in enumerate(df[tcol].tolist()):
        try:
            x = float(v)
        except (TypeError, ValueError):
            x = float("nan")
        if x not in (0.0, 1.0):
            raise InputError("metal label is not 0 or 1", path=file, row=i + 1, value=v)
        labels[i] = x == 1.0
    return pd.DataFrame(
        {
            C.FORMULA: normalize_formulas(df[fcol].tolist(), path=file),
            C.IS_METAL: labels,
            C.SOURCE: name if name in REGISTRY else file.name,
        }
    )


def load_formulas(name: str | Path = "mp-formulas", *, path: str | Path | None = None) -> pd.DataFrame:
    """Load distinct formulas (no gaps needed), e.g. the autoencoder's ``mp-formulas``.

    Returns:
        Columns ``formula`` (reduced, distinct) and ``n_entries`` (rows that had it).
    """
    file = resolve(str(name), path=path)
    df = read_table(file)
    if len(df) == 0:
        raise InputError("no data rows", path=file)
    fcol = find_column(df, C.FORMULA_ALIASES, what="formula", path=file)
    formulas = pd.Series(normalize_formulas(df[fcol].tolist(), path=file), name=C.FORMULA)
    counts = formulas.value_counts(sort=False)
    return pd.DataFrame({C.FORMULA: counts.index.to_numpy(), "n_entries": counts.to_numpy()})


def fingerprint(df: pd.DataFrame) -> str:
    """A short sha256 of a labelled table's formulas and gaps (order-independent).

    Stored in every model's metadata to tie it to its training data.
    """
    cols = [c for c in (C.FORMULA, C.BAND_GAP) if c in df.columns]
    rows = sorted(zip(*(df[c].astype(str) for c in cols), strict=True))
    h = hashlib.sha256("\n".join("\t".join(r) for r in rows).encode())
    return h.hexdigest()[:16]

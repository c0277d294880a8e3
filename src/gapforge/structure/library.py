"""The template library: known crystal structures to substitute candidates into.

A library is a table with one row per known structure: ``material_id``,
``reduced_formula``, ``cif`` and, where known, ``nsites``, ``spacegroup_number``,
``band_gap`` (eV), ``formation_energy_per_atom`` and ``e_above_hull`` (eV/atom).
It is read from any CSV/Parquet file (the offline default is the Materials
Project subset ``mp_template_library.csv.gz``, see its ``SOURCES.md``) or built
from the live Materials Project with :func:`build_library_from_mp`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Composition, Structure

from gapforge import columns as C
from gapforge.errors import DependencyError, InputError
from gapforge.io import find_column, read_table, write_table
from gapforge.structure.elmd import MODIFIED_PETTIFOR, cumulative_matrix

log = logging.getLogger(__name__)

#: File name of the offline template library (subdirectory ``structures``).
DEFAULT_LIBRARY_FILE = "mp_template_library.csv.gz"
#: File name of the Materials Project elemental reference entries.
ELEMENTAL_REFERENCES_FILE = "mp_elemental_reference_entries_2023-02-07.json.gz"
DATA_SUBDIR = "structures"

_ID_ALIASES = (C.MATERIAL_ID, *C.ID_ALIASES)
_FORMULA_ALIASES = (C.REDUCED_FORMULA, *C.FORMULA_ALIASES)
_CIF_ALIASES = (C.CIF, "structure_cif")
_OPTIONAL_NUMERIC: dict[str, tuple[str, ...]] = {
    C.NSITES: (C.NSITES, "num_sites"),
    C.SPACEGROUP_NUMBER: (C.SPACEGROUP_NUMBER, "spacegroup.number", "space_group_number"),
    C.BAND_GAP: (C.BAND_GAP,),
    C.FORMATION_ENERGY_PER_ATOM: (C.FORMATION_ENERGY_PER_ATOM, "e_form_per_atom"),
    C.E_ABOVE_HULL: (C.E_ABOVE_HULL, "energy_above_hull"),
}
LIBRARY_COLUMNS = (
    C.MATERIAL_ID,
    C.REDUCED_FORMULA,
    C.ANONYMIZED_FORMULA,
    *_OPTIONAL_NUMERIC,
    C.CIF,
)


def find_data_file(filename: str, subdir: str) -> Path:
    """Find a shared data file on ``GAPFORGE_DATA_PATH`` (:func:`gapforge.data.registry.find_data_file`).

    Raises:
        DatasetNotFoundError: the file is in none of the directories.
    """
    from gapforge.data.registry import find_data_file as _find

    return _find(filename, subdir)


class TemplateLibrary:
    """Known structures to use as templates, with their formulas precomputed.

    Args:
        table: normalised library table (columns :data:`LIBRARY_COLUMNS`).
        source: where the table came from (a path or ``"mp-api"``), for logs.
    """

    def __init__(self, table: pd.DataFrame, *, source: str | None = None) -> None:
        self.table = table.reset_index(drop=True)
        self.source = source
        self._structures: dict[int, Structure] = {}
        self._wyckoff: dict[int, str] = {}
        self._same_type: dict[tuple[int, int], bool] = {}

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        return f"TemplateLibrary({len(self)} structures from {self.source})"

    @cached_property
    def cumulative(self) -> np.ndarray:
        """Cumulative modified-Pettifor fraction vectors, shape ``(n_templates, 103)``."""
        return cumulative_matrix(self.table[C.REDUCED_FORMULA].tolist())

    @cached_property
    def anonymized(self) -> np.ndarray:
        """Anonymised formula of every template, shape ``(n_templates,)``."""
        return self.table[C.ANONYMIZED_FORMULA].to_numpy(dtype=object)

    @cached_property
    def volume_increments(self) -> dict[str, float]:
        """Per-element volume increments (Å^3 per atom) fitted on these structures.

        :func:`~gapforge.structure.substitution.fit_volume_increments` over every template's
        reduced formula and volume per atom (the CIF's ``_cell_volume`` over its sites; the
        parsed structure where the CIF lacks it). A subset (``subset``) fits its own.
        """
        from gapforge.structure.substitution import fit_volume_increments

        volume = pd.to_numeric(
            self.table[C.CIF].astype(str).str.extract(r"_cell_volume\s+([0-9.]+)")[0], errors="coerce"
        )
        nsites = pd.to_numeric(self.table[C.NSITES], errors="coerce") if C.NSITES in self.table else np.nan
        per_atom = (volume / nsites).where(lambda v: v > 0).to_numpy(dtype=float)
        for i in np.flatnonzero(~np.isfinite(per_atom)):  # no volume or site count in the table
            try:
                s = self.structure(int(i))
            except InputError:
                continue
            per_atom[i] = s.volume / len(s)
        return fit_volume_increments(self.table[C.REDUCED_FORMULA].tolist(), per_atom.tolist())

    def structure(self, index: int) -> Structure:
        """The structure of row ``index`` (parsed from its CIF once, then cached)."""
        if index not in self._structures:
            cif = self.table.loc[index, C.CIF]
            try:
                with warnings.catch_warnings():  # pymatgen warns about rounded occupancies etc.
                    warnings.simplefilter("ignore")
                    self._structures[index] = Structure.from_str(str(cif), fmt="cif")
            except Exception as exc:
                raise InputError(
                    "cannot parse template CIF",
                    path=self.source,
                    row=index + 1,
                    value=self.table.loc[index, C.MATERIAL_ID],
                ) from exc
        return self._structures[index]

    def wyckoff_label(self, index: int) -> str:
        """AFLOW-style Wyckoff label of row ``index`` (see ``prototypes.wyckoff_label``)."""
        if index not in self._wyckoff:
            from gapforge.structure.prototypes import wyckoff_label

            try:
                self._wyckoff[index] = wyckoff_label(self.structure(index))
            except InputError:  # an unreadable CIF has no label; substituting it reports the error
                self._wyckoff[index] = "?"
        return self._wyckoff[index]

    def same_structure_type(self, a: int, b: int) -> bool:
        """Whether rows ``a`` and ``b`` are one structure type (StructureMatcher ``fit_anonymous``)."""
        key = (min(a, b), max(a, b))
        if key not in self._same_type:
            from gapforge.structure.prototypes import same_structure_type

            self._same_type[key] = same_structure_type(self.structure(a), self.structure(b))
        return self._same_type[key]

    def subset(self, mask: np.ndarray | pd.Series) -> TemplateLibrary:
        """A new library with only the rows where ``mask`` is true."""
        return TemplateLibrary(self.table[np.asarray(mask, dtype=bool)], source=self.source)

    def save(self, path: str | Path) -> Path:
        """Write the library as CSV or Parquet (atomically)."""
        return write_table(self.table[list(LIBRARY_COLUMNS)], path)


def load_library(
    path: str | Path | None = None,
    *,
    max_e_above_hull: float | None = None,
    max_nsites: int | None = None,
) -> TemplateLibrary:
    """Read a template library table.

    Args:
        path: CSV/Parquet file; ``None`` finds :data:`DEFAULT_LIBRARY_FILE` on
            ``GAPFORGE_DATA_PATH``.
        max_e_above_hull: drop templates whose known ``e_above_hull`` (eV/atom)
            exceeds this (rows with no value are kept).
        max_nsites: drop templates with more sites per cell than this.

    Raises:
        InputError: the file is missing or malformed (names file, row, value).
        DatasetNotFoundError: ``path`` is None and the default file is not found.
    """
    path = Path(path) if path is not None else find_data_file(DEFAULT_LIBRARY_FILE, DATA_SUBDIR)
    raw = read_table(path)
    lib = TemplateLibrary(normalise_library_table(raw, path=path), source=str(path))
    n0 = len(lib)
    keep = np.ones(n0, dtype=bool)
    if max_e_above_hull is not None:
        ehull = lib.table[C.E_ABOVE_HULL].to_numpy(dtype=float)
        keep &= ~(ehull > max_e_above_hull)
    if max_nsites is not None:
        nsites = lib.table[C.NSITES].to_numpy(dtype=float)
        keep &= ~(nsites > max_nsites)
    if not keep.all():
        lib = lib.subset(keep)
    log.info("template library %s: %d structures (%d after filters)", path, n0, len(lib))
    return lib


def normalise_library_table(raw: pd.DataFrame, *, path: str | Path | None = None) -> pd.DataFrame:
    """Bring a library table to the standard columns, checking every value.

    Raises:
        InputError: a required column is missing, a formula cannot be parsed, a
            CIF is empty or a numeric value is not a number.
    """
    if raw.empty:
        raise InputError("template library has no rows", path=path)
    id_col = find_column(raw, _ID_ALIASES, what="material id", path=path)
    cif_col = find_column(raw, _CIF_ALIASES, what="CIF", path=path)
    formula_col = find_column(raw, _FORMULA_ALIASES, what="formula", path=path)
    out = pd.DataFrame({C.MATERIAL_ID: raw[id_col].astype(str)})
    reduced, anonymized = [], []
    for row, value in enumerate(raw[formula_col].tolist(), start=1):
        try:
            comp = Composition(str(value))
            if comp.num_atoms <= 0:
                raise ValueError("empty")
            unknown = [el for el in comp.get_el_amt_dict() if el not in MODIFIED_PETTIFOR]
            if unknown:
                raise ValueError(f"element {unknown[0]} not on the modified Pettifor scale")
        except Exception as exc:
            raise InputError("bad formula in template library", path=path, row=row, value=value) from exc
        reduced.append(comp.reduced_formula)
        anonymized.append(comp.anonymized_formula)
    out[C.REDUCED_FORMULA] = reduced
    out[C.ANONYMIZED_FORMULA] = anonymized
    for name, aliases in _OPTIONAL_NUMERIC.items():
        col = next((a for a in aliases if a in raw.columns), None)
        out[name] = np.nan if col is None else _numeric(raw[col], name=col, path=path)
    cifs = raw[cif_col].astype(str)
    empty = np.flatnonzero(cifs.str.strip().str.len() == 0)
    if len(empty):
        raise InputError(
            "empty CIF in template library",
            path=path,
            row=int(empty[0]) + 1,
            value=out[C.MATERIAL_ID].iloc[empty[0]],
        )
    out[C.CIF] = cifs.to_numpy()
    if out[C.NSITES].isna().any():
        # Count sites from the CIF only where the table does not say.
        for i in np.flatnonzero(out[C.NSITES].isna().to_numpy()):
            try:
                out.loc[i, C.NSITES] = len(Structure.from_str(out.loc[i, C.CIF], fmt="cif"))
            except Exception as exc:
                raise InputError(
                    "cannot parse CIF in template library",
                    path=path,
                    row=int(i) + 1,
                    value=out.loc[i, C.MATERIAL_ID],
                ) from exc
    return out


def _numeric(series: pd.Series, *, name: str, path: str | Path | None) -> pd.Series:
    values = series.replace({"": np.nan, "nan": np.nan, "NaN": np.nan, "None": np.nan})
    converted = pd.to_numeric(values, errors="coerce")
    bad = converted.isna() & values.notna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"column {name} is not numeric", path=path, row=i + 1, value=series.iloc[i])
    return converted.astype(float)


# --------------------------------------------------------------------------- Materials Project


@dataclass(frozen=True)
class MPQuery:
    """What to fetch from the Materials Project for a template library.

    Attributes:
        max_sites: largest cell (sites) kept.
        max_e_above_hull: largest energy above hull (eV/atom) kept.
        experimental_only: keep only ICSD-sourced (non-theoretical) materials.
        elements: if given, keep only materials made of these elements
            (filtered client-side after the query).
        num_elements: (min, max) number of distinct elements.
    """

    max_sites: int = 20
    max_e_above_hull: float = 0.1
    experimental_only: bool = True
    elements: tuple[str, ...] | None = None
    num_elements: tuple[int, int] = (1, 5)


#: Fields requested from the summary endpoint.
MP_FIELDS: tuple[str, ...] = (
    "material_id",
    "formula_pretty",
    "structure",
    "nsites",
    "symmetry",
    "band_gap",
    "formation_energy_per_atom",
    "energy_above_hull",
)


def build_library_from_mp(
    path: str | Path | None = None,
    *,
    query: MPQuery = MPQuery(),
    api_key: str | None = None,
    rester: Any = None,
) -> TemplateLibrary:
    """Build a template library from the live Materials Project (``mp-api``).

    Args:
        path: if given, the library is also written there (CSV or Parquet).
        query: which materials to fetch.
        api_key: Materials Project API key (default: ``MP_API_KEY`` as read by
            ``mp_api``).
        rester: an already open ``mp_api.client.MPRester`` (or any object with
            ``materials.summary.search(**kwargs)``); default opens one.

    Raises:
        DependencyError: ``mp-api`` is not installed.
        InputError: the API returned no usable material.
    """
    if rester is None:
        try:
            from mp_api.client import MPRester
        except ImportError as exc:
            raise DependencyError(
                "building a library from the Materials Project needs mp-api (pip install 'gapforge[mp]')"
            ) from exc
        with MPRester(api_key, use_document_model=False, mute_progress_bars=True) as mpr:
            return build_library_from_mp(path, query=query, rester=mpr)

    kwargs: dict[str, Any] = {
        "num_sites": (1, query.max_sites),
        "energy_above_hull": (0.0, query.max_e_above_hull),
        "num_elements": query.num_elements,
        "fields": list(MP_FIELDS),
    }
    if query.experimental_only:
        kwargs["theoretical"] = False
    docs = rester.materials.summary.search(**kwargs)
    allowed = set(query.elements) if query.elements else None
    rows = []
    for doc in docs:
        row = _doc_to_row(doc)
        if row is None:
            continue
        if allowed is not None and not set(Composition(row[C.REDUCED_FORMULA]).get_el_amt_dict()) <= allowed:
            continue
        rows.append(row)
    if not rows:
        raise InputError("the Materials Project query returned no usable structure", value=kwargs)
    table = normalise_library_table(pd.DataFrame(rows), path="mp-api")
    lib = TemplateLibrary(table, source="mp-api")
    log.info("built template library of %d structures from the Materials Project", len(lib))
    if path is not None:
        lib.save(path)
    return lib


def _get(doc: Any, key: str) -> Any:
    if isinstance(doc, Mapping):
        return doc.get(key)
    return getattr(doc, key, None)


def _doc_to_row(doc: Any) -> dict[str, Any] | None:
    """One summary document (dict or emmet document model) -> one library row."""
    struct = _get(doc, "structure")
    mpid = _get(doc, "material_id")
    if struct is None or mpid is None:
        log.warning("skipping Materials Project document without structure or id: %r", mpid)
        return None
    if isinstance(struct, Mapping):
        struct = Structure.from_dict(struct)
    sym = _get(doc, "symmetry")
    sg = _get(sym, "number") if sym is not None else None
    return {
        C.MATERIAL_ID: str(mpid),
        C.REDUCED_FORMULA: struct.composition.reduced_formula,
        C.NSITES: len(struct),
        C.SPACEGROUP_NUMBER: np.nan if sg is None else sg,
        C.BAND_GAP: _float(_get(doc, "band_gap")),
        C.FORMATION_ENERGY_PER_ATOM: _float(_get(doc, "formation_energy_per_atom")),
        C.E_ABOVE_HULL: _float(_get(doc, "energy_above_hull")),
        C.CIF: struct.to(fmt="cif"),
    }


def _float(x: Any) -> float:
    return np.nan if x is None else float(x)

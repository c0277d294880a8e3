"""The convex hull of known phases: energy above hull and decomposition of any composition.

A :class:`HullReference` holds one formation energy per atom (eV/atom) for each
known reduced formula, the lowest one of its polymorphs, with every element at
0 eV/atom. For a candidate composition it builds pymatgen's
:class:`~pymatgen.analysis.phase_diagram.PhaseDiagram` of the candidate's
chemical system from the known phases whose elements are a subset of it, and
reports the candidate's energy above that hull and the known phases it would
decompose into. Diagrams are kept in an LRU cache per chemical system, so a
screen of thousands of candidates in a few hundred systems builds each diagram
once.

Where the reference comes from:

- :meth:`HullReference.from_dataset` — a named dataset, by default ``mp-e-form``
  (the Materials Project formation energies of matbench v0.1, 132,752 entries,
  95,118 formulas);
- :meth:`HullReference.from_table` — any table of formula + formation energy per atom;
- :meth:`HullReference.from_materials_project` — the live Materials Project through ``mp-api``.

Coverage. A candidate gets a finite energy above hull when every one of its
elements occurs in some known phase; otherwise the result is NaN with the reason
(for a user table of a few systems, or an element the reference lacks). When no
known compound lies in the candidate's system, the hull is the elements alone:
the value is finite (its formation energy, if that is positive) and
``n_known_phases`` is 0, so a reader can tell.

Validation holds out whole chemical systems: ``exclude_systems`` (or
:meth:`HullReference.without_systems`) drops every known formula whose element
set is exactly one of the given systems.
"""

from __future__ import annotations

import functools
import logging
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition

from gapforge.errors import FormulaError, GapforgeError, InputError
from gapforge.formula import normalize_formula, parse_formula

log = logging.getLogger(__name__)

#: Default dataset of :meth:`HullReference.from_dataset`.
DEFAULT_HULL_DATASET = "mp-e-form"
#: Datasets whose formation energies carry the legacy MP corrections; moved onto the MP2020
#: scale of CHGNet by default (:mod:`gapforge.structure.energy_scale`).
LEGACY_CORRECTED_DATASETS = frozenset({"mp-e-form"})
#: Column names recognised as the formation-energy column (eV/atom), in order of preference.
FORMATION_ENERGY_ALIASES: tuple[str, ...] = (
    "formation_energy_per_atom",
    "e_form",
    "formation_energy",
    "e_form_per_atom",
    "target",
)
#: Energies above hull below this (eV/atom) are flagged: the candidate lies under every known
#: phase, which more often means a phase is missing from the reference than a discovery.
BELOW_HULL_TOLERANCE = -0.05
#: Diagrams kept per reference (chemical systems).
DIAGRAM_CACHE_SIZE = 4096

ChemSys = frozenset[str]


@dataclass(frozen=True)
class HullResult:
    """Energy above the known hull of one composition.

    Attributes:
        formula: the candidate's reduced formula.
        e_above_hull: eV/atom; negative below the known hull; NaN when unknown (see ``reason``).
        decomposition: known phase (reduced formula; elements by symbol) -> atom fraction,
            the hull phases at the candidate's composition (the candidate itself, 1.0, when
            it is a known phase on the hull).
        n_known_phases: known compounds (not elements) in the candidate's chemical system.
        reason: why ``e_above_hull`` is NaN, or a note; empty otherwise.
    """

    formula: str
    e_above_hull: float
    decomposition: Mapping[str, float] = field(default_factory=dict)
    n_known_phases: int = 0
    reason: str = ""

    @property
    def below_known_hull(self) -> bool:
        """True when the candidate lies more than 0.05 eV/atom below the known hull."""
        return bool(self.e_above_hull < BELOW_HULL_TOLERANCE)

    @property
    def decomposition_text(self) -> str:
        """``"0.5 LiF + 0.5 NaF"`` (largest fraction first); empty when unknown."""
        parts = sorted(self.decomposition.items(), key=lambda kv: (-kv[1], kv[0]))
        return " + ".join(f"{frac:.3g} {name}" for name, frac in parts)


def chemical_system(value: str | Iterable[str] | Composition) -> ChemSys:
    """The element set of ``"Li-Fe-O"``, ``("Li", "O")``, a formula (``"LiFeO2"``) or a Composition."""
    if isinstance(value, Composition):
        return frozenset(el.symbol for el in value.elements)
    if isinstance(value, str):
        if "-" in value:
            parts = [p.strip() for p in value.split("-") if p.strip()]
            for p in parts:
                parse_formula(p)  # unknown element -> FormulaError
            return frozenset(parts)
        return frozenset(parse_formula(value))
    out = frozenset(str(v).strip() for v in value)
    for el in out:
        parse_formula(el)
    return out


def _systems(systems: Iterable[str | Iterable[str]] | None) -> frozenset[ChemSys]:
    if not systems:
        return frozenset()
    if isinstance(systems, str):  # one system given bare
        systems = [systems]
    return frozenset(chemical_system(s) for s in systems)


def _subsystems(system: ChemSys) -> Iterable[ChemSys]:
    els = sorted(system)
    for k in range(2, len(els) + 1):
        for combo in combinations(els, k):
            yield frozenset(combo)


class HullReference:
    """Known phases and their formation energies per atom; energies above their hull.

    Build with :meth:`from_dataset`, :meth:`from_table` or
    :meth:`from_materials_project`; the constructor takes an already reduced
    mapping ``formula -> formation energy per atom`` (eV/atom).

    Args:
        energies: reduced formula -> lowest formation energy per atom (eV/atom);
            elemental rows are ignored (elements sit at 0).
        source: where the energies came from (for logs and run records).
        exclude_systems: chemical systems (``"Li-O"`` or element tuples) whose
            formulas are left out.
        cache_size: diagrams kept in the LRU cache.
    """

    def __init__(
        self,
        energies: Mapping[str, float],
        *,
        source: str = "",
        exclude_systems: Iterable[str | Iterable[str]] = (),
        cache_size: int = DIAGRAM_CACHE_SIZE,
    ) -> None:
        excluded = _systems(exclude_systems)
        by_system: dict[ChemSys, dict[str, float]] = {}
        elements: set[str] = set()
        n_dropped = 0
        for formula, e in energies.items():
            els = _element_set(formula)
            elements |= els
            if len(els) < 2:
                continue
            if els in excluded:
                n_dropped += 1
                continue
            by_system.setdefault(els, {})[formula] = float(e)
        self._energies = dict(energies)
        self._by_system = by_system
        self._elements = frozenset(elements)
        self._excluded = excluded
        self.source = source
        self._cache: OrderedDict[ChemSys, tuple[PhaseDiagram, int]] = OrderedDict()
        self._cache_size = cache_size
        if excluded:
            log.info(
                "hull reference: %d known formulas dropped with %d held-out systems", n_dropped, len(excluded)
            )

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_table(
        cls,
        table: pd.DataFrame | str | Path,
        *,
        formula_column: str | None = None,
        energy_column: str | None = None,
        source: str | None = None,
        exclude_systems: Iterable[str | Iterable[str]] = (),
    ) -> HullReference:
        """A reference from a table of formula + formation energy per atom (eV/atom).

        Polymorphs (rows whose formulas reduce to the same formula) keep the
        lowest energy. Column names: the usual formula aliases (``formula``,
        ``composition``, ...) and :data:`FORMATION_ENERGY_ALIASES`.

        Raises:
            InputError: missing file or column, no rows, a bad formula or a
                non-numeric / non-finite energy (names the file, row and value).
        """
        path: str | Path | None = None
        if not isinstance(table, pd.DataFrame):
            path = table
            df = _read(path)
        else:
            df = table
        energies = _lowest_per_formula(
            df, path=path, formula_column=formula_column, energy_column=energy_column
        )
        where = source if source is not None else (str(path) if path is not None else "table")
        return cls(energies, source=where, exclude_systems=exclude_systems)

    @classmethod
    def from_dataset(
        cls,
        name: str = DEFAULT_HULL_DATASET,
        *,
        path: str | Path | None = None,
        exclude_systems: Iterable[str | Iterable[str]] = (),
        to_mp2020: bool | None = None,
    ) -> HullReference:
        """A reference from a named formation-energy dataset (default ``mp-e-form``).

        The table is parsed once per process and file; held-out systems are
        applied on top of that.

        Args:
            name: registry name or file.
            path: explicit file for the name.
            exclude_systems: chemical systems whose formulas are left out.
            to_mp2020: move legacy-corrected energies onto the MP2020 scale of
                CHGNet (:func:`gapforge.structure.energy_scale.legacy_to_mp2020`);
                default: for the datasets of :data:`LEGACY_CORRECTED_DATASETS`.

        Raises:
            DatasetNotFoundError: the dataset is not available.
        """
        from gapforge.data.registry import REGISTRY, resolve

        entry = REGISTRY.get(name)
        if entry is not None and entry.kind != "formation_energy":
            raise InputError(f"dataset {name} has no formation energies (kind {entry.kind})")
        file = resolve(name, path=path)
        energies = _energies_of_file(str(Path(file).resolve()), Path(file).stat().st_mtime_ns)
        src = f"{name} ({file})" if entry is not None else str(file)
        if to_mp2020 is None:
            to_mp2020 = name in LEGACY_CORRECTED_DATASETS
        if to_mp2020:
            energies = _on_mp2020_scale(energies)
            src += ", moved onto the MP2020 correction scale"
        return cls(energies, source=src, exclude_systems=exclude_systems)

    @classmethod
    def from_materials_project(
        cls,
        elements: Sequence[str],
        *,
        api_key: str | None = None,
        rester: Any = None,
        exclude_systems: Iterable[str | Iterable[str]] = (),
    ) -> HullReference:
        """A reference from the live Materials Project: every phase within ``elements``.

        Queries ``materials.summary.search`` for the chemical systems made of
        ``elements`` (all subsystems with two or more elements) and keeps each
        formula's lowest ``formation_energy_per_atom``.

        Args:
            elements: the elements the reference must cover (e.g. a candidate's).
            api_key: Materials Project API key (default ``MP_API_KEY``).
            rester: an open ``MPRester`` or a stand-in replaying recorded responses.
            exclude_systems: chemical systems whose formulas are left out.

        Raises:
            DependencyError: ``mp-api`` is not installed.
            GapforgeError: no API key, or the query failed.
        """
        system = chemical_system(list(elements))
        chemsys = ["-".join(sorted(s)) for s in _subsystems(system)]
        query = {"chemsys": chemsys, "fields": ["material_id", "formula_pretty", "formation_energy_per_atom"]}
        from gapforge.data.materials_project import search_summary

        docs = search_summary(query, api_key=api_key, rester=rester)
        rows = []
        for doc in docs:
            get = doc.get if isinstance(doc, dict) else lambda k, d=doc: getattr(d, k, None)
            formula, ef = get("formula_pretty"), get("formation_energy_per_atom")
            if formula is None or ef is None:
                log.warning(
                    "skipping Materials Project entry %s without formation energy", get("material_id")
                )
                continue
            rows.append({"formula": str(formula), "formation_energy_per_atom": float(ef)})
        df = pd.DataFrame(rows, columns=["formula", "formation_energy_per_atom"])
        if df.empty:
            raise GapforgeError(f"Materials Project returned no phases for {'-'.join(sorted(system))}")
        # elements the query covered but that have no compound still count as covered
        ref = cls.from_table(df, source="materials-project", exclude_systems=exclude_systems)
        ref._elements = ref._elements | system
        return ref

    @classmethod
    def from_library(
        cls, library: Any, *, exclude_systems: Iterable[str | Iterable[str]] = ()
    ) -> HullReference:
        """A reference from a template library's rows that carry a formation energy."""
        from gapforge import columns as C

        table = library.table
        rows = table.loc[
            table[C.FORMATION_ENERGY_PER_ATOM].notna(), [C.REDUCED_FORMULA, C.FORMATION_ENERGY_PER_ATOM]
        ]
        return cls.from_table(
            rows,
            formula_column=C.REDUCED_FORMULA,
            energy_column=C.FORMATION_ENERGY_PER_ATOM,
            source=str(library.source),
            exclude_systems=exclude_systems,
        )

    def without_systems(self, systems: Iterable[str | Iterable[str]]) -> HullReference:
        """A copy without the formulas whose element set is one of ``systems``."""
        ref = HullReference(
            self._energies,
            source=self.source,
            exclude_systems=self._excluded | _systems(systems),
            cache_size=self._cache_size,
        )
        ref._elements = self._elements
        return ref

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        """Known compounds (elements not counted) after exclusions."""
        return sum(len(v) for v in self._by_system.values())

    @property
    def elements(self) -> frozenset[str]:
        """Elements that occur in some known phase."""
        return self._elements

    def formation_energy(self, formula: str) -> float:
        """The known (lowest) formation energy per atom of ``formula``; NaN if unknown or held out."""
        f = normalize_formula(formula)
        els = _element_set(f)
        if len(els) == 1:
            return 0.0
        return self._by_system.get(els, {}).get(f, float("nan"))

    def known_phases(self, system: str | Iterable[str]) -> dict[str, float]:
        """Known compounds (formula -> eV/atom) whose elements are a subset of ``system``."""
        out: dict[str, float] = {}
        for sub in _subsystems(chemical_system(system)):
            out.update(self._by_system.get(sub, {}))
        return out

    def diagram(
        self, system: str | Iterable[str], *, leave_out: Iterable[str] = ()
    ) -> tuple[PhaseDiagram, int]:
        """The phase diagram of ``system`` and its number of known compounds.

        Cached per system; with ``leave_out`` (reduced formulas) it is built
        without them and not cached.
        """
        key = chemical_system(system)
        drop = frozenset(leave_out)
        hit = None if drop else self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        entries = [PDEntry(Composition(el), 0.0, name=el) for el in sorted(key)]
        phases = {f: e for f, e in self.known_phases(key).items() if f not in drop}
        for formula, e in phases.items():
            comp = Composition(formula)
            entries.append(PDEntry(comp, e * comp.num_atoms, name=formula))
        built = (PhaseDiagram(entries), len(phases))
        if not drop:
            self._cache[key] = built
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return built

    def e_above_hull(
        self,
        composition: str | Composition,
        formation_energy_per_atom: float,
        *,
        leave_out: Iterable[str] = (),
    ) -> HullResult:
        """Energy above the known hull (eV/atom) and decomposition of one composition.

        Args:
            composition: formula or Composition of the candidate.
            formation_energy_per_atom: its formation energy (eV/atom) on the
                reference's energy scale (:attr:`energy_scale`).
            leave_out: known formulas (reduced) left out for this query only,
                e.g. the candidate's own formula in a leave-one-out validation.

        Returns:
            A :class:`HullResult`; NaN (with the reason) when the energy is not
            finite or an element is not in the reference.

        Raises:
            FormulaError: the formula cannot be read.
        """
        comp = composition if isinstance(composition, Composition) else Composition(_checked(composition))
        comp = comp.reduced_composition
        formula = comp.reduced_formula
        e = float(formation_energy_per_atom)
        if not math.isfinite(e):
            return HullResult(formula, float("nan"), reason="no formation energy")
        system = chemical_system(comp)
        missing = sorted(system - self._elements)
        if missing:
            return HullResult(
                formula, float("nan"), reason=f"reference has no phase with {', '.join(missing)}"
            )
        if len(system) == 1:
            return HullResult(formula, e, {formula: 1.0}, 0)
        diagram, n_known = self.diagram(system, leave_out=[normalize_formula(f) for f in leave_out])
        cand = PDEntry(comp, e * comp.num_atoms, name=formula)
        decomp, ehull = diagram.get_decomp_and_e_above_hull(cand, allow_negative=True, on_error="ignore")
        if decomp is None or ehull is None or not np.isfinite(ehull):
            return HullResult(
                formula, float("nan"), n_known_phases=n_known, reason="hull decomposition failed"
            )
        fractions: dict[str, float] = {}
        for entry, frac in decomp.items():
            name = entry.name  # the reduced formula (elements by symbol, not "O2")
            fractions[name] = fractions.get(name, 0.0) + float(frac)
        reason = "" if n_known else "no known compound in the system: hull of the elements only"
        return HullResult(formula, float(ehull), fractions, n_known, reason)

    def e_above_hull_many(
        self, compositions: Sequence[str | Composition], formation_energies: Sequence[float]
    ) -> list[HullResult]:
        """:meth:`e_above_hull` for many candidates (each system's diagram is built once, then cached)."""
        if len(compositions) != len(formation_energies):
            raise ValueError("compositions and formation energies differ in length")
        return [self.e_above_hull(c, e) for c, e in zip(compositions, formation_energies, strict=True)]


# ---------------------------------------------------------------------- reading tables


def _on_mp2020_scale(energies: Mapping[str, float]) -> dict[str, float]:
    from gapforge.structure.energy_scale import legacy_to_mp2020

    return {f: (legacy_to_mp2020(f, e) if len(_element_set(f)) > 1 else e) for f, e in energies.items()}


@functools.cache
def _element_set(formula: str) -> ChemSys:
    return frozenset(parse_formula(formula))


def _checked(formula: str) -> str:
    return normalize_formula(str(formula))


def _read(path: str | Path) -> pd.DataFrame:
    from gapforge.io import read_table

    df = read_table(path)
    if df.empty:
        raise InputError("no data rows", path=path)
    return df


def _lowest_per_formula(
    df: pd.DataFrame,
    *,
    path: str | Path | None,
    formula_column: str | None,
    energy_column: str | None,
) -> dict[str, float]:
    from gapforge import columns as C
    from gapforge.io import find_column

    if len(df) == 0:
        raise InputError("no data rows", path=path)
    fcol = formula_column or find_column(df, C.FORMULA_ALIASES, what="formula", path=path)
    ecol = energy_column or find_column(df, FORMATION_ENERGY_ALIASES, what="formation-energy", path=path)
    for col in (fcol, ecol):
        if col not in df.columns:
            raise InputError(f"no column {col!r}", path=path)
    cache: dict[str, str] = {}
    best: dict[str, float] = {}
    for row, (f, v) in enumerate(zip(df[fcol].tolist(), df[ecol].tolist(), strict=True), start=1):
        text = str(f).strip()
        reduced = cache.get(text)
        if reduced is None:
            try:
                reduced = normalize_formula(text)
            except FormulaError as exc:
                raise InputError(exc.message, path=path, row=row, value=f) from None
            cache[text] = reduced
        try:
            e = float(v)
        except (TypeError, ValueError):
            raise InputError("formation energy is not a number", path=path, row=row, value=v) from None
        if not math.isfinite(e):
            raise InputError("formation energy is missing or infinite", path=path, row=row, value=v)
        if e < best.get(reduced, math.inf):
            best[reduced] = e
    return best


@functools.lru_cache(maxsize=4)
def _energies_of_file(path: str, mtime_ns: int) -> dict[str, float]:
    del mtime_ns  # part of the cache key: a changed file is read again
    log.info("reading hull reference %s", path)
    return _lowest_per_formula(_read(path), path=path, formula_column=None, energy_column=None)


__all__ = ["BELOW_HULL_TOLERANCE", "DEFAULT_HULL_DATASET", "HullReference", "HullResult", "chemical_system"]

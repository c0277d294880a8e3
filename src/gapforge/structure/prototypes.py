"""Structure prototypes: how common each one is, and pymatgen's AFLOW prototype library.

A prototype here is an anonymised formula with a space group (``AB`` in
Fm-3m, 225: rock salt). :class:`PrototypeCounts` counts them over the known
Materials Project entries (``mp-formulas``: 123,805 entries with their space
groups); the template search uses the share of a candidate's anonymised
formula taken by each prototype as a prior (the common structure types win
ties in ElMD), as the template-based structure predictors do.

:func:`aflow_prototype_library` turns the 288 AFLOW prototypes shipped with
pymatgen (``pymatgen.analysis.prototypes``, the data of ``AflowPrototypeMatcher``;
Mehl et al., Comput. Mater. Sci. 136, S1 (2017)) into template-library rows,
which :func:`gapforge.structure.library.load_library` can append to the
Materials Project templates.
"""

from __future__ import annotations

import functools
import gzip
import json
import logging
import math
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import ascii_uppercase
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Composition, Structure

from gapforge import columns as C
from gapforge.formula import parse_formula

log = logging.getLogger(__name__)

#: Registry dataset with the space groups of the known entries.
PROTOTYPE_COUNT_DATASET = "mp-formulas"
#: material_id prefix of the AFLOW prototype templates.
AFLOW_ID_PREFIX = "aflow:"


@functools.cache
def _anonymized(formula: str) -> str:
    """Pymatgen's ``Composition.anonymized_formula`` of a reduced formula, without building one."""
    from gapforge.errors import FormulaError
    from gapforge.formula import integer_counts, parse_formula

    try:
        counts = sorted(integer_counts(parse_formula(formula)).values())
    except FormulaError:  # fractional amounts: let pymatgen decide
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Composition(formula).anonymized_formula
    return "".join(
        f"{letter}{'' if n == 1 else n}" for letter, n in zip(ascii_uppercase, counts, strict=False)
    )


@dataclass(frozen=True)
class PrototypeCounts:
    """How often each prototype (anonymised formula, space group) occurs among known entries.

    Attributes:
        by_prototype: (anonymised formula, space group) -> entries.
        by_anonymized: anonymised formula -> entries.
        by_formula: (reduced formula, space group) -> entries (for leaving a formula out).
        formula_totals: reduced formula -> entries.
        source: where the counts came from.
    """

    by_prototype: dict[tuple[str, int], int]
    by_anonymized: dict[str, int]
    by_formula: dict[tuple[str, int], int]
    formula_totals: dict[str, int]
    source: str = ""

    @classmethod
    def from_table(cls, table: pd.DataFrame, *, source: str = "") -> PrototypeCounts:
        """Counts from a table of formulas and space-group numbers (``pretty_formula``, ``spacegroup``)."""
        from gapforge.formula import normalize_formula
        from gapforge.io import find_column

        fcol = find_column(table, C.FORMULA_ALIASES, what="formula", path=source or None)
        scol = find_column(
            table, ("spacegroup", C.SPACEGROUP_NUMBER, "space_group"), what="space group", path=source or None
        )
        by_formula: Counter[tuple[str, int]] = Counter()
        for f, sg in zip(table[fcol].astype(str), table[scol], strict=True):
            try:
                by_formula[(normalize_formula(f), int(sg))] += 1
            except (ValueError, TypeError):
                continue  # an unreadable row does not count
        by_prototype: Counter[tuple[str, int]] = Counter()
        by_anon: Counter[str] = Counter()
        totals: Counter[str] = Counter()
        for (f, sg), n in by_formula.items():
            a = _anonymized(f)
            by_prototype[(a, sg)] += n
            by_anon[a] += n
            totals[f] += n
        return cls(dict(by_prototype), dict(by_anon), dict(by_formula), dict(totals), source)

    @classmethod
    def load(cls, name: str = PROTOTYPE_COUNT_DATASET) -> PrototypeCounts:
        """Counts of a named dataset or file (default ``mp-formulas``), read once per process."""
        from gapforge.data.registry import resolve

        return _load_counts(str(resolve(name).resolve()))

    def without_formulas(self, formulas: Iterable[str]) -> PrototypeCounts:
        """These counts with every entry of ``formulas`` (reduced formulas) removed.

        For a benchmark that holds known materials out: their own space groups must
        not vote for the prototypes of the templates built for them.
        """
        drop = set(formulas)
        kept = {(f, sg): n for (f, sg), n in self.by_formula.items() if f not in drop}
        by_prototype: Counter[tuple[str, int]] = Counter()
        by_anon: Counter[str] = Counter()
        totals: Counter[str] = Counter()
        for (f, sg), n in kept.items():
            a = _anonymized(f)
            by_prototype[(a, sg)] += n
            by_anon[a] += n
            totals[f] += n
        source = f"{self.source} without {len(self.formula_totals) - len(totals)} formulas"
        return PrototypeCounts(dict(by_prototype), dict(by_anon), kept, dict(totals), source)

    def share(self, anonymized: str, spacegroup: int, *, leave_out: str | None = None) -> float:
        """Share of the known entries with this anonymised formula that have this space group.

        Args:
            anonymized: anonymised formula (``AB2``).
            spacegroup: space-group number.
            leave_out: a reduced formula whose own entries are not counted
                (rebuilding a known material must not see itself).
        """
        n = self.by_prototype.get((anonymized, int(spacegroup)), 0)
        total = self.by_anonymized.get(anonymized, 0)
        if leave_out is not None:
            n -= self.by_formula.get((leave_out, int(spacegroup)), 0)
            total -= self.formula_totals.get(leave_out, 0)
        return n / total if total > 0 else 0.0

    def local_shares(
        self, formula: str, anonymized: str, *, k: int, leave_out: str | None = None
    ) -> dict[int, float]:
        """Space-group shares among the ``k`` known formulas nearest to ``formula`` by ElMD.

        Only known formulas with the same anonymised formula vote (each once, with
        its most common space group); ``leave_out`` does not vote. Returns
        space group -> share of the k votes.
        """
        names, groups, cum = self._pattern(anonymized)
        if not names:
            return {}
        from gapforge.structure.elmd import cumulative_matrix, elmd_matrix

        d = elmd_matrix(cumulative_matrix([formula]), cum)[0]
        if leave_out is not None:
            d = np.where(np.asarray(names, dtype=object) == leave_out, np.inf, d)
        order = np.argsort(d, kind="stable")[:k]
        order = order[np.isfinite(d[order])]
        if len(order) == 0:
            return {}
        votes = Counter(groups[i] for i in order)
        return {sg: n / len(order) for sg, n in votes.items()}

    def _pattern(self, anonymized: str) -> tuple[list[str], list[int], np.ndarray]:
        hit = _PATTERN_CACHE.get((id(self), anonymized))
        if hit is None:
            best: dict[str, tuple[int, int]] = {}
            for (f, sg), n in self.by_formula.items():
                if _anonymized(f) == anonymized and n > best.get(f, (0, 0))[0]:
                    best[f] = (n, sg)
            names = sorted(best)
            from gapforge.structure.elmd import MODIFIED_PETTIFOR, cumulative_matrix

            names = [f for f in names if all(el in MODIFIED_PETTIFOR for el in parse_formula(f))]
            hit = (names, [best[f][1] for f in names], cumulative_matrix(names))
            _PATTERN_CACHE[(id(self), anonymized)] = hit
        return hit


_PATTERN_CACHE: dict[tuple[int, str], tuple[list[str], list[int], np.ndarray]] = {}


@functools.lru_cache(maxsize=2)
def _load_counts(path: str) -> PrototypeCounts:
    from gapforge.io import read_table

    return PrototypeCounts.from_table(read_table(path), source=path)


def prototype_prior(share: float, *, floor: float = 1e-3) -> float:
    """``-ln(share)`` with a floor: 0 for the only prototype, larger for rarer ones."""
    return -math.log(max(share, floor))


@functools.cache
def _aflow_rows() -> pd.DataFrame:
    return _build_aflow_rows()


def aflow_prototype_library() -> pd.DataFrame:
    """The AFLOW prototypes of pymatgen as template-library rows (see :func:`_build_aflow_rows`)."""
    return _aflow_rows().copy()


def _build_aflow_rows() -> pd.DataFrame:
    """The AFLOW prototypes of pymatgen as template-library rows (CIF, formula, space group).

    Each prototype keeps the elements of its archetype (rock salt as NaCl,
    cinnabar as HgS); ``formation_energy_per_atom`` and ``e_above_hull`` are unknown.
    """
    import importlib.util

    from pymatgen.core import Structure
    from pymatgen.io.cif import CifWriter

    # the data file of pymatgen's AflowPrototypeMatcher, read without importing that module
    spec = importlib.util.find_spec("pymatgen.analysis.prototypes")
    path = Path(str(spec.origin if spec else "")).parent / "aflow_prototypes.json.gz"
    with gzip.open(path, "rt") as fh:
        raw = json.load(fh)
    rows = []
    for item in raw:
        tags = item.get("tags", {})
        label = str(tags.get("aflow", ""))
        try:
            structure = Structure.from_dict(item["snl"])  # a StructureNL dict holds the structure's fields
            sg = int(label.split("_")[2])
        except (KeyError, ValueError, IndexError) as exc:
            log.debug("skipping AFLOW prototype %s: %s", label, exc)
            continue
        comp = structure.composition
        rows.append(
            {
                C.MATERIAL_ID: f"{AFLOW_ID_PREFIX}{label}",
                C.REDUCED_FORMULA: comp.reduced_formula,
                C.ANONYMIZED_FORMULA: comp.anonymized_formula,
                C.NSITES: len(structure),
                C.SPACEGROUP_NUMBER: sg,
                C.BAND_GAP: float("nan"),
                C.FORMATION_ENERGY_PER_ATOM: float("nan"),
                C.E_ABOVE_HULL: float("nan"),
                C.CIF: str(CifWriter(structure)),
                C.LIBRARY_SOURCE: "aflow-prototypes",
            }
        )
    return pd.DataFrame(rows)


def prototype_key(anonymized: str, spacegroup: float) -> tuple[str, int] | None:
    """(anonymised formula, space group) or None when the space group is unknown."""
    if math.isnan(spacegroup):
        return None
    return (anonymized, int(spacegroup))


#: Symmetry tolerance (Å) of the Wyckoff labels (as the relaxed structures' space groups).
WYCKOFF_SYMPREC = 0.1


def wyckoff_label(structure: Structure, symprec: float = WYCKOFF_SYMPREC) -> str:
    """An AFLOW-style structure-type label: space group and the Wyckoff letters of each element.

    spglib's symmetry dataset (through ``SpacegroupAnalyzer``) gives every site's Wyckoff
    letter in the standard setting; each element contributes the sorted letters of its
    symmetry-distinct sites, and the elements are ordered by (site count, letters), so the
    label names no element: rock salt NaCl and MgO are both ``225_a_b``, CsCl-type ``221_a_b``,
    fluorite ``225_a_c``. Origin choices the standard setting leaves open can give one
    structure type two labels (fluorite as ``225_a_c`` or ``225_b_c``);
    :func:`structure_types` merges those by StructureMatcher. A structure spglib cannot
    read gets ``"?"``.

    Example:
        >>> from pymatgen.core import Lattice, Structure
        >>> wyckoff_label(Structure(Lattice.cubic(4.2), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]))
        '221_a_b'
    """
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        data = SpacegroupAnalyzer(structure, symprec=symprec).get_symmetry_dataset()
    except Exception:  # spglib failures: an unknown label, never a crash
        return "?"
    if data is None:
        return "?"
    wyckoffs = list(data.wyckoffs)
    orbits = list(data.equivalent_atoms)
    letters: dict[str, list[str]] = {}
    seen: set[int] = set()
    for site, orbit, letter in zip(structure, orbits, wyckoffs, strict=True):
        if int(orbit) in seen:
            continue
        seen.add(int(orbit))
        letters.setdefault(site.species_string, []).append(str(letter))
    counts = Counter(site.species_string for site in structure)
    groups = sorted((counts[el], "".join(sorted(ls))) for el, ls in letters.items())
    return "_".join([str(int(data.number)), *(g for _, g in groups)])


def same_structure_type(a: Structure, b: Structure) -> bool:
    """Whether two structures are one structure type whatever their elements (``fit_anonymous``)."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    if len(a.composition) != len(b.composition):
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(StructureMatcher().fit_anonymous(a, b))
    except Exception:  # matcher failures: not shown to be the same type
        return False


def structure_types(library: Any, rows: Sequence[int]) -> list[str]:
    """The structure type of each template row: its Wyckoff label, equal labels one type.

    Rows with different labels whose first structures match by :func:`same_structure_type`
    are merged (origin choices of one type). A row's type is named by the label of the
    first row of its type, so the result depends on ``rows`` order only in the names.

    Args:
        library: a :class:`~gapforge.structure.library.TemplateLibrary`.
        rows: template rows (usually all templates of one prototype).

    Returns:
        One type name per row.
    """
    labels = [library.wyckoff_label(int(r)) for r in rows]
    first: dict[str, int] = {}
    for r, lab in zip(rows, labels, strict=True):
        first.setdefault(lab, int(r))
    name: dict[str, str] = {}
    reps: list[tuple[str, int]] = []  # (type name, row of its first structure)
    for lab, r in first.items():
        hit = next((n for n, rr in reps if lab != "?" and library.same_structure_type(rr, r)), None)
        if hit is None:
            reps.append((lab, r))
            hit = lab
        name[lab] = hit
    return [name[lab] for lab in labels]


def shares_for(
    counts: PrototypeCounts, anonymized: str, spacegroups: Iterable[float], *, leave_out: str | None = None
) -> list[float]:
    """:meth:`PrototypeCounts.share` for several space groups (NaN space group -> 0)."""
    return [
        0.0 if math.isnan(sg) else counts.share(anonymized, int(sg), leave_out=leave_out)
        for sg in spacegroups
    ]


__all__ = [
    "AFLOW_ID_PREFIX",
    "PROTOTYPE_COUNT_DATASET",
    "WYCKOFF_SYMPREC",
    "PrototypeCounts",
    "aflow_prototype_library",
    "prototype_key",
    "prototype_prior",
    "same_structure_type",
    "shares_for",
    "structure_types",
    "wyckoff_label",
]

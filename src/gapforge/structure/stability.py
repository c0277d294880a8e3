"""Formation energy and energy above hull of relaxed candidates.

Energy scale. CHGNet 0.3.0 was trained on MPtrj energies that already carry the
Materials Project 2020 corrections (``MaterialsProject2020Compatibility``: the
GGA/GGA+U mixing and the anion/oxide corrections). Its energy per atom is
therefore used as an MP2020-corrected GGA(+U) energy *as is*; adding the
corrections again would count them twice (:func:`mp2020_correction_per_atom`
computes them, for checking this choice). The elemental references are the
Materials Project's lowest-energy unary entries of 2023-02-07 (uncorrected GGA,
and MP2020 applies no correction to pure elements), so

    E_form / atom = [E_CHGNet(compound) - sum_el n_el * mu_el] / N_atoms,

with mu_el the reference energy per atom of element el (eV/atom).

Hull. ``e_above_hull`` is measured against the known phases of the template
library that carry a formation energy (the MP-20 rows of the offline library),
plus the elements at zero, in formation-energy space. The known phases'
formation energies come from the Materials Project (DFT), the candidate's from
CHGNet; ``hull_known_phases`` counts the known compounds in the candidate's
chemical system; with none, ``e_above_hull`` is NaN (unknown), never the
formation energy against the elements dressed up as a hull distance.
A negative ``e_above_hull`` means the candidate lies below the known hull.
"""

from __future__ import annotations

import gzip
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition, Element, Structure

from gapforge import columns as C
from gapforge.errors import FormulaError, InputError
from gapforge.structure.elmd import as_composition
from gapforge.structure.library import DATA_SUBDIR, ELEMENTAL_REFERENCES_FILE, TemplateLibrary, find_data_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ElementalReferences:
    """Reference chemical potentials: energy per atom (eV/atom) of each element's ground state.

    Attributes:
        energy_per_atom: element symbol -> eV/atom.
        source: file they were read from.
    """

    energy_per_atom: dict[str, float]
    source: str = ""

    def mu(self, element: str) -> float:
        """Reference energy per atom of ``element``.

        Raises:
            FormulaError: no reference for the element.
        """
        try:
            return self.energy_per_atom[element]
        except KeyError as exc:
            raise FormulaError("no elemental reference energy", value=element) from exc


def load_elemental_references(path: str | Path | None = None) -> ElementalReferences:
    """Read pymatgen ``ComputedEntry`` dicts keyed by element (JSON, optionally gzipped).

    Args:
        path: default finds the Materials Project 2023-02-07 file on ``GAPFORGE_DATA_PATH``.

    Raises:
        InputError: the file is unreadable or an entry is malformed.
    """
    path = Path(path) if path is not None else find_data_file(ELEMENTAL_REFERENCES_FILE, DATA_SUBDIR)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as fh:
            raw = json.load(fh)
    except (OSError, json.JSONDecodeError, EOFError) as exc:
        raise InputError(f"cannot read elemental references ({exc})", path=path) from exc
    energies: dict[str, float] = {}
    for row, (el, entry) in enumerate(raw.items(), start=1):
        try:
            comp = Composition(entry["composition"])
            if len(comp.elements) != 1 or comp.elements[0].symbol != el:
                raise ValueError("composition is not the element itself")
            energies[el] = float(entry["energy"]) / comp.num_atoms
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"bad elemental reference entry ({exc})", path=path, row=row, value=el) from exc
    return ElementalReferences(energy_per_atom=energies, source=str(path))


def formation_energy_per_atom(
    composition: Composition | str, energy_per_atom: float, references: ElementalReferences
) -> float:
    """Formation energy per atom (eV/atom) from an MP2020-scale energy per atom."""
    comp = as_composition(composition)
    ref = sum(amt * references.mu(el) for el, amt in comp.get_el_amt_dict().items()) / comp.num_atoms
    return float(energy_per_atom - ref)


_U_ELEMENTS_NEED_ANION = ("O", "F")


def mp2020_correction_per_atom(structure: Structure | Composition | str) -> float:
    """MP2020 correction per atom (eV/atom) pymatgen would add to a GGA(+U) energy.

    GGA+U is assumed exactly where the Materials Project uses it (U elements in
    an oxide or fluoride). Only for checking the energy-scale choice; the
    stage itself does not add it to CHGNet energies.
    """
    from pymatgen.entries.compatibility import MaterialsProject2020Compatibility
    from pymatgen.entries.computed_entries import ComputedEntry

    comp = structure.composition if isinstance(structure, Structure) else as_composition(structure)
    compat = MaterialsProject2020Compatibility(check_potcar=False)
    symbols = {el.symbol for el in comp.elements}
    hubbards: dict[str, float] = {}
    for anion in _U_ELEMENTS_NEED_ANION:
        if anion in symbols:
            hubbards = {el: u for el, u in compat.u_settings[anion].items() if el in symbols}
            break
    params = {
        "run_type": "GGA+U" if hubbards else "GGA",
        "is_hubbard": bool(hubbards),
        "hubbards": hubbards,
        "potcar_spec": [],
    }
    entry = ComputedEntry(comp, 0.0, parameters=params)
    try:
        with warnings.catch_warnings():  # "failed to guess oxidation states" for intermetallics
            warnings.simplefilter("ignore")
            adjustments = compat.get_adjustments(entry)
    except Exception as exc:  # the scheme refuses some entries
        log.debug("MP2020 correction not applicable to %s: %s", comp.reduced_formula, exc)
        return float("nan")
    return float(sum(a.value for a in adjustments) / comp.num_atoms)


class HullReference:
    """Known phases with formation energies, for energies above the hull.

    Args:
        library: template library; rows with ``formation_energy_per_atom`` are used.
        exclude_formulas: reduced formulas to leave out (e.g. the candidate itself
            in validation).
    """

    def __init__(self, library: TemplateLibrary, *, exclude_formulas: frozenset[str] = frozenset()) -> None:
        table = library.table
        known = table[C.FORMATION_ENERGY_PER_ATOM].notna().to_numpy()
        rows = table.loc[known, [C.REDUCED_FORMULA, C.FORMATION_ENERGY_PER_ATOM]]
        # Lowest formation energy per formula (polymorphs).
        rows = rows.groupby(C.REDUCED_FORMULA, as_index=False)[C.FORMATION_ENERGY_PER_ATOM].min()
        self._formulas = rows[C.REDUCED_FORMULA].tolist()
        self._eform = rows[C.FORMATION_ENERGY_PER_ATOM].to_numpy(dtype=float)
        self._elements = [frozenset(Composition(f).get_el_amt_dict()) for f in self._formulas]
        self._exclude = exclude_formulas

    def __len__(self) -> int:
        return len(self._formulas)

    def e_above_hull(self, composition: Composition | str, e_form_per_atom: float) -> tuple[float, int]:
        """Energy above the known hull (eV/atom) and the number of known compounds used.

        Returns ``(nan, n)`` when ``e_form_per_atom`` is not finite, and
        ``(nan, 0)`` when no known compound lies in the candidate's chemical system.
        """
        comp = as_composition(composition).reduced_composition
        if not np.isfinite(e_form_per_atom):
            return float("nan"), 0
        chemsys = frozenset(el.symbol for el in comp.elements)
        entries = [PDEntry(Composition({Element(el): 1}), 0.0) for el in chemsys]
        n_known = 0
        for f, e, els in zip(self._formulas, self._eform, self._elements, strict=True):
            if len(els) > 1 and els <= chemsys and f not in self._exclude:
                c = Composition(f)
                entries.append(PDEntry(c, float(e) * c.num_atoms))
                n_known += 1
        if len(chemsys) == 1:
            return float(e_form_per_atom), 0
        if n_known == 0:
            # an elements-only "hull" would just repeat the formation energy and read as
            # "on the hull"; with no known compound in the system the hull is unknown
            return float("nan"), 0
        diagram = PhaseDiagram(entries)
        cand = PDEntry(comp, float(e_form_per_atom) * comp.num_atoms)
        _, ehull = diagram.get_decomp_and_e_above_hull(cand, allow_negative=True)
        return float(ehull), n_known

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

with mu_el the reference energy per atom of element el (eV/atom). The default
hull reference (``mp-e-form``, legacy MP corrections) is moved onto this MP2020
scale per anion (:mod:`gapforge.structure.energy_scale`, measured by
``benchmarks/bench_energy_scale.py``).

Hull. ``e_above_hull`` is measured against :class:`gapforge.structure.hull.HullReference`,
by default every Materials Project formation energy of ``mp-e-form`` (lowest
per formula, elements at zero), in formation-energy space. The known phases'
formation energies come from the Materials Project (DFT), the candidate's from
CHGNet; ``hull_known_phases`` counts the known compounds in the candidate's
chemical system and ``decomposition`` names the hull phases at its composition.
A negative ``e_above_hull`` means the candidate lies below the known hull.

Stability call. ``p_stable`` is the probability that a candidate lies within
:data:`STABLE_WITHIN` eV/atom of the hull given its rebuilt structure's energy above
hull, a logistic curve fitted on known materials rebuilt from their formula alone
(``benchmarks/bench_stability_calibration.py``). It is not a step at 0.1 eV/atom: a
wrong rebuilt structure can sit far above the hull while the material is stable.
"""

from __future__ import annotations

import gzip
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pymatgen.core import Composition, Structure

from gapforge.errors import FormulaError, InputError
from gapforge.structure.elmd import as_composition
from gapforge.structure.hull import HullReference, HullResult
from gapforge.structure.library import DATA_SUBDIR, ELEMENTAL_REFERENCES_FILE, find_data_file

log = logging.getLogger(__name__)

#: "Within this many eV/atom of the hull": the stability call (F1 in the validation, ``p_stable``).
STABLE_WITHIN = 0.1
#: ``(a, b)`` of P(stable) = 1 / (1 + exp(-(a - b e))), e = rebuilt energy above hull (eV/atom,
#: clipped to [-1, 2]). Maximum likelihood on 242 known materials of bench_structure.py (200 test,
#: learned template ranking, + 44 unstable; base rate 0.82); 5-fold cross-validated Brier 0.126
#: against 0.152 for the base rate and 0.140 for a step at 0.1 (results/stability_calibration.md).
P_STABLE_COEFFICIENTS = (1.996, 8.095)


def p_stable(e_above_hull: np.ndarray | float) -> np.ndarray:
    """P(within :data:`STABLE_WITHIN` eV/atom of the hull) from rebuilt energies above hull (NaN: NaN)."""
    e = np.asarray(e_above_hull, dtype=float)
    a, b = P_STABLE_COEFFICIENTS
    return 1.0 / (1.0 + np.exp(-(a - b * np.clip(e, -1.0, 2.0))))


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


__all__ = [
    "P_STABLE_COEFFICIENTS",
    "STABLE_WITHIN",
    "ElementalReferences",
    "HullReference",
    "HullResult",
    "formation_energy_per_atom",
    "load_elemental_references",
    "mp2020_correction_per_atom",
    "p_stable",
]

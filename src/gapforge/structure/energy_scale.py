"""One energy scale for candidates and known phases: the Materials Project 2020 corrections.

CHGNet 0.3.0 was trained on MPtrj energies that carry the Materials Project 2020
corrections (``MaterialsProject2020Compatibility``), so the candidates'
formation energies are on that scale; so are today's Materials Project values
(the template library's MP 2023 formation energies, the live ``mp-api``).
``mp-e-form`` (matbench, MP database of 2018-19) carries the *legacy*
corrections, which had no anion correction for Br, I, Se and Te and a different
one for S, Sb, Si and the others. Compared on the same ground-state formulas
(``benchmarks/bench_energy_scale.py``: 566 formulas of the template library
found in ``mp-e-form``) the difference is, per class, a constant per atom of
the anion (the class's most electronegative element): it reproduces MP2020's own
constants where legacy had none (Br -0.531 against MP2020's -0.534 eV per Br
atom; Se -0.473 / -0.472; Te -0.425 / -0.422; I -0.376 / -0.379) with a
median absolute deviation of 0.002-0.008 eV per anion atom.

The hull reference from ``mp-e-form`` is therefore moved onto the MP2020 scale
by adding, to each compound, ``offset[anion] * x_anion`` (:func:`legacy_to_mp2020`;
``HullReference.from_dataset`` does it for ``mp-e-form`` unless ``to_mp2020=False``).
Without it a bromide candidate would sit ~0.3 eV/atom below a hull of
uncorrected bromides (Br class median difference -0.321 eV/atom); with it the
2-fold cross-validated per-formula difference falls from 0.318 to 0.024 eV/atom
for bromides, 0.245 to 0.004 for selenides, 0.096 to 0.032 for sulfides, 0.022
to 0.014 for oxides (all 566 formulas: 0.045 to 0.015; the 286 intermetallics
stay at 0.014). Placed against the hull with their own formula left out, the
library's 1,353 MP 2023 formation energies give energies above hull within
0.0088 eV/atom of MP 2023's (MAE; 0.0147 without the correction) and agree on
"within 0.1 eV/atom" for 98.7 % of them (95.9 % without).

GGA+U oxides and fluorides get their anion's offset; the difference of the two
schemes' U-metal (mixing) corrections is not modelled (27 formulas, 2-fold
cross-validated difference 0.032 / 0.036 eV/atom before, 0.024 / 0.043 after).
"""

from __future__ import annotations

import functools
import math

from pymatgen.core import Element

from gapforge.formula import parse_formula

#: Anions the MP2020 scheme corrects.
MP2020_ANIONS: frozenset[str] = frozenset(
    {"F", "O", "Cl", "N", "Br", "I", "S", "Se", "C", "H", "Te", "Sb", "Si"}
)
#: Metals the Materials Project computes with GGA+U in oxides and fluorides.
U_METALS = frozenset({"Co", "Cr", "Fe", "Mn", "Mo", "Ni", "V", "W"})
#: Class of compositions with no anion (intermetallics and the like).
NO_ANION = "none"

#: MP2020 minus legacy formation energy per atom of the anion (eV per anion atom): the median of
#: (E_form MP 2023 - E_form mp-e-form) / x_anion over ground states of each class, fitted by
#: ``python benchmarks/bench_energy_scale.py`` (results/energy_scale.json, ``offset_per_anion_atom``).
LEGACY_TO_MP2020_PER_ANION_ATOM: dict[str, float] = {
    "Br": -0.531,
    "C": -0.002,
    "Cl": -0.032,
    "F": 0.028,
    "H": -0.028,
    "I": -0.376,
    "N": 0.012,
    "O": 0.025,
    "S": 0.163,
    "Sb": -0.192,
    "Se": -0.473,
    "Si": 0.067,
    "Te": -0.425,
}


@functools.cache
def _electronegativity(symbol: str) -> float:
    x = Element(symbol).X
    return 0.0 if math.isnan(x) else float(x)  # noble gases: NaN -> never the anion


def anion_of(formula: str) -> str | None:
    """The correction anion of a compound: its most electronegative element, if MP2020 corrects it."""
    els = parse_formula(formula)
    if len(els) < 2:
        return None
    top = max(els, key=lambda s: (_electronegativity(s), s))
    return top if top in MP2020_ANIONS else None


def anion_class(formula: str) -> str:
    """The correction class of a formula (``"Fe2O3"`` -> ``"O+U"``, ``"NiAl"`` -> ``"none"``).

    The anion, ``+U`` for a GGA+U metal in an oxide or fluoride, ``none`` without an anion.
    """
    anion = anion_of(formula)
    if anion is None:
        return NO_ANION
    if anion in ("O", "F") and set(parse_formula(formula)) & U_METALS:
        return f"{anion}+U"
    return anion


def anion_fraction(formula: str) -> float:
    """Atom fraction of the correction anion (0 without one)."""
    anion = anion_of(formula)
    if anion is None:
        return 0.0
    amounts = parse_formula(formula)
    return amounts[anion] / sum(amounts.values())


def legacy_to_mp2020(formula: str, formation_energy_per_atom: float) -> float:
    """A legacy-corrected (``mp-e-form``) formation energy per atom moved onto the MP2020 scale."""
    anion = anion_of(formula)
    if anion is None:
        return float(formation_energy_per_atom)
    return float(formation_energy_per_atom) + LEGACY_TO_MP2020_PER_ANION_ATOM[anion] * anion_fraction(formula)


__all__ = [
    "LEGACY_TO_MP2020_PER_ANION_ATOM",
    "MP2020_ANIONS",
    "NO_ANION",
    "U_METALS",
    "anion_class",
    "anion_fraction",
    "anion_of",
    "legacy_to_mp2020",
]

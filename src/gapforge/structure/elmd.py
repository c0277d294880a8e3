"""Element Mover's Distance (ElMD) on the modified Pettifor scale, vectorised.

ElMD (Hargreaves et al., Chem. Mater. 32, 10610 (2020)) is the earth mover's
distance between two compositions, each a distribution of atomic fractions over
the elements, with the ground distance between two elements taken from a
chemical scale. On the one-dimensional modified Pettifor scale (Glawe et al.,
New J. Phys. 18, 093011 (2016)) the earth mover's distance has a closed form:
the L1 distance between the two cumulative distributions along the scale,
``sum_k |F_a(k) - F_b(k)|`` with unit spacing. So for many formulas at once it
is one ``scipy.spatial.distance.cdist(..., "cityblock")`` between cumulative
vectors, and for one pair it is ``scipy.stats.wasserstein_distance``.

This is an independent implementation (MIT) of the ``mod_petti`` metric of the
GPL-3 ``ElMD`` package; the tests check the numbers against that package.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from pymatgen.core import Composition, Element
from scipy.spatial.distance import cdist
from scipy.stats import wasserstein_distance

from gapforge.errors import FormulaError

#: Elements in the order of the modified Pettifor scale (Glawe et al. 2016),
#: position 0 (He) to 102 (H). A smaller difference in position means more
#: chemically similar elements.
MODIFIED_PETTIFOR_ORDER: tuple[str, ...] = (
    "He", "Ne", "Ar", "Kr", "Xe", "Rn", "Fr", "Cs", "Rb", "K", "Na", "Li", "Ra", "Ba", "Sr",
    "Ca", "Eu", "Yb", "Lu", "Tm", "Y", "Er", "Ho", "Dy", "Tb", "Gd", "Sm", "Pm", "Nd", "Pr",
    "Ce", "La", "Ac", "Th", "Pa", "U", "Np", "Pu", "Am", "Cm", "Bk", "Cf", "Es", "Fm", "Md",
    "No", "Lr", "Sc", "Zr", "Hf", "Ti", "Ta", "Nb", "V", "Cr", "Mo", "W", "Re", "Tc", "Os",
    "Ru", "Ir", "Rh", "Pt", "Pd", "Au", "Ag", "Cu", "Ni", "Co", "Fe", "Mn", "Mg", "Zn", "Cd",
    "Hg", "Be", "Al", "Ga", "In", "Tl", "Pb", "Sn", "Ge", "Si", "B", "C", "N", "P", "As",
    "Sb", "Bi", "Po", "Te", "Se", "S", "O", "At", "I", "Br", "Cl", "F", "H",
)  # fmt: skip

#: Element symbol -> position on the modified Pettifor scale (0..102).
MODIFIED_PETTIFOR: dict[str, int] = {el: i for i, el in enumerate(MODIFIED_PETTIFOR_ORDER)}
# Hydrogen isotopes sit with hydrogen.
MODIFIED_PETTIFOR.update({"D": MODIFIED_PETTIFOR["H"], "T": MODIFIED_PETTIFOR["H"]})

N_SCALE = len(MODIFIED_PETTIFOR_ORDER)
_POSITIONS = np.arange(N_SCALE, dtype=float)


def as_composition(formula: Composition | str) -> Composition:
    """Parse ``formula`` once at the boundary.

    Raises:
        FormulaError: the formula cannot be parsed or is empty.
    """
    if isinstance(formula, Composition):
        comp = formula
    else:
        try:
            comp = Composition(str(formula).strip())
        except Exception as exc:  # pymatgen raises ValueError, KeyError, ...
            raise FormulaError("cannot parse formula", value=formula) from exc
    if comp.num_atoms <= 0:
        raise FormulaError("empty formula", value=formula)
    for el in comp.elements:
        symbol = getattr(el, "symbol", str(el))
        if not Element.is_valid_symbol(symbol):
            raise FormulaError(f"unknown element {symbol}", value=formula)
    return comp


def pettifor_position(element: str) -> int:
    """Position of ``element`` on the modified Pettifor scale.

    Raises:
        FormulaError: the element is not on the scale (elements beyond Lr other than H).
    """
    try:
        return MODIFIED_PETTIFOR[element]
    except KeyError as exc:
        raise FormulaError("element not on the modified Pettifor scale", value=element) from exc


def fraction_vector(formula: Composition | str) -> np.ndarray:
    """Atomic fractions of ``formula`` along the modified Pettifor scale, shape ``(103,)``."""
    comp = as_composition(formula)
    vec = np.zeros(N_SCALE)
    total = comp.num_atoms
    for el, amount in comp.get_el_amt_dict().items():
        vec[pettifor_position(el)] += amount / total
    return vec


def cumulative_matrix(formulas: Iterable[Composition | str]) -> np.ndarray:
    """Cumulative fraction vectors of ``formulas``, shape ``(n_formulas, 103)``.

    Row ``i`` is ``cumsum(fraction_vector(formulas[i]))``; ElMD between two rows
    is the L1 distance between them.
    """
    rows = [fraction_vector(f) for f in formulas]
    if not rows:
        return np.zeros((0, N_SCALE))
    return np.cumsum(np.vstack(rows), axis=1)


def elmd(formula_a: Composition | str, formula_b: Composition | str) -> float:
    """ElMD between two formulas on the modified Pettifor scale (one pair).

    Computed with ``scipy.stats.wasserstein_distance`` (the 1-D earth mover's
    distance) on the scale positions weighted by atomic fraction.
    """
    return float(
        wasserstein_distance(_POSITIONS, _POSITIONS, fraction_vector(formula_a), fraction_vector(formula_b))
    )


def elmd_matrix(
    formulas_a: Sequence[Composition | str] | np.ndarray,
    formulas_b: Sequence[Composition | str] | np.ndarray,
    *,
    chunk_size: int = 2048,
) -> np.ndarray:
    """Pairwise ElMD, shape ``(len(formulas_a), len(formulas_b))``.

    Either argument may instead be a precomputed cumulative matrix from
    :func:`cumulative_matrix` (a 2-D float array with 103 columns), which is how
    a template library searched many times avoids re-parsing its formulas.
    ``chunk_size`` rows of ``formulas_a`` are done at a time to bound memory.
    """
    cum_a = _as_cumulative(formulas_a)
    cum_b = _as_cumulative(formulas_b)
    out = np.empty((cum_a.shape[0], cum_b.shape[0]))
    for start in range(0, cum_a.shape[0], chunk_size):
        stop = start + chunk_size
        out[start:stop] = cdist(cum_a[start:stop], cum_b, metric="cityblock")
    return out


def _as_cumulative(x: Sequence[Composition | str] | np.ndarray) -> np.ndarray:
    if isinstance(x, np.ndarray) and x.ndim == 2 and x.shape[1] == N_SCALE and x.dtype.kind == "f":
        return x
    return cumulative_matrix(list(x))

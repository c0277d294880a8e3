"""What a formula must be to be labelled, generated or screened: element exclusion and the compound rule.

* **Element exclusion** (:data:`DEFAULT_EXCLUDED_ELEMENTS`): radioactive elements
  (Tc, Pm, and every element from Po, Z = 84, on) and the noble gases are out
  by default: no one synthesises a wide-gap insulator of Po or Xe for a device,
  and the Materials Project data on them are thin. One list, applied to the
  campaign's proposals, to the generated formulas and to the screen.
* **Compound rule** (:class:`CompoundRule`): the campaign labels compounds.
  ``no-intermetallics`` (default): at least two elements, at least one of
  them not a metal; ``compounds``: at least two elements; ``any``: every
  decoded formula (the paper's rule).
* **Validity** (:class:`Validity`): ``smact`` (default) also requires a
  SMACT-valid formula; ``decodable`` takes any formula (the paper's rule).

Metals are pymatgen's ``Element.is_metal`` (alkali, alkaline-earth, transition,
post-transition, lanthanides, actinides); metalloids (B, Si, Ge, As, Sb, Te)
are not metals, so NiSb stays a compound a campaign may label.

Example:
    >>> compound_mask(["NaCl", "O2", "TiAl", "XeF2"], CompoundRule.NO_INTERMETALLICS).tolist()
    [True, False, False, True]
    >>> excluded_mask(["NaCl", "XeF2", "PoO2"], DEFAULT_EXCLUDED_ELEMENTS).tolist()
    [False, True, True]
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from enum import StrEnum

import numpy as np


class CompoundRule(StrEnum):
    """Which decoded formulas a campaign labels (see the module doc)."""

    NO_INTERMETALLICS = "no-intermetallics"
    COMPOUNDS = "compounds"
    ANY = "any"


class Validity(StrEnum):
    """What a campaign proposal must decode to: a SMACT-valid formula, or any formula."""

    SMACT = "smact"
    DECODABLE = "decodable"


#: The campaign's default validity rule (discover and ``gapforge campaign`` share it).
DEFAULT_VALIDITY = Validity.SMACT
#: The campaign's default compound rule.
DEFAULT_COMPOUND_RULE = CompoundRule.NO_INTERMETALLICS


def _default_excluded() -> tuple[str, ...]:
    from pymatgen.core.periodic_table import Element

    out = [el.symbol for el in Element if el.Z in (43, 61) or el.Z >= 84 or el.is_noble_gas]
    return tuple(sorted(set(out), key=lambda s: Element(s).Z))


#: Radioactive elements (Tc, Pm, Z >= 84) and the noble gases, in atomic-number order.
DEFAULT_EXCLUDED_ELEMENTS: tuple[str, ...] = _default_excluded()


def check_elements(symbols: Collection[str]) -> tuple[str, ...]:
    """Normalise an element list (order of atomic number, no duplicates).

    Raises:
        InputError: a symbol that is not an element.
    """
    from pymatgen.core.periodic_table import Element

    from gapforge.errors import InputError

    out = set()
    for s in symbols:
        try:
            out.add(Element(str(s).strip()).symbol)
        except ValueError:
            raise InputError("not an element symbol in the excluded-element list", value=s) from None
    return tuple(sorted(out, key=lambda s: Element(s).Z))


def parse_element_list(text: str) -> tuple[str, ...]:
    """``"Tc, Pm,Xe"`` -> ``("Tc", "Pm", "Xe")``; ``"none"``/``""``: ``()``; ``"default"``: the default list.

    Raises:
        InputError: a symbol that is not an element.
    """
    text = text.strip()
    if text.lower() == "default":
        return DEFAULT_EXCLUDED_ELEMENTS
    if text.lower() in ("", "none"):
        return ()
    return check_elements([t for t in text.replace(";", ",").split(",") if t.strip()])


@functools.lru_cache(maxsize=100_000)
def _elements_of(formula: str) -> tuple[str, ...] | None:
    from pymatgen.core import Composition

    try:
        comp = Composition(formula)
    except Exception:  # pymatgen raises several types on bad text
        return None
    return tuple(el.symbol for el in comp.elements if comp[el] > 0)


@functools.lru_cache(maxsize=256)
def _is_metal(symbol: str) -> bool:
    from pymatgen.core.periodic_table import Element

    return bool(Element(symbol).is_metal)


def compound_mask(formulas: Sequence[str | None], rule: CompoundRule | str) -> np.ndarray:
    """``True`` where a formula passes the compound rule (``None``/unparsable: ``False``)."""
    rule = CompoundRule(rule)
    out = np.zeros(len(formulas), dtype=bool)
    for i, f in enumerate(formulas):
        els = _elements_of(f) if f else None
        if els is None:
            continue
        if rule is CompoundRule.ANY:
            out[i] = True
        elif len(els) >= 2:
            out[i] = rule is CompoundRule.COMPOUNDS or not all(_is_metal(e) for e in els)
    return out


def excluded_mask(formulas: Sequence[str | None], excluded: Collection[str]) -> np.ndarray:
    """``True`` where a formula contains an excluded element (``None``/unparsable: ``False``)."""
    bad = set(excluded)
    out = np.zeros(len(formulas), dtype=bool)
    if not bad:
        return out
    for i, f in enumerate(formulas):
        els = _elements_of(f) if f else None
        out[i] = els is not None and any(e in bad for e in els)
    return out


def excluded_counts_mask(
    counts: np.ndarray, elements: Sequence[str], excluded: Collection[str]
) -> np.ndarray:
    """Vectorised :func:`excluded_mask` on element counts ``(N, E)`` over ``elements``."""
    cols = [j for j, e in enumerate(elements) if e in set(excluded)]
    if not cols:
        return np.zeros(len(counts), dtype=bool)
    return (np.asarray(counts)[:, cols] > 0).any(axis=1)


__all__ = [
    "DEFAULT_COMPOUND_RULE",
    "DEFAULT_EXCLUDED_ELEMENTS",
    "DEFAULT_VALIDITY",
    "CompoundRule",
    "Validity",
    "check_elements",
    "compound_mask",
    "excluded_counts_mask",
    "excluded_mask",
    "parse_element_list",
]

"""Formula parsing and the canonical formula key.

Every table in gapforge keys materials by pymatgen's
:attr:`Composition.reduced_formula`. Parsing a formula string with pymatgen
costs tens of microseconds, which matters when a million generated formulas
are decoded and screened, so this module has a fast path:

* :func:`parse_formula` reads simple formulas (``LiF``, ``Mg1Mn6O12``,
  ``Li0.5F0.5``) with one regular expression and falls back to pymatgen for
  anything else (brackets, oxidation states, hydrates).
* :func:`reduced_formula` builds pymatgen's reduced formula from integer
  counts by the same rules as :func:`pymatgen.core.composition.reduce_formula`
  (electronegativity order, alphabetical tie-break, polyanion brackets,
  ``Composition.special_formulas``); the tests check it against pymatgen on
  every formula of the Materials Project data.
"""

from __future__ import annotations

import functools
import math
import re
import warnings
from collections.abc import Mapping
from fractions import Fraction

from pymatgen.core import Composition, Element

from gapforge.errors import FormulaError

_TOKEN = re.compile(r"([A-Z][a-z]?)(\d+(?:\.\d+)?|\.\d+)?")
_SIMPLE = re.compile(r"^(?:[A-Z][a-z]?(?:\d+(?:\.\d+)?|\.\d+)?)+$")
_AMOUNT_TOL = 1e-8


@functools.cache
def _element_table() -> dict[str, tuple[int, float]]:
    """Symbol -> (atomic number, Pauling electronegativity or inf)."""
    table = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns for elements without a Pauling X
        for el in Element:
            x = el.X
            table[el.symbol] = (el.Z, math.inf if math.isnan(x) else float(x))
    return table


def known_elements() -> frozenset[str]:
    """Symbols of every element pymatgen knows."""
    return frozenset(_element_table())


def atomic_number(symbol: str) -> int:
    """Atomic number of ``symbol``; raises :class:`FormulaError` if unknown."""
    try:
        return _element_table()[symbol][0]
    except KeyError:
        raise FormulaError("unknown element", value=symbol) from None


def parse_formula(formula: str) -> dict[str, float]:
    """Parse a formula into ``{symbol: amount}`` (amounts summed over repeats).

    Args:
        formula: e.g. ``"LiF"``, ``"Mg1 Mn6 O12"``, ``"Ba(FeO2)2"``.

    Raises:
        FormulaError: empty, unparsable, an unknown element or a non-positive
            amount.
    """
    if not isinstance(formula, str):
        raise FormulaError("formula is not a string", value=formula)
    text = formula.replace(" ", "")
    if not text:
        raise FormulaError("empty formula", value=formula)
    table = _element_table()
    amounts: dict[str, float] = {}
    if _SIMPLE.match(text):
        for sym, num in _TOKEN.findall(text):
            if sym not in table:
                raise FormulaError("unknown element", value=f"{sym} in {formula}")
            amt = float(num) if num else 1.0
            amounts[sym] = amounts.get(sym, 0.0) + amt
    else:
        try:
            comp = Composition(text)
        except (ValueError, KeyError, TypeError) as exc:
            raise FormulaError("cannot parse formula", value=formula) from exc
        for el, amt in comp.get_el_amt_dict().items():
            if el not in table:
                raise FormulaError("unknown element", value=f"{el} in {formula}")
            amounts[el] = amounts.get(el, 0.0) + float(amt)
    for sym, amt in amounts.items():
        if not amt > _AMOUNT_TOL:
            raise FormulaError("amount must be positive", value=f"{sym}{amt:g} in {formula}")
    if not amounts:
        raise FormulaError("cannot parse formula", value=formula)
    return amounts


def integer_counts(amounts: Mapping[str, float], *, formula: str | None = None) -> dict[str, int]:
    """Reduce amounts by their greatest common divisor to integer counts.

    Raises:
        FormulaError: an amount is not (close to) an integer.
    """
    ints: dict[str, int] = {}
    for sym, amt in amounts.items():
        rounded = round(amt)
        if abs(amt - rounded) > 1e-6 or rounded <= 0:
            shown = formula if formula is not None else "".join(f"{s}{a:g}" for s, a in amounts.items())
            raise FormulaError("fractional amount", value=f"{sym}{amt:g} in {shown}")
        ints[sym] = rounded
    factor = math.gcd(*ints.values())
    return {sym: n // factor for sym, n in ints.items()}


def _format_amount(n: float) -> str:
    if math.isclose(n, 1, abs_tol=_AMOUNT_TOL):
        return ""
    if math.isclose(n, round(n), abs_tol=_AMOUNT_TOL, rel_tol=0):
        return str(round(n))
    return str(round(n, 8))


def _reduce(counts: Mapping[str, int]) -> tuple[str, int]:
    table = _element_table()
    syms = sorted(counts, key=lambda s: (table[s][1], s))
    factor = math.gcd(*counts.values())
    poly = ""
    if len(syms) >= 3 and table[syms[-1]][1] - table[syms[-2]][1] < 1.65:
        sub = {s: counts[s] // factor for s in syms[-2:]}
        poly_form, poly_factor = _reduce(sub)
        if poly_factor != 1:
            poly = f"({poly_form}){poly_factor}"
            syms = syms[:-2]
    body = "".join(f"{s}{_format_amount(counts[s] / factor)}" for s in syms)
    return body + poly, factor


@functools.cache
def _special() -> dict[str, str]:
    return dict(Composition.special_formulas)


def reduced_formula(counts: Mapping[str, int]) -> str:
    """Pymatgen's reduced formula of integer element counts.

    Equal to ``Composition(counts).reduced_formula`` (checked in the tests),
    about ten times faster.
    """
    formula, _ = _reduce(counts)
    return _special().get(formula, formula)


def normalize_formula(formula: str) -> str:
    """Return pymatgen's reduced formula of ``formula``.

    Integer formulas use the fast path; fractional ones go through pymatgen
    and are accepted only when they scale to integers (``Li0.5F0.5`` is
    ``LiF``; ``Li0.33F`` is rejected).

    Raises:
        FormulaError: the formula cannot be parsed, has unknown elements or
            fractional amounts that do not scale to integers.
    """
    amounts = parse_formula(formula)
    if all(abs(a - round(a)) < 1e-6 for a in amounts.values()):
        return reduced_formula(integer_counts(amounts))
    fracs = {s: Fraction(a).limit_denominator(100) for s, a in amounts.items()}
    if any(abs(amounts[s] - float(f)) > 1e-6 for s, f in fracs.items()):
        raise FormulaError("fractional amounts (disordered compositions are not supported)", value=formula)
    scale = math.lcm(*(f.denominator for f in fracs.values()))
    return reduced_formula({s: int(f * scale) for s, f in fracs.items()})

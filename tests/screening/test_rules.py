"""Element exclusion and the compound rule."""

from __future__ import annotations

import pytest

from gapforge.errors import InputError
from gapforge.screening.rules import (
    DEFAULT_EXCLUDED_ELEMENTS,
    CompoundRule,
    compound_mask,
    excluded_counts_mask,
    excluded_mask,
    parse_element_list,
)


def test_default_exclusion_is_radioactive_elements_and_noble_gases():
    ex = set(DEFAULT_EXCLUDED_ELEMENTS)
    assert {
        "Tc",
        "Pm",
        "Po",
        "At",
        "Rn",
        "Fr",
        "Ra",
        "Ac",
        "Th",
        "U",
        "Pu",
        "He",
        "Ne",
        "Ar",
        "Kr",
        "Xe",
    } <= ex
    assert not ex & {"Bi", "Pb", "Tl", "La", "Lu", "Nd", "Sm", "Mo", "Ru", "H", "F", "O"}
    assert list(DEFAULT_EXCLUDED_ELEMENTS)[:2] == ["He", "Ne"]  # atomic-number order


def test_excluded_mask_by_formula_and_by_counts():
    formulas = ["NaCl", "XeF2", "ThO2", "TcO2", "BiOCl", None, "not a formula"]
    assert excluded_mask(formulas, DEFAULT_EXCLUDED_ELEMENTS).tolist() == [
        False, True, True, True, False, False, False,
    ]  # fmt: skip
    assert not excluded_mask(formulas, ()).any()
    from gapforge.encoding import FormulaEncoder

    enc = FormulaEncoder()
    batch = enc.encode(["NaCl", "KrF2", "BiOCl"])
    assert excluded_counts_mask(batch.counts, enc.elements, DEFAULT_EXCLUDED_ELEMENTS).tolist() == [
        False, True, False,
    ]  # fmt: skip


def test_element_lists_are_checked():
    assert parse_element_list("Xe, Tc ;Pm") == ("Tc", "Xe", "Pm")  # atomic-number order
    assert parse_element_list("none") == () and parse_element_list("default") == DEFAULT_EXCLUDED_ELEMENTS
    with pytest.raises(InputError, match="not an element"):
        parse_element_list("Xe, Qq")


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (CompoundRule.NO_INTERMETALLICS, [True, False, False, False, False, True, True, False]),
        (CompoundRule.COMPOUNDS, [True, False, False, True, True, True, True, False]),
        (CompoundRule.ANY, [True, True, True, True, True, True, True, False]),
    ],
)
def test_compound_rule(rule, expected):
    formulas = ["NaCl", "O2", "Ti", "TiAl", "Cs3Sb2Ti", "NiSb", "SrYF5", None]
    # Sb is a metalloid, so NiSb has a non-metal; Cs3Sb2Ti too, but TiAl is all metal
    expected = list(expected)
    if rule is CompoundRule.NO_INTERMETALLICS:
        expected[4] = True
    assert compound_mask(formulas, rule).tolist() == expected

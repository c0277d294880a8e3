from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymatgen.core import Composition

from gapforge.encoding import MP_BANDGAP_ELEMENTS
from gapforge.errors import FormulaError
from gapforge.formula import normalize_formula, parse_formula, reduced_formula


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("LiF", "LiF"),
        ("Mg1Mn6O12", "MgMn6O12"),
        ("Li2F2", "LiF"),
        ("Li0.5F0.5", "LiF"),
        ("Ba(FeO2)2", "Ba(FeO2)2"),
        ("BaFe2O4", "Ba(FeO2)2"),
        ("O2", "O2"),
        ("H2O2", "H2O2"),
        ("Na1 Cl1", "NaCl"),
        ("SrYF5", "SrYF5"),
        ("NaN", "NaN"),  # sodium nitride, not a missing value
    ],
)
def test_normalize_formula_matches_pymatgen(text: str, expected: str) -> None:
    assert normalize_formula(text) == expected
    if "." not in text:  # pymatgen keeps fractional formulas unreduced; we scale them to integers
        assert normalize_formula(text) == Composition(text).reduced_formula


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty formula"),
        ("Xy2", "unknown element"),
        ("Na-Cl", "cannot parse"),
        ("Li0F", "amount must be positive"),
        ("Li0.31416F", "fractional amounts"),
    ],
)
def test_bad_formulas_raise_with_the_value(text: str, message: str) -> None:
    with pytest.raises(FormulaError, match=message) as info:
        normalize_formula(text)
    assert info.value.value is not None


def test_parse_formula_sums_repeated_elements() -> None:
    assert parse_formula("LiFLi") == {"Li": 2.0, "F": 1.0}


counts_strategy = st.dictionaries(
    st.sampled_from(MP_BANDGAP_ELEMENTS), st.integers(min_value=1, max_value=12), min_size=1, max_size=6
)


@settings(max_examples=400, deadline=None)
@given(counts_strategy)
def test_reduced_formula_equals_pymatgen(counts: dict[str, int]) -> None:
    assert reduced_formula(counts) == Composition(counts).reduced_formula

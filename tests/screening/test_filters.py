"""Each screening filter on its own."""

from __future__ import annotations

import numpy as np

from gapforge.encoding import FormulaEncoder
from gapforge.screening.filters import in_window, is_novel, is_simple, smact_valid

ENC = FormulaEncoder()


def test_in_window_bounds_are_inclusive_and_nan_is_out():
    gaps = np.array([5.99, 6.0, 7.5, 9.0, np.nan, -1.0])
    assert in_window(gaps, 6.0).tolist() == [False, True, True, True, False, False]
    assert in_window(gaps, 6.0, 7.5).tolist() == [False, True, True, False, False, False]


def test_is_simple_follows_the_papers_strict_rule():
    counts = ENC.formulas_to_counts(["LiF", "Al2O3", "SrTiO3", "Li2CO3", "KAlSiO4", "CaMgSiO4", "Si"])
    # atoms: 2, 5, 5, 6, 7, 7, 1; elements: 2, 2, 3, 3, 4, 4, 1
    assert is_simple(counts).tolist() == [True, True, True, True, False, False, True]
    # counts are judged after gcd reduction: Al2Si2O4 -> AlSiO2 (4 atoms, 3 elements)
    assert is_simple(ENC.formulas_to_counts(["Al2Si2O4"])).tolist() == [True]
    # 8 atoms is not "fewer than 8"
    assert is_simple(ENC.formulas_to_counts(["Na3AlF4"])).tolist() == [False]
    # configurable
    assert is_simple(counts, max_atoms=6, max_elements=3).tolist() == [
        True,
        True,
        False,
        False,
        False,
        False,
        True,
    ]
    assert is_simple(counts, max_atoms=7, max_elements=4).tolist() == [
        True,
        True,
        True,
        True,
        False,
        False,
        True,
    ]
    assert not is_simple(np.zeros((1, ENC.n_elements), dtype=np.int16))[0]


def test_is_novel():
    known = {"LiF", "NaCl"}
    assert is_novel(["LiF", "KCl", "", "NaCl", "SrYF5"], known).tolist() == [False, True, False, False, True]


def test_smact_valid_filter():
    counts = ENC.formulas_to_counts(["NaCl", "NaCl2", "SrYF5", "CaClF5", "KF2"])
    # CaClF5 is valid with Cl(+3) less electronegative than F(-1); KF2 cannot be neutral
    assert smact_valid(counts, ENC.elements).tolist() == [True, False, True, True, False]

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from pymatgen.core import Composition

from gapforge.errors import FormulaError
from gapforge.structure.elmd import (
    MODIFIED_PETTIFOR,
    MODIFIED_PETTIFOR_ORDER,
    cumulative_matrix,
    elmd,
    elmd_matrix,
)

PAIRS = [
    ("NaCl", "KBr"),
    ("CaTiO3", "SrTiO3"),
    ("SrYF5", "CaF2"),
    ("Li2O", "NaCl"),
    ("Fe2O3", "Al2O3"),
    ("H2O", "LiH"),
    ("NaN", "Na3N"),  # sodium nitride, not a missing value
    ("Cs2AgBiBr6", "MAPbI3".replace("MA", "K")),
    ("Lu(SiPd)2", "LuSi2Pd2"),
]


def _reference_elmd():
    """The GPL-3 ElMD package (test-only dev dependency) as an oracle."""
    # ElMD imports pkg_resources at module level without using it; recent setuptools no longer ships it.
    if "pkg_resources" not in sys.modules:
        try:
            import pkg_resources  # noqa: F401
        except ImportError:
            sys.modules["pkg_resources"] = types.ModuleType("pkg_resources")
    elmd_pkg = pytest.importorskip("ElMD")
    return elmd_pkg.elmd


def test_scale_is_a_permutation_of_103_elements():
    assert len(MODIFIED_PETTIFOR_ORDER) == 103 == len(set(MODIFIED_PETTIFOR_ORDER))
    assert MODIFIED_PETTIFOR["He"] == 0 and MODIFIED_PETTIFOR["H"] == 102 == MODIFIED_PETTIFOR["D"]
    # Alkali metals next to each other, halogens next to each other.
    assert abs(MODIFIED_PETTIFOR["Na"] - MODIFIED_PETTIFOR["K"]) == 1
    assert abs(MODIFIED_PETTIFOR["Cl"] - MODIFIED_PETTIFOR["Br"]) == 1


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_matches_elmd_package(a, b):
    ref = _reference_elmd()
    assert elmd(a, b) == pytest.approx(ref(a, b, metric="mod_petti"), abs=1e-9)


def test_scale_positions_match_elmd_package():
    _reference_elmd()
    import json
    from importlib.resources import files

    table = json.loads((files("ElMD") / "el_lookup" / "mod_petti.json").read_text())
    for el, pos in MODIFIED_PETTIFOR.items():
        assert table[el] == pos, el


def test_known_values_and_metric_properties():
    assert elmd("NaCl", "NaCl") == 0.0
    assert elmd("NaCl", "KBr") == pytest.approx(1.0)  # each half moves by one place
    assert elmd("CaTiO3", "SrTiO3") == pytest.approx(0.2)
    assert elmd("NaCl", "Na2Cl2") == 0.0  # reduced formulas
    assert elmd("LiF", "CsI") == pytest.approx(elmd("CsI", "LiF"))
    a, b, c = "Li2O", "MgO", "Al2O3"
    assert elmd(a, c) <= elmd(a, b) + elmd(b, c) + 1e-12


def test_matrix_equals_pairwise():
    left = ["NaCl", "CaF2", "SrTiO3", Composition("Fe2O3")]
    right = ["KBr", "BaZrO3", "MgO", "SrYF5", "NaN"]
    m = elmd_matrix(left, right, chunk_size=3)
    assert m.shape == (4, 5)
    for i, a in enumerate(left):
        for j, b in enumerate(right):
            assert m[i, j] == pytest.approx(elmd(a, b), abs=1e-9)
    # Precomputed cumulative matrices give the same answer.
    assert np.allclose(elmd_matrix(cumulative_matrix(left), cumulative_matrix(right)), m)


def test_bad_formulas_are_named():
    with pytest.raises(FormulaError, match="Xx9"):
        elmd("Xx9", "NaCl")
    with pytest.raises(FormulaError, match="Og"):
        elmd("OgF2", "NaCl")


def test_vectorised_search_is_fast():
    import time

    rng = np.random.default_rng(0)
    lib = cumulative_matrix(["NaCl", "CaF2", "SrTiO3", "Al2O3", "SrYF5"])[rng.integers(0, 5, 20_000)]
    cands = cumulative_matrix(["KBr", "BaZrO3"])[rng.integers(0, 2, 200)]
    t = time.perf_counter()
    m = elmd_matrix(cands, lib)
    assert m.shape == (200, 20_000)
    assert time.perf_counter() - t < 20  # ~0.2 s on an idle core; generous for a shared machine

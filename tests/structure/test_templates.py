from __future__ import annotations

import pytest

from gapforge.structure.elmd import elmd
from gapforge.structure.library import load_library
from gapforge.structure.templates import SearchSettings, search_templates


@pytest.fixture
def lib(tiny_library_path):
    return load_library(tiny_library_path, max_e_above_hull=0.1)


def test_same_anonymized_formula_ranked_by_elmd(lib):
    (matches,) = search_templates(["LiCl"], lib, SearchSettings(top_k=3))
    assert [m.formula for m in matches] == ["NaCl", "KF", "MgO"]
    assert [m.rank for m in matches] == [1, 2, 3]
    assert all(m.same_anonymized_formula for m in matches)
    assert matches[0].elmd == pytest.approx(elmd("LiCl", "NaCl"))
    assert matches[0].elmd < matches[1].elmd < matches[2].elmd


def test_ties_broken_by_hull_then_id(lib):
    (matches,) = search_templates(["KBr"], lib, SearchSettings(top_k=2))
    assert matches[0].elmd == matches[1].elmd == pytest.approx(1.0)
    assert [m.material_id for m in matches] == ["fx-KF", "fx-NaCl"]


def test_one_call_for_many_formulas(lib):
    res = search_templates(["SrF2", "BaZrO3", "NaBr", "LiCl"], lib, SearchSettings(top_k=1))
    assert [r[0].formula for r in res] == ["CaF2", "SrTiO3", "NaCl", "NaCl"]


def test_fallback_to_nearest_overall(lib):
    (matches,) = search_templates(["Li3N"], lib, SearchSettings(top_k=2))
    assert len(matches) == 2
    assert not any(m.same_anonymized_formula for m in matches)
    (none,) = search_templates(["Li3N"], lib, SearchSettings(fallback_nearest=False))
    assert none == []


def test_exclude_own_formula(lib):
    (matches,) = search_templates(["NaCl"], lib, SearchSettings(top_k=1))
    assert matches[0].formula == "NaCl" and matches[0].elmd == 0
    (matches,) = search_templates(["NaCl"], lib, SearchSettings(top_k=1, exclude_same_formula=True))
    assert matches[0].formula != "NaCl"


def test_top_k_larger_than_library(lib):
    (matches,) = search_templates(["SrF2"], lib, SearchSettings(top_k=10))
    assert [m.formula for m in matches] == ["CaF2"]

"""known_formulas: the union of every known formula list, with held-out systems."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from gapforge.data.known import KNOWN_SOURCES, known_formulas
from gapforge.errors import DatasetNotFoundError
from gapforge.screening.filters import known_formulas as screen_known


def _gz(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as fh:
        fh.write(text)


@pytest.fixture
def tiny_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Four tiny sources, each holding one formula the others lack."""
    _gz(tmp_path / "matbench" / "mp_e_form.csv.gz", "formula,target\nLi2O1,-2.0\nLi4O2,-1.9\nNa1N1,-0.1\n")
    _gz(tmp_path / "matbench" / "mp_gap.csv.gz", "formula,target\nK1F1,6.0\nLi2O1,5.0\n")
    (tmp_path / "mp_bandgap").mkdir()
    (tmp_path / "mp_bandgap" / "Exp1_42k.csv").write_text("composition,Eg\nMgO,4.5\nLiFeO2,2.0\n")
    (tmp_path / "mp_bandgap" / "mpid_formula_sp.csv").write_text(
        "material_id,pretty_formula,spacegroup\nmp-1,CaTiO3,62\nmp-2,Fe2O3,167\n"
    )
    monkeypatch.setenv("GAPFORGE_DATA_PATH", str(tmp_path))
    monkeypatch.setenv("GAPFORGE_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_union_of_every_source(tiny_data: Path) -> None:
    assert KNOWN_SOURCES == ("mp-e-form", "mp-gap", "mp-bandgap", "mp-formulas")
    known = known_formulas()
    assert known == {"Li2O", "NaN", "KF", "MgO", "LiFeO2", "CaTiO3", "Fe2O3"}
    assert screen_known() == known  # the screen's novelty filter uses the same set


def test_held_out_systems(tiny_data: Path) -> None:
    known = known_formulas(exclude_systems=["Li-O", ("Fe", "O")])
    assert "Li2O" not in known and "Fe2O3" not in known
    assert {"LiFeO2", "MgO", "NaN"} <= known  # only formulas of exactly those systems go
    assert known_formulas(exclude_systems="Ca-Ti-O") == known_formulas() - {"CaTiO3"}


def test_missing_source_is_a_clear_error(tiny_data: Path) -> None:
    (tiny_data / "matbench" / "mp_gap.csv.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match="mp_gap"):
        known_formulas()

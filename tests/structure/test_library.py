from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from gapforge.errors import DatasetNotFoundError, InputError
from gapforge.structure.library import (
    MP_FIELDS,
    MPQuery,
    TemplateLibrary,
    build_library_from_mp,
    find_data_file,
    load_library,
)


def test_load_tiny_library(tiny_library_path):
    lib = load_library(tiny_library_path)
    assert len(lib) == 6
    t = lib.table
    assert t.loc[t.material_id == "fx-CaF2", "anonymized_formula"].item() == "AB2"
    assert lib.cumulative.shape == (6, 103)
    s = lib.structure(int(np.flatnonzero(t.material_id == "fx-SrTiO3")[0]))
    assert s.composition.reduced_formula == "SrTiO3" and len(s) == 5


def test_filters(tiny_library_path):
    assert len(load_library(tiny_library_path, max_e_above_hull=0.1)) == 5
    assert set(load_library(tiny_library_path, max_nsites=2).table.reduced_formula) == {"NaCl", "MgO", "KF"}


def test_other_column_names_and_formats(tmp_path, tiny_library_path):
    df = pd.read_csv(tiny_library_path, keep_default_na=False, na_values=[])
    df = df.rename(
        columns={
            "reduced_formula": "pretty_formula",
            "e_above_hull": "energy_above_hull",
            "spacegroup_number": "spacegroup.number",
        }
    ).drop(columns="nsites")
    path = tmp_path / "lib.parquet"
    df.to_parquet(path)
    lib = load_library(path)
    assert lib.table.nsites.tolist() == [2, 2, 3, 5, 2, 3]  # counted from the CIFs
    assert lib.table.spacegroup_number.iloc[0] == 225
    out = lib.save(tmp_path / "copy.csv")
    assert len(load_library(out)) == 6


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda df: df.assign(reduced_formula=["NaCl", "Xq2O", "CaF2", "SrTiO3", "KF", "KF2"]), "row 2"),
        (lambda df: df.drop(columns="cif"), "no CIF column"),
        (lambda df: df.assign(band_gap=["5.0", "big", "1", "1", "1", "1"]), "not numeric"),
        (lambda df: df.assign(cif=["", *df.cif[1:]]), "empty CIF"),
        (lambda df: df.iloc[:0], "no rows"),
    ],
)
def test_bad_library_is_reported_with_file_and_row(tmp_path, tiny_library_path, mutate, message):
    df = mutate(pd.read_csv(tiny_library_path, keep_default_na=False, na_values=[]))
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    with pytest.raises(InputError, match=message) as err:
        load_library(path)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_library(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="empty"):
        load_library(tmp_path / "empty.csv")


def test_default_library_needs_data_path(monkeypatch, tmp_path):
    monkeypatch.setenv("GAPFORGE_DATA_PATH", str(tmp_path))
    with pytest.raises(DatasetNotFoundError):
        find_data_file("mp_template_library.csv.gz", "structures")


class _RecordedSummary:
    """Stands in for ``MPRester().materials.summary``: replays hand-made responses."""

    def __init__(self, docs):
        self.docs = docs
        self.calls = []

    def search(self, **kwargs):
        self.calls.append(kwargs)
        return self.docs


class _RecordedRester:
    def __init__(self, docs):
        self.materials = type("Materials", (), {})()
        self.materials.summary = _RecordedSummary(docs)


def test_build_library_from_recorded_mp_responses(files, tmp_path):
    docs = json.loads((files / "mp_summary_response.json").read_text())
    rester = _RecordedRester(docs)
    lib = build_library_from_mp(
        tmp_path / "mp_lib.csv", query=MPQuery(max_sites=10, max_e_above_hull=0.05), rester=rester
    )
    call = rester.materials.summary.calls[0]
    assert call["num_sites"] == (1, 10)
    assert call["energy_above_hull"] == (0.0, 0.05)
    assert call["theoretical"] is False
    assert set(call["fields"]) == set(MP_FIELDS)
    # The document without a structure is skipped; the others become rows.
    assert lib.table.material_id.tolist() == ["mp-fxNaCl", "mp-fxMgO", "mp-fxCaF2"]
    assert lib.table.spacegroup_number.tolist() == [225, 225, 225]
    assert lib.table.formation_energy_per_atom.tolist() == pytest.approx([-2.10, -3.05, -4.20])
    assert isinstance(load_library(tmp_path / "mp_lib.csv"), TemplateLibrary)
    assert lib.structure(2).composition.reduced_formula == "CaF2"


def test_build_library_from_mp_document_models_and_element_filter(files):
    docs = json.loads((files / "mp_summary_response.json").read_text())[:3]

    class Doc:  # emmet document models expose attributes, not keys
        def __init__(self, d):
            self.__dict__.update(d)
            self.symmetry = type("Sym", (), d["symmetry"])()

    lib = build_library_from_mp(
        query=MPQuery(elements=("Na", "Cl", "Mg", "O")), rester=_RecordedRester([Doc(d) for d in docs])
    )
    assert lib.table.reduced_formula.tolist() == ["NaCl", "MgO"]


def test_build_library_from_mp_with_nothing_usable(files):
    with pytest.raises(InputError, match="no usable structure"):
        build_library_from_mp(rester=_RecordedRester([{"material_id": "mp-1", "structure": None}]))


@pytest.mark.data
def test_offline_mp_library(data_path):
    lib = load_library()
    assert len(lib) == 4452
    assert lib.table.reduced_formula.nunique() == 4294
    assert lib.table.formation_energy_per_atom.notna().sum() == 1355
    assert len(load_library(max_e_above_hull=0.1)) < 4452


def test_library_volume_increments_on_the_mp_templates(data_path):
    from gapforge.structure.substitution import SubstitutionSettings, substitute

    lib = load_library()
    inc = lib.volume_increments
    assert {"Si", "C", "O", "F", "Cs"} <= set(inc) and all(v > 0 for v in inc.values())
    assert inc["Cs"] > inc["K"] > inc["Na"] > inc["Li"]  # alkali atoms grow down the group
    # SiCO3 on MnSiO3 (40 sites): radius ratios put C on the Mn site and compress the cell to
    # the 0.5 clip (5.8 Å^3/atom; CHGNet relaxes it to 10.0 in a quick >= 4 eV run); the
    # increments start it near there
    template = lib.structure(int(np.flatnonzero(lib.table.material_id == "mp-17766")[0]))
    rls = substitute("SiCO3", template, SubstitutionSettings())
    by_inc = substitute("SiCO3", template, SubstitutionSettings(volume_method="increments"), increments=inc)
    assert rls.volume_scale == pytest.approx(0.5)
    assert 9.0 < by_inc.structure.volume / len(by_inc.structure) < 11.0
    # a subset fits its own
    sub = lib.subset(~lib.table.reduced_formula.str.contains("Cs"))
    assert "Cs" not in sub.volume_increments and sub.volume_increments["K"] != inc["K"]

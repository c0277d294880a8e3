from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from gapforge.errors import FormulaError, InputError
from gapforge.structure.library import load_library
from gapforge.structure.stability import (
    ElementalReferences,
    HullReference,
    formation_energy_per_atom,
    load_elemental_references,
    mp2020_correction_per_atom,
)

REFS = ElementalReferences(
    {
        "Na": -1.3,
        "Cl": -1.8,
        "K": -1.1,
        "F": -1.9,
        "Mg": -1.6,
        "O": -4.9,
        "Ca": -2.0,
        "Sr": -1.7,
        "Ti": -7.8,
        "Br": -1.6,
    }
)


def test_formation_energy_arithmetic():
    # NaCl at -5.0 eV/atom: -5.0 - (-1.3 - 1.8) / 2
    assert formation_energy_per_atom("NaCl", -5.0, REFS) == pytest.approx(-3.45)
    assert formation_energy_per_atom("Na2Cl2", -5.0, REFS) == pytest.approx(-3.45)
    assert formation_energy_per_atom("Na", -1.3, REFS) == pytest.approx(0.0)
    with pytest.raises(FormulaError, match="Xe"):
        formation_energy_per_atom("XeF2", -3.0, REFS)


def test_reference_file_round_trip(tmp_path):
    entries = {
        "O": {"energy": -39.6, "composition": {"O": 8.0}},
        "Li": {"energy": -1.9, "composition": {"Li": 1}},
    }
    path = tmp_path / "refs.json.gz"
    with gzip.open(path, "wt") as fh:
        json.dump(entries, fh)
    refs = load_elemental_references(path)
    assert refs.mu("O") == pytest.approx(-4.95)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"O": {"energy": -1.0, "composition": {"Li": 1}}}))
    with pytest.raises(InputError, match="row 1"):
        load_elemental_references(bad)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(InputError, match="cannot read"):
        load_elemental_references(tmp_path / "broken.json")


def test_hull_against_known_phases(tiny_library_path):
    hull = HullReference.from_library(load_library(tiny_library_path))
    # NaCl itself: on the hull at its MP formation energy, above it when less stable.
    res = hull.e_above_hull("NaCl", -2.10)
    assert res.e_above_hull == pytest.approx(0.0, abs=1e-9) and res.n_known_phases == 1
    assert res.decomposition == {"NaCl": pytest.approx(1.0)}
    assert hull.e_above_hull("NaCl", -2.0).e_above_hull == pytest.approx(0.1)
    below = hull.e_above_hull("NaCl", -2.3)
    assert below.e_above_hull == pytest.approx(-0.2) and below.below_known_hull
    # No known compound in K-Cl: the hull is the elements alone, and says so.
    res = hull.e_above_hull("KCl", -1.5)
    assert res.n_known_phases == 0 and res.e_above_hull == pytest.approx(-1.5)
    assert "elements only" in res.reason
    # No known phase with Br at all: unknown, with the reason.
    res = hull.e_above_hull("KBr", -1.5)
    assert np.isnan(res.e_above_hull) and "Br" in res.reason and res.decomposition_text == ""
    # Ternary SrTiO3 with its own MP value.
    assert hull.e_above_hull("SrTiO3", -3.5).e_above_hull == pytest.approx(0.0, abs=1e-9)
    assert np.isnan(hull.e_above_hull("NaCl", float("nan")).e_above_hull)
    # Leave a system out for validation.
    assert hull.without_systems(["Na-Cl"]).e_above_hull("NaCl", -2.0).n_known_phases == 0


def test_mp2020_correction_only_for_checking():
    # Oxide and GGA+U corrections for Fe2O3; nothing for an intermetallic.
    assert mp2020_correction_per_atom("Fe2O3") < mp2020_correction_per_atom("Al2O3") < 0
    assert mp2020_correction_per_atom("NiAl") == 0


@pytest.mark.data
def test_mp_elemental_references(data_path):
    refs = load_elemental_references()
    assert len(refs.energy_per_atom) == 89
    assert refs.mu("O") == pytest.approx(-39.57350969 / 8)
    assert -10 < refs.mu("Fe") < -7

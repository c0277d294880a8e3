"""The hull reference: energies above hull and decompositions checked by hand on made-up systems."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from gapforge.errors import GapforgeError, InputError
from gapforge.structure.energy_scale import (
    LEGACY_TO_MP2020_PER_ANION_ATOM,
    anion_class,
    anion_fraction,
    legacy_to_mp2020,
)
from gapforge.structure.hull import HullReference, HullResult, chemical_system

# A made-up A-B system with A = Cu, B = Au (the energies are invented):
# AB is stable at -1.0 eV/atom; A2B at -0.5 eV/atom is unstable. Hull at x_B = 1/3 is
# two thirds of the way from A (0) to AB (-1.0): -2/3 eV/atom, so A2B sits 1/6 eV/atom
# above it and decomposes into 1/3 A + 2/3 AB (atom fractions).
TABLE = pd.DataFrame(
    {
        "formula": ["CuAu", "Cu2Au", "Cu2Au2", "Cu", "Au", "MgO"],
        "formation_energy_per_atom": [-1.0, -0.5, -0.8, 0.01, 0.0, -3.0],
    }
)


@pytest.fixture
def ref() -> HullReference:
    return HullReference.from_table(TABLE)


def test_stable_and_unstable_compound_by_hand(ref: HullReference) -> None:
    assert len(ref) == 3  # CuAu (lowest of two polymorphs), Cu2Au, MgO; elements are not counted
    assert ref.formation_energy("Cu2Au2") == pytest.approx(-1.0)  # the lowest polymorph is kept
    on = ref.e_above_hull("CuAu", -1.0)
    assert isinstance(on, HullResult)
    assert on.e_above_hull == pytest.approx(0.0, abs=1e-9)
    assert on.decomposition == {"CuAu": pytest.approx(1.0)}
    assert on.n_known_phases == 2

    a2b = ref.e_above_hull("Cu2Au", -0.5)
    assert a2b.e_above_hull == pytest.approx(1 / 6)
    fractions = sorted(a2b.decomposition.values())
    assert fractions == [pytest.approx(1 / 3), pytest.approx(2 / 3)]
    assert a2b.decomposition["Cu"] == pytest.approx(1 / 3)
    assert a2b.decomposition_text.endswith("0.333 Cu")
    assert not a2b.below_known_hull

    # AB3 at -0.4: hull at x_B = 3/4 is halfway from AB (-1.0) to B (0): -0.5, so 0.1 above,
    # decomposing into half AB, half Au.
    ab3 = ref.e_above_hull("CuAu3", -0.4)
    assert ab3.e_above_hull == pytest.approx(0.1)
    assert ab3.decomposition["Au"] == pytest.approx(0.5)
    assert sum(ab3.decomposition.values()) == pytest.approx(1.0)

    # Below the known hull by 0.2: negative and flagged.
    low = ref.e_above_hull("CuAu", -1.2)
    assert low.e_above_hull == pytest.approx(-0.2)
    assert low.below_known_hull
    assert not ref.e_above_hull("CuAu", -1.04).below_known_hull  # within the -0.05 tolerance


def test_uncovered_elements_and_missing_energy(ref: HullReference) -> None:
    res = ref.e_above_hull("CuAg", -0.3)
    assert np.isnan(res.e_above_hull) and "Ag" in res.reason and res.decomposition == {}
    assert np.isnan(ref.e_above_hull("CuAu", float("nan")).e_above_hull)
    # Covered elements, no compound between them: the elements' hull, said so.
    res = ref.e_above_hull("CuMg", -0.2)
    assert res.e_above_hull == pytest.approx(-0.2) and res.n_known_phases == 0
    assert "elements only" in res.reason
    assert ref.e_above_hull("Cu", 0.05).e_above_hull == pytest.approx(0.05)


def test_excluded_systems_drop_only_their_formulas(ref: HullReference) -> None:
    held_out = ref.without_systems(["Au-Cu"])
    assert len(held_out) == 1  # MgO stays
    res = held_out.e_above_hull("Cu2Au", -0.5)
    assert res.n_known_phases == 0 and res.e_above_hull == pytest.approx(-0.5)
    assert held_out.e_above_hull("MgO", -3.0).e_above_hull == pytest.approx(0.0, abs=1e-9)
    assert np.isnan(held_out.formation_energy("CuAu"))
    # the same through the constructor argument; the original is untouched
    again = HullReference.from_table(TABLE, exclude_systems=[("Au", "Cu")])
    assert len(again) == 1
    assert ref.e_above_hull("Cu2Au", -0.5).e_above_hull == pytest.approx(1 / 6)
    # a ternary system held out leaves its binaries in
    ternary = HullReference.from_table(
        pd.DataFrame({"formula": ["CuAu", "CuAuMg"], "e_form": [-1.0, -1.5]}), exclude_systems=["Cu-Au-Mg"]
    )
    assert len(ternary) == 1
    assert chemical_system("Cu-Au-Mg") == chemical_system("MgCuAu") == frozenset({"Cu", "Au", "Mg"})


def test_diagrams_are_cached_per_system(ref: HullReference) -> None:
    d1, _ = ref.diagram("Au-Cu")
    ref.e_above_hull("Cu3Au", -0.3)
    d2, _ = ref.diagram(("Cu", "Au"))
    assert d1 is d2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("formula,formation_energy_per_atom\nCuAu,-1.0\nCuXx,-0.5\n", r"bad\.csv, row 2: .*'CuXx'"),
        (
            "formula,formation_energy_per_atom\nCuAu,-1.0\nCu2Au,abc\n",
            r"bad\.csv, row 2: .*not a number: 'abc'",
        ),
        ("formula,formation_energy_per_atom\nCuAu,\n", r"bad\.csv, row 1: formation energy is not a number"),
        ("formula,formation_energy_per_atom\nCuAu,inf\n", r"bad\.csv, row 1: .*missing or infinite"),
        ("formula,band_gap\nCuAu,1.0\n", r"bad\.csv.*formation-energy"),
        ("formula,formation_energy_per_atom\n", r"bad\.csv.*no data rows"),
    ],
)
def test_user_table_errors_name_file_row_value(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as info:
        HullReference.from_table(path)
    assert "\n" not in str(info.value)


def test_user_table_file_and_nan_formula(tmp_path: Path) -> None:
    path = tmp_path / "phases.csv"
    path.write_text("composition,e_form\nNaN,-0.1\nNa3N,-0.04\n")  # "NaN" is sodium nitride
    ref = HullReference.from_table(path)
    assert ref.formation_energy("NaN") == pytest.approx(-0.1)
    # Na3N (x_N = 1/4) against the Na - NaN tie line at -0.05 eV/atom
    assert ref.e_above_hull("Na3N", -0.04).e_above_hull == pytest.approx(0.01)
    assert ref.source == str(path)


def test_from_dataset_through_the_data_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "matbench").mkdir()
    with gzip.open(tmp_path / "matbench" / "mp_e_form.csv.gz", "wt") as fh:
        fh.write("formula,target\nCu1Au1,-1.0\nCu2Au2,-0.9\nCu2Au1,-0.5\nNa1N1,-0.1\n")
    monkeypatch.setenv("GAPFORGE_DATA_PATH", str(tmp_path))
    monkeypatch.setenv("GAPFORGE_CACHE", str(tmp_path / "cache"))
    ref = HullReference.from_dataset(to_mp2020=False)
    assert "mp-e-form" in ref.source
    assert ref.e_above_hull("Cu2Au", -0.5).e_above_hull == pytest.approx(1 / 6)
    assert ref.formation_energy("NaN") == pytest.approx(-0.1)
    # by default mp-e-form moves onto the MP2020 scale: the nitride by its anion offset, not Cu-Au
    mp2020 = HullReference.from_dataset()
    assert "MP2020" in mp2020.source
    assert mp2020.formation_energy("NaN") == pytest.approx(-0.1 + 0.5 * LEGACY_TO_MP2020_PER_ANION_ATOM["N"])
    assert mp2020.formation_energy("CuAu") == pytest.approx(-1.0)
    held = HullReference.from_dataset(exclude_systems=["Cu-Au"])
    assert len(held) == 1
    with pytest.raises(InputError, match="no formation energies"):
        HullReference.from_dataset("mp-bandgap")


def test_energy_scale_classes_and_offsets() -> None:
    assert anion_class("NaBr") == "Br"
    assert anion_class("Fe2O3") == "O+U"
    assert anion_class("SbF3") == "F"  # the most electronegative element is the anion
    assert anion_class("NiAl") == "none" and anion_class("O2") == "none"
    assert anion_fraction("Fe2O3") == pytest.approx(0.6)
    # NaBr: half its atoms are Br, MP2020 corrects Br by -0.531 eV per Br atom, legacy did not
    assert legacy_to_mp2020("NaBr", -1.5) == pytest.approx(-1.5 - 0.531 / 2)
    assert legacy_to_mp2020("NiAl", -0.6) == -0.6


class ReplayRester:
    """Stands in for mp_api's MPRester: records the query, replays a recorded response."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.queries: list[dict[str, Any]] = []
        self.materials = SimpleNamespace(summary=SimpleNamespace(search=self._search))
        self._docs = docs

    def _search(self, **query: Any) -> list[SimpleNamespace]:
        self.queries.append(query)
        return [SimpleNamespace(**d) for d in self._docs]


def test_from_materials_project_replayed(files: Path) -> None:
    # summary documents of the Li-O system (formation energies as in mp-e-form)
    docs = json.loads((files.parent / "mp_summary_formation_response.json").read_text())
    rester = ReplayRester(docs)
    ref = HullReference.from_materials_project(["Li", "O"], rester=rester)
    q = rester.queries[0]
    assert q["chemsys"] == ["Li-O"]
    assert "formation_energy_per_atom" in q["fields"]
    assert ref.source == "materials-project"
    assert ref.formation_energy("Li2O") == pytest.approx(-2.071515)  # lowest of two polymorphs
    res = ref.e_above_hull("Li2O2", -1.650493)
    assert res.e_above_hull == pytest.approx(0.0, abs=1e-9)
    # LiO2 (x_O = 2/3) lies above the Li2O2 (x_O = 1/2) - O tie line, where the hull is
    # 2/3 * -1.650493 eV/atom; it decomposes into 2/3 Li2O2 + 1/3 O (atom fractions)
    res = ref.e_above_hull("LiO2", -1.033568)
    assert res.e_above_hull == pytest.approx(-1.033568 + 1.650493 * 2 / 3)
    assert res.decomposition == {"Li2O2": pytest.approx(2 / 3), "O": pytest.approx(1 / 3)}
    # an empty answer is an error, not an empty hull
    with pytest.raises(GapforgeError, match="no phases"):
        HullReference.from_materials_project(["Li", "O"], rester=ReplayRester([]))


def test_from_materials_project_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MP_API_KEY", raising=False)
    with pytest.raises(GapforgeError, match="MP_API_KEY"):
        HullReference.from_materials_project(["Li", "O"])

"""The DFT stage: input collection, fingerprints, cache, missing GPAW, and a real Si gap.

Only the tests marked ``slow`` need GPAW (and they are the only ones that take
more than a second): the 2-atom silicon cell's PBE gap against the known value,
the rerun that hits the cache, and the time budget.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from gapforge.errors import DependencyError, InputError
from gapforge.structure import dft
from gapforge.structure.dft import (
    DFTResult,
    DFTSettings,
    cache_key,
    collect_structures,
    run_dft,
    structure_fingerprint,
)

FILES = Path(__file__).resolve().parents[1] / "files" / "dft"
SI_CIF = FILES / "Si.cif"

#: PBE band gap of bulk Si at the PBE lattice constant (a = 5.468 Å): 0.61 eV
#: (Materials Project mp-149, GGA; plane-wave PBE literature 0.58–0.62 eV).
SI_PBE_GAP = 0.61
#: Tolerance of the cheap test settings below (250 eV, 2.5 k-points/Å⁻¹, 16-point path).
SI_GAP_TOL = 0.10
CHEAP = DFTSettings(ecut=250.0, kpt_density=2.5, band_path_points=16, time_budget=900.0)


def _nacl() -> Structure:
    return Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _write_cifs(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = folder / f"{name}.cif"
        _nacl().to(filename=str(path))
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------- settings and fingerprints


def test_settings_validate_and_round_trip():
    s = DFTSettings(ecut=300, kpt_density=2.0)
    assert DFTSettings.from_dict(json.loads(s.to_json())) == s
    assert "time_budget" not in s.physics()
    with pytest.raises(InputError, match="ecut"):
        DFTSettings(ecut=0)
    with pytest.raises(InputError, match="band_path_points"):
        DFTSettings(band_path_points=1)
    with pytest.raises(InputError, match="empty_bands"):
        DFTSettings(empty_bands=0)


def test_fingerprint_ignores_site_order_and_lattice_translations():
    a = _nacl()
    b = Structure(a.lattice, ["Cl", "Na"], [[0.5, 0.5, 0.5], [1.0, 0, -1.0]])
    assert structure_fingerprint(a) == structure_fingerprint(b)
    c = a.copy()
    c.perturb(0.05)
    assert structure_fingerprint(c) != structure_fingerprint(a)
    assert structure_fingerprint(Structure.from_file(str(SI_CIF))) == structure_fingerprint(
        Structure.from_file(str(SI_CIF))
    )


def test_cache_key_depends_on_physics_not_on_time_budget():
    fp = structure_fingerprint(_nacl())
    assert cache_key(fp, DFTSettings()) == cache_key(fp, DFTSettings(time_budget=5))
    assert cache_key(fp, DFTSettings()) != cache_key(fp, DFTSettings(ecut=500))
    assert cache_key(fp, DFTSettings()) != cache_key("other", DFTSettings())


def test_gap_and_edges_insulator_and_metal():
    import numpy as np

    eigs = np.array([[[-1.0, 1.0], [-0.5, 2.0]]])  # (spins, k, bands)
    gap, vbm, cbm = dft._gap_and_edges(eigs, efermi=0.0)
    assert (gap, vbm, cbm) == (pytest.approx(1.5), -0.5, 1.0)
    metal = np.array([[[-1.0, 1.0], [0.5, 2.0]]])  # band 0 crosses the Fermi level
    assert dft._gap_and_edges(metal, efermi=0.0)[0] == 0.0


def test_idealize_recovers_the_primitive_cell_of_a_noisy_conventional_cell():
    noisy = Structure(
        Lattice.from_parameters(5.64, 5.64001, 5.64, 90.0001, 90, 90),
        ["Na"] * 4 + ["Cl"] * 4,
        [
            [0, 0, 0],
            [0.5, 0.5, 0],
            [0.5, 0, 0.5],
            [0, 0.5, 0.5],
            [0.5, 0, 0],
            [0, 0.5, 0],
            [0, 0, 0.5],
            [0.5, 0.5, 0.5],
        ],
    )
    prim = dft.idealize(noisy, 1e-3)
    assert len(prim) == 2
    assert prim.lattice.angles == pytest.approx((60.0, 60.0, 60.0), abs=1e-9)
    assert prim.volume * 4 == pytest.approx(noisy.volume, rel=1e-4)
    assert dft.idealize(noisy, None) is noisy


# ----------------------------------------------------------------------------- input


def test_collect_from_cif_directory_sorted_and_top(tmp_path):
    _write_cifs(tmp_path / "cifs", ["c", "a", "b"])
    items = collect_structures(tmp_path / "cifs", top=2)
    assert [i.name for i in items] == ["a", "b"]
    assert items[0].formula == "NaCl"
    assert items[0].input_row is None


def test_collect_from_relaxed_table_uses_relaxed_cif_path_and_row_order(tmp_path):
    run = tmp_path / "run"
    _write_cifs(run / "relaxed", ["x", "y"])
    _write_cifs(run / "cifs", ["x"])
    table = pd.DataFrame(
        {
            "formula": ["NaCl", "KBr", "NaCl"],
            "cif_path": ["cifs/x.cif", "cifs/missing.cif", "cifs/x.cif"],
            "relaxed_cif_path": ["relaxed/y.cif", "", "relaxed/x.cif"],
            "e_form": [-2.0, None, -1.9],
        }
    )
    table.to_csv(run / "relaxed.csv", index=False)
    items = collect_structures(run)  # directory with relaxed.csv -> the table, in order
    assert [(i.name, i.input_row) for i in items] == [("y", 1), ("x", 3)]
    assert [i.name for i in collect_structures(run / "relaxed.csv", top=1)] == ["y"]


def test_collect_from_candidate_table_with_cif_path(tmp_path):
    _write_cifs(tmp_path / "cifs", ["one"])
    table = pd.DataFrame({"formula": ["NaCl"], "cif_path": ["cifs/one.cif"]})
    table.to_csv(tmp_path / "cand.csv", index=False)
    items = collect_structures(tmp_path / "cand.csv")
    assert items[0].cif_path == tmp_path / "cifs" / "one.cif"


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        ("missing", "input not found"),
        ("empty_dir", r"no \*\.cif files"),
        ("bad_cif", "cannot read CIF"),
        ("no_column", "no CIF path column"),
        ("missing_cif", "CIF file not found"),
        ("top0", "--top must be at least 1"),
    ],
)
def test_collect_bad_input_is_one_line_error_naming_the_file(tmp_path, setup, match):
    target = tmp_path / "in"
    top = None
    if setup == "empty_dir":
        target.mkdir()
    elif setup == "bad_cif":
        target.mkdir()
        (target / "broken.cif").write_text("data_x\n_cell_length_a 3\nnonsense\n")
    elif setup == "no_column":
        target = tmp_path / "t.csv"
        pd.DataFrame({"formula": ["NaCl"]}).to_csv(target, index=False)
    elif setup == "missing_cif":
        target = tmp_path / "t.csv"
        pd.DataFrame({"cif_path": ["nope.cif"]}).to_csv(target, index=False)
    elif setup == "top0":
        _write_cifs(target, ["a"])
        top = 0
    with pytest.raises(InputError, match=match) as info:
        collect_structures(target, top=top)
    text = str(info.value)
    assert "\n" not in text
    if setup in ("bad_cif", "empty_dir", "missing", "no_column", "missing_cif"):
        assert str(tmp_path) in text


# ----------------------------------------------------------------------------- without GPAW


def test_missing_gpaw_is_a_clear_dependency_error(tmp_path, monkeypatch):
    monkeypatch.setattr(dft, "gpaw_available", lambda: False)
    _write_cifs(tmp_path / "cifs", ["a"])
    with pytest.raises(DependencyError, match=r"needs GPAW.*pip install gpaw"):
        run_dft(tmp_path / "cifs", tmp_path / "out")
    assert not (tmp_path / "out" / dft.RESULTS_FILE).exists()


def test_cli_reports_missing_gpaw_in_one_line(tmp_path, monkeypatch):
    from gapforge.cli import app

    monkeypatch.setattr(dft, "gpaw_available", lambda: False)
    _write_cifs(tmp_path / "cifs", ["a"])
    result = CliRunner().invoke(app, ["dft", "--input", str(tmp_path / "cifs"), "--out", str(tmp_path / "o")])
    assert isinstance(result.exception, DependencyError)


def test_cached_results_need_no_gpaw(tmp_path, monkeypatch):
    """A structure already in the cache is reported without computing (or importing GPAW)."""
    monkeypatch.setattr(dft, "gpaw_available", lambda: False)
    _write_cifs(tmp_path / "cifs", ["a"])
    item = collect_structures(tmp_path / "cifs")[0]
    fp = structure_fingerprint(item.structure)
    settings = DFTSettings(ecut=300)
    fake = DFTResult(
        status="ok",
        converged=True,
        band_gap=5.0,
        energy=-7.0,
        energy_per_atom=-3.5,
        scf_iterations=12,
        kpts="4x4x4",
        wall_time_s=42.0,
        gpaw_version="test",
    )
    dft._cache_store(
        tmp_path / "out" / "cache",
        cache_key(fp, settings),
        item=item,
        fingerprint=fp,
        settings=settings,
        result=fake,
    )
    table = run_dft(tmp_path / "cifs", tmp_path / "out", settings=settings)
    row = table.iloc[0]
    assert row[dft.DFT_BAND_GAP] == 5.0
    assert bool(row[dft.CACHED]) and bool(row[dft.CONVERGED])
    assert row[dft.WALL_TIME_S] == 42.0
    written = pd.read_csv(tmp_path / "out" / dft.RESULTS_FILE)
    assert list(written.columns) == list(dft.RESULT_COLUMNS)
    assert json.loads(written[dft.SETTINGS].iloc[0])["ecut"] == 300
    # other settings -> a miss -> needs GPAW
    with pytest.raises(DependencyError):
        run_dft(tmp_path / "cifs", tmp_path / "out", settings=DFTSettings(ecut=350))


# ----------------------------------------------------------------------------- with GPAW (real DFT)


@pytest.mark.slow
def test_si_pbe_gap_matches_known_value_and_rerun_is_cached(tmp_path):
    """2-atom Si, cheap settings: PBE gap 0.61 ± 0.10 eV; the rerun computes nothing."""
    pytest.importorskip("gpaw")
    cifs = tmp_path / "cifs"
    cifs.mkdir()
    shutil.copy(SI_CIF, cifs / "Si.cif")
    table = run_dft(cifs, tmp_path / "out", settings=CHEAP)
    row = table.iloc[0]
    assert row[dft.STATUS] == "ok", row[dft.MESSAGE]
    assert bool(row[dft.CONVERGED])
    assert row[dft.DFT_BAND_GAP] == pytest.approx(SI_PBE_GAP, abs=SI_GAP_TOL)
    # the path can only lower the grid's gap (it adds k-points)
    assert row[dft.DFT_BAND_GAP] <= row[dft.DFT_BAND_GAP_SCF] + 1e-6
    assert row[dft.DFT_ENERGY] < 0
    assert math.isclose(row[dft.DFT_ENERGY_PER_ATOM] * 2, row[dft.DFT_ENERGY], rel_tol=1e-9)
    assert row[dft.KPTS].count("x") == 2
    assert (tmp_path / "out" / dft.LOG_DIR / "Si.txt").is_file()

    again = run_dft(cifs, tmp_path / "out", settings=CHEAP)
    assert bool(again.iloc[0][dft.CACHED])
    assert again.iloc[0][dft.DFT_BAND_GAP] == pytest.approx(row[dft.DFT_BAND_GAP], abs=1e-9)


@pytest.mark.slow
def test_time_budget_stops_a_structure(tmp_path):
    pytest.importorskip("gpaw")
    cifs = tmp_path / "cifs"
    cifs.mkdir()
    shutil.copy(SI_CIF, cifs / "Si.cif")
    table = run_dft(cifs, tmp_path / "out", settings=DFTSettings(ecut=250, kpt_density=2.5, time_budget=0.5))
    row = table.iloc[0]
    assert row[dft.STATUS] == "timeout"
    assert not bool(row[dft.CONVERGED])
    assert math.isnan(row[dft.DFT_BAND_GAP])
    assert not list((tmp_path / "out" / "cache").glob("*.json"))  # timeouts are not cached

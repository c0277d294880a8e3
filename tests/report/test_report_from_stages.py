"""The report of a run directory made by the real structure and relax stages (CHGNet replaced by a stand-in).

The structure stage really substitutes the candidates into the tiny template library and
writes its CIFs; the relax stage writes ``relaxed.csv`` and the relaxed CIFs exactly as in a
discover run. The report must draw each structure, say whether it converged, and carry the
very CIF files the stages wrote.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Composition

from gapforge.report import build_report
from gapforge.structure import relax
from gapforge.structure.pipeline import StructureSettings, build_structures, relax_structures
from gapforge.structure.ranker import PrototypeRanking
from gapforge.structure.relax import RelaxationError, RelaxResult
from gapforge.structure.stability import ElementalReferences
from gapforge.structure.templates import SearchSettings

FILES = Path(__file__).resolve().parents[1] / "files" / "structures"
REFS = ElementalReferences(dict.fromkeys(("K", "Br", "Sr", "F", "Ba", "Zr", "O", "Li", "N"), -2.0))


def _stand_in_for_chgnet(structure, settings):
    """Ba compounds blow up; SrF2 stops before converging; the rest 'relax' where they are."""
    formula = structure.composition.reduced_formula
    if "Ba" in formula:
        raise RelaxationError("cell volume changed by a factor 9.00 (blow-up)")
    return RelaxResult(
        final_structure=structure,
        energy_per_atom={"KBr": -3.1, "SrF2": -4.0}.get(formula, -3.0),
        steps=12 if formula != "SrF2" else 500,
        converged=formula != "SrF2",
        wall_time_s=0.01,
        max_force=0.01 if formula != "SrF2" else 0.21,
    )


def _structure_run(tmp_path: Path, settings: StructureSettings) -> Path:
    """A >= 4 eV run directory whose screen kept the test candidates and whose structure stage ran."""
    run = tmp_path / "run"
    (run / "screen").mkdir(parents=True)
    (run / "config.json").write_text('{"gap_min": 4.0, "gap_max": null}')
    shutil.copy(FILES / "candidates.csv", run / "screen" / "candidates.csv")
    build_structures(run / "screen" / "candidates.csv", run / "structure", library=FILES / "tiny_library.csv",
                     settings=settings)  # fmt: skip
    return run


def test_report_of_a_run_made_by_the_structure_and_relax_stages(tmp_path, monkeypatch):
    # the ElMD + share rule: the fluorite (CaF2) template first for SrF2; the learned ranker puts the
    # Pnma (HgCl2-type) AFLOW prototype first, as the nearest known AB2 formulas in mp-formulas mostly take it
    run = _structure_run(
        tmp_path, StructureSettings(search=SearchSettings(top_k=2, ranking=PrototypeRanking.RULE))
    )
    monkeypatch.setattr(relax, "relax_structure", _stand_in_for_chgnet)
    relaxed = relax_structures(
        run / "structure", references=REFS, library=FILES / "tiny_library.csv", workers=1
    )

    page = build_report(run).read_text()
    cards = dict(re.findall(r'<div class="card" id="structure-(\w+)">(.*?)</div></div>', page, re.S))
    with_cif = relaxed.loc[relaxed["cif_path"].notna(), "formula"].tolist()
    assert sorted(cards) == sorted(with_cif) and {"KBr", "SrF2", "BaZrO3"} <= set(cards)
    kbr, srf2 = cards["KBr"], cards["SrF2"]
    assert kbr.count('<svg class="structure"') == 1 and kbr.count('class="atom"') >= 8
    assert "Fm-3m (No. 225)" in kbr  # rock salt, from the NaCl template
    assert "converged (12 steps, largest force 0.010 eV/Å, threshold 0.05 eV/Å)" in kbr
    assert "NOT converged (500 steps, largest force 0.210 eV/Å, threshold 0.05 eV/Å)" in srf2
    assert "Fm-3m (No. 225)" in srf2  # fluorite
    assert "density (g/cm³)" in kbr and "a, b, c (Å), conventional cell" in kbr
    # the tiny library's ids are not Materials Project ids: shown, never linked
    row = relaxed.set_index("formula").loc["KBr"]
    assert f"{row['template_formula']} ({row['template_material_id']})" in kbr
    assert "materialsproject" not in kbr
    # no known compound of K-Br in the tiny library: the card says so instead of a blank
    assert "No energy above hull" in kbr
    # the CIFs in the page are the files the relax stage wrote, byte for byte
    cif = (run / "structure" / row["relaxed_cif_path"]).read_text()
    assert base64.b64encode(cif.encode()).decode() in kbr
    unrelaxed = (run / "structure" / row["cif_path"]).read_text()
    assert base64.b64encode(unrelaxed.encode()).decode() in kbr
    # BaZrO3 blew up: its card shows the substituted perovskite and says why it is not relaxed
    assert "not relaxed (" in cards["BaZrO3"] and "blow-up" in cards["BaZrO3"]
    assert "Pm-3m (No. 221)" in cards["BaZrO3"]
    assert pd.read_csv(run / "structure" / "relaxed.csv")["formula"].nunique() == len(relaxed)


def test_every_covered_candidate_gets_a_hull_energy_and_a_line_when_below(tmp_path, monkeypatch):
    """Issue 17's third goal on a run made by the stages: each relaxed candidate whose elements the
    reference covers has a finite energy above hull and its decomposition, and one more than
    0.05 eV/atom below every known phase gets a line in the report saying so."""
    run = _structure_run(tmp_path, StructureSettings(search=SearchSettings(top_k=2)))
    monkeypatch.setattr(relax, "relax_structure", _stand_in_for_chgnet)
    phases = tmp_path / "phases.csv"  # made-up known phases: KBr at -1.0, SrF2 at -2.05 eV/atom
    phases.write_text("formula,formation_energy_per_atom\nKBr,-1.0\nSrF2,-2.05\nSr2F,-0.5\n")
    relaxed = relax_structures(run / "structure", references=REFS, hull=phases, workers=1)
    relaxed = relaxed.set_index("formula")
    elements = {"K", "Br", "Sr", "F"}  # what the reference covers
    covered = relaxed[
        relaxed["energy_per_atom"].notna()
        & relaxed.index.map(lambda f: set(Composition(f).chemical_system.split("-")) <= elements)
    ]
    assert sorted(covered.index) == ["KBr", "SrF2"]  # BaZrO3 blew up; Li3N: no Li or N in the reference
    assert np.isnan(relaxed.loc["Li3N", "e_above_hull"])
    assert covered["e_above_hull"].map(np.isfinite).all()
    assert covered["decomposition"].str.len().gt(0).all()
    # KBr: -3.1 + 2.0 = -1.1 against the known -1.0: 0.1 below; SrF2: -2.0 against -2.05: 0.05 above
    assert relaxed.loc["KBr", "e_above_hull"] == pytest.approx(-0.1)
    assert relaxed.loc["SrF2", "e_above_hull"] == pytest.approx(0.05)
    page = build_report(run).read_text()
    line = "more than 0.05 eV/atom below every known phase"
    assert page.count(line) == 1
    cards = dict(re.findall(r'<div class="card" id="structure-(\w+)">(.*?)</div></div>', page, re.S))
    assert line in cards["KBr"] and line not in cards["SrF2"]
    assert "decomposes into" in cards["SrF2"]


def test_molecular_crystals_are_named_in_the_table(tmp_path, monkeypatch):
    """The relax stage measures each kept structure's bonded network; the report names a 0D one."""
    run = _structure_run(
        tmp_path, StructureSettings(search=SearchSettings(top_k=1, ranking=PrototypeRanking.RULE))
    )

    def blown_apart_srf2(structure, settings):
        res = _stand_in_for_chgnet(structure, settings)
        if structure.composition.reduced_formula == "SrF2":  # atoms 3x further apart: no bonds left
            res = dataclasses.replace(
                res, final_structure=structure.copy().scale_lattice(27 * structure.volume)
            )
        return res

    monkeypatch.setattr(relax, "relax_structure", blown_apart_srf2)
    relaxed = relax_structures(
        run / "structure", references=REFS, library=FILES / "tiny_library.csv", workers=1
    )
    dims = relaxed.set_index("formula")["dimensionality"]
    assert dims["KBr"] == 3 and dims["SrF2"] == 0 and np.isnan(dims["BaZrO3"])
    page = build_report(run).read_text()
    table = re.search(r'<table id="candidate-table">(.*?)</table>', page, re.S).group(1)
    rows = {re.search(r'class="formula">(\w+)<', r).group(1): r for r in table.split("<tr>")[2:]}
    assert "<td>0D molecular</td>" in rows["SrF2"] and "<td>3D</td>" in rows["KBr"]
    assert "<th>Bonded network</th>" in table
    assert "marks a molecular crystal" in page

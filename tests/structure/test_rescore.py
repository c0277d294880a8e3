"""SevenNet-0 re-scoring the relaxed templates: its energy scale, polymorph order and the stage's choice."""

from __future__ import annotations

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from gapforge import columns as C
from gapforge.structure import relax, rescore
from gapforge.structure.relax import RelaxResult, RelaxSettings, relax_key, static_energy_per_atom
from gapforge.structure.rescore import (
    RescoreSettings,
    SelectionEnergy,
    rescore_key,
    rescore_structure,
)
from gapforge.structure.selection import SelectionSettings
from gapforge.structure.stability import mp2020_correction_per_atom

pytest.importorskip("sevenn")


def _rock_salt(a: str, b: str, lattice: float) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(lattice), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _cscl(a: str, b: str, lattice: float) -> Structure:
    return Structure(Lattice.cubic(lattice), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_settings_refuse_what_cannot_be_run() -> None:
    with pytest.raises(ValueError, match="another potential"):
        RescoreSettings(model=SelectionEnergy.CHGNET)
    with pytest.raises(ValueError, match="steps >= 0"):
        RescoreSettings(steps=-1)
    with pytest.raises(ValueError, match="margin >= 0"):
        SelectionSettings(margin=-0.1)
    with pytest.raises(ValueError, match="needs a re-scoring potential"):
        SelectionSettings(rescore_steps=5)
    assert SelectionSettings().rescore() is None  # CHGNet chooses: nothing to re-score
    assert SelectionSettings(SelectionEnergy.SEVENNET_0, 0.05, 30).rescore() == RescoreSettings(steps=30)


def test_cache_key_names_model_and_steps() -> None:
    s = _rock_salt("Na", "Cl", 5.64)
    keys = {rescore_key(s, RescoreSettings(steps=n)) for n in (0, 30)}
    keys.add(relax_key(relax.RelaxItem(s), RelaxSettings()))
    assert len(keys) == 3  # single point, 30 steps and the CHGNet relaxation never share a result
    assert rescore_key(s, RescoreSettings(num_threads=2)) == rescore_key(s, RescoreSettings(num_threads=1))


@pytest.mark.slow
@pytest.mark.parametrize("model", [SelectionEnergy.SEVENNET_0, SelectionEnergy.SEVENNET_L3I5])
def test_sevennet_orders_known_polymorphs_and_predicts_uncorrected_energies(model) -> None:
    """Rock salt below CsCl type for NaCl and KBr, diamond below simple cubic for Si; and SevenNet's
    energy minus CHGNet's is minus the MP2020 anion correction (SevenNet is on the uncorrected scale)."""
    pairs = {
        "NaCl": (_rock_salt("Na", "Cl", 5.64), _cscl("Na", "Cl", 3.40)),
        "KBr": (_rock_salt("K", "Br", 6.60), _cscl("K", "Br", 3.95)),
        "Si": (
            Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.47), ["Si"], [[0, 0, 0]]),
            Structure(Lattice.cubic(2.55), ["Si"], [[0, 0, 0]]),
        ),
    }
    for formula, (ground, other) in pairs.items():
        for steps in (0, 10):
            e_ground = rescore_structure(ground.get_primitive_structure(), RescoreSettings(model, steps))
            e_other = rescore_structure(other, RescoreSettings(model, steps))
            assert e_other.energy_per_atom - e_ground.energy_per_atom > 0.05, (formula, steps)
            assert e_ground.steps <= steps
    for formula in ("NaCl", "KBr"):
        ground = pairs[formula][0]
        shift = rescore_structure(ground, RescoreSettings(model)).energy_per_atom - static_energy_per_atom(
            ground
        )
        assert shift == pytest.approx(-mp2020_correction_per_atom(formula), abs=0.04)
    assert mp2020_correction_per_atom("NaCl") < -0.25  # the check above is not trivially 0 = 0


def _fake_chgnet(energies: dict[int, float]):
    """CHGNet stand-in: every structure 'relaxes' to itself, at an energy set by its space group."""

    def fake(structure, settings):
        from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

        sg = SpacegroupAnalyzer(structure, symprec=0.1).get_space_group_number()
        return RelaxResult(structure, energies[sg], 3, True, 0.01, 0.01)

    return fake


@pytest.mark.slow
def test_relax_stage_keeps_the_template_sevennet_puts_lowest(
    tmp_path, monkeypatch, rock_salt_and_cscl
) -> None:
    """A CHGNet that puts CsCl-type KCl and NaBr 0.2 eV/atom below rock salt keeps CsCl type; choosing
    with SevenNet-0 keeps rock salt; the re-scored energies are cached by content and model steps."""
    from gapforge.structure.pipeline import (
        RELAXED_ALL_FILE,
        StructureSettings,
        build_structures,
        read_stage_table,
        relax_structures,
    )
    from gapforge.structure.stability import ElementalReferences
    from gapforge.structure.templates import SearchSettings

    cand = tmp_path / "cand.csv"
    pd.DataFrame({"formula": ["KCl", "NaBr"]}).to_csv(cand, index=False)
    settings = StructureSettings(
        search=SearchSettings(top_k=2), prototype_ranking=False, aflow_prototypes=False
    )
    out = tmp_path / "run"
    build_structures(cand, out, library=rock_salt_and_cscl, settings=settings)
    refs = ElementalReferences(dict.fromkeys(("K", "Cl", "Na", "Br"), -2.0))
    monkeypatch.setattr(relax, "relax_structure", _fake_chgnet({225: -3.0, 221: -3.2}))
    phases = tmp_path / "phases.csv"
    phases.write_text("formula,formation_energy_per_atom\nKCl,-2.0\nNaBr,-1.8\n")
    common = {"references": refs, "hull": phases, "workers": 1, "overwrite": True}

    by_chgnet = relax_structures(out, selection=SelectionSettings(margin=0.0), **common).set_index("formula")
    assert (by_chgnet[C.RELAXED_SPACEGROUP] == 221).all()  # the fake CHGNet's lowest
    assert C.SELECTION_ENERGY_PER_ATOM not in by_chgnet.columns

    choose = SelectionSettings(SelectionEnergy.SEVENNET_0, margin=0.0)
    best = relax_structures(out, selection=choose, **common).set_index("formula")
    assert (best[C.RELAXED_SPACEGROUP] == 225).all()  # SevenNet-0 knows its alkali halides
    assert (best[C.ENERGY_PER_ATOM] == -3.0).all()  # the kept structure keeps CHGNet's energy
    assert (best[C.SELECTION_ENERGY_MODEL] == "sevennet-0").all()
    everything = read_stage_table(out / RELAXED_ALL_FILE)
    assert everything[C.SELECTION_ENERGY_PER_ATOM].notna().all()
    for formula, rows in everything.groupby(C.FORMULA):
        assert best.loc[formula, C.SELECTION_ENERGY_PER_ATOM] == rows[C.SELECTION_ENERGY_PER_ATOM].min()

    # Re-scorings come from the cache; other steps are another result.
    monkeypatch.setattr(rescore, "rescore_structure", lambda *a, **k: pytest.fail("re-scored again"))
    again = relax_structures(out, selection=choose, **common).set_index("formula")
    assert (again[C.SELECTION_ENERGY_PER_ATOM] == best[C.SELECTION_ENERGY_PER_ATOM]).all()
    with pytest.raises(pytest.fail.Exception, match="re-scored again"):
        relax_structures(out, selection=SelectionSettings(SelectionEnergy.SEVENNET_0, 0.0, 5), **common)


@pytest.mark.slow
def test_cli_relax_selection_energy(tmp_path, monkeypatch, rock_salt_and_cscl, data_path) -> None:
    """``gapforge relax --selection-energy sevennet-0`` keeps what SevenNet-0 puts lowest; the default
    keeps what CHGNet (here a stand-in preferring CsCl type) puts lowest."""
    from typer.testing import CliRunner

    from gapforge.cli import app
    from gapforge.structure.pipeline import (
        RELAXED_FILE,
        StructureSettings,
        build_structures,
        read_stage_table,
    )
    from gapforge.structure.templates import SearchSettings

    cand = tmp_path / "cand.csv"
    pd.DataFrame({"formula": ["KCl"]}).to_csv(cand, index=False)
    out = tmp_path / "run"
    build_structures(
        cand,
        out,
        library=rock_salt_and_cscl,
        settings=StructureSettings(
            search=SearchSettings(top_k=2), prototype_ranking=False, aflow_prototypes=False
        ),
    )
    phases = tmp_path / "phases.csv"
    phases.write_text("formula,formation_energy_per_atom\nKCl,-2.0\n")
    monkeypatch.setattr(relax, "relax_structure", _fake_chgnet({225: -3.0, 221: -3.2}))
    runner = CliRunner()
    base = ["relax", "--input", str(out), "--hull", str(phases), "--workers", "1", "--overwrite"]
    res = runner.invoke(app, [*base, "--selection-margin", "0"])
    assert res.exit_code == 0, res.output
    assert read_stage_table(out / RELAXED_FILE)[C.RELAXED_SPACEGROUP].tolist() == [221]
    res = runner.invoke(app, [*base, "--selection-margin", "0", "--selection-energy", "sevennet-0"])
    assert res.exit_code == 0, res.output
    kept = read_stage_table(out / RELAXED_FILE)
    assert kept[C.RELAXED_SPACEGROUP].tolist() == [225]
    assert kept[C.SELECTION_ENERGY_MODEL].tolist() == ["sevennet-0"]

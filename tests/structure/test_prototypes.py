"""Prototype counts, prototype-ranked templates, AFLOW prototypes, symmetrised relaxed structures."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from gapforge import columns as C
from gapforge.structure.library import TemplateLibrary, load_library
from gapforge.structure.pipeline import symmetrize, with_aflow_prototypes
from gapforge.structure.prototypes import PrototypeCounts, aflow_prototype_library, prototype_prior
from gapforge.structure.ranker import PrototypeRanking
from gapforge.structure.templates import SearchSettings, search_templates

RULE = PrototypeRanking.RULE

# Made-up MP-like entries: AB compounds are 3 of 4 times rock salt (225), once CsCl-type (221).
ENTRIES = pd.DataFrame(
    {
        "pretty_formula": ["NaCl", "KCl", "MgO", "CsCl", "CsCl", "SrTiO3"],
        "spacegroup": [225, 225, 225, 221, 221, 221],
    }
)


def test_counts_and_leave_one_formula_out() -> None:
    counts = PrototypeCounts.from_table(ENTRIES)
    assert counts.share("AB", 225) == pytest.approx(3 / 5)
    assert counts.share("AB", 221) == pytest.approx(2 / 5)
    assert counts.share("ABC3", 221) == 1.0
    assert counts.share("AB2", 225) == 0.0
    # rebuilding CsCl must not count CsCl's own two entries
    assert counts.share("AB", 221, leave_out="CsCl") == 0.0
    assert counts.share("AB", 225, leave_out="CsCl") == 1.0
    assert prototype_prior(1.0) == 0.0
    assert prototype_prior(0.0) == pytest.approx(-math.log(1e-3))


def test_counts_without_held_out_formulas() -> None:
    # a benchmark holding out the Cl-Cs system: CsCl's entries vote for nothing
    counts = PrototypeCounts.from_table(ENTRIES).without_formulas(["CsCl", "not-a-known-formula"])
    assert counts.share("AB", 225) == 1.0 and counts.share("AB", 221) == 0.0
    assert counts.share("ABC3", 221) == 1.0
    assert counts.local_shares("CsBr", "AB", k=1) == {225: 1.0}
    assert "CsCl" not in counts.formula_totals and counts.formula_totals["NaCl"] == 1


def test_local_shares_among_the_nearest_known_formulas() -> None:
    counts = PrototypeCounts.from_table(ENTRIES)
    # CsBr: its nearest AB formula by ElMD is CsCl (CsCl type); the rock salts are further away
    assert counts.local_shares("CsBr", "AB", k=1) == {221: 1.0}
    assert counts.local_shares("CsBr", "AB", k=4) == {221: pytest.approx(0.25), 225: pytest.approx(0.75)}
    # leaving CsCl out (rebuilding CsCl itself) removes its vote
    assert counts.local_shares("CsCl", "AB", k=1, leave_out="CsCl") == {225: 1.0}
    assert counts.local_shares("CsBr", "AB2", k=3) == {}


def test_distinct_prototypes_ranked_by_elmd_and_frequency(rock_salt_and_cscl: TemplateLibrary) -> None:
    lib = rock_salt_and_cscl
    # CsI: ElMD puts CsBr (CsCl type) first; the rock salts come next, as one prototype
    (plain,) = search_templates(["CsI"], lib, SearchSettings(top_k=2))
    assert [m.formula for m in plain] == ["CsBr", "KF"]
    # distinct prototypes: 2 templates are 2 structure types, not 2 rock salts
    (old,) = search_templates(["CsI"], lib, SearchSettings(top_k=2, distinct_prototypes=False))
    assert old[0].formula == "CsBr"
    # with counts where rock salt dominates AB, a strong prior ranks it first
    counts = PrototypeCounts.from_table(
        pd.DataFrame({"formula": ["NaCl", "KCl", "MgO", "LiF", "CsCl"], "spacegroup": [225] * 4 + [221]})
    )
    (ranked,) = search_templates(
        ["CsI"], lib, SearchSettings(top_k=2, prototype_weight=10.0, ranking=RULE), prototypes=counts
    )
    assert ranked[0].formula in {"KF", "NaCl", "MgO"}
    assert ranked[1].formula == "CsBr"
    assert ranked[0].prototype_share == pytest.approx(0.8)
    assert ranked[1].prototype_share == pytest.approx(0.2)
    # weight 0: the prior is ignored, ElMD decides
    (elmd_only,) = search_templates(
        ["CsI"], lib, SearchSettings(top_k=2, prototype_weight=0.0, ranking=RULE), prototypes=counts
    )
    assert elmd_only[0].formula == "CsBr"


def test_aflow_prototypes_as_templates(tiny_library_path) -> None:
    rows = aflow_prototype_library()
    assert len(rows) == 288
    rock_salt = rows[rows[C.MATERIAL_ID] == "aflow:AB_cF8_225_a_b"].iloc[0]
    assert rock_salt[C.REDUCED_FORMULA] == "NaCl" and rock_salt[C.SPACEGROUP_NUMBER] == 225
    lib = with_aflow_prototypes(load_library(tiny_library_path))
    assert len(lib) == 6 + 288
    assert with_aflow_prototypes(lib) is lib  # not added twice
    # Li3N had no A3B template in the tiny library; an AFLOW prototype gives it one
    (matches,) = search_templates(["Li3N"], lib, SearchSettings(top_k=3, fallback_nearest=False))
    assert matches and all(m.same_anonymized_formula for m in matches)
    s = Structure.from_str(str(lib.table.loc[matches[0].index, C.CIF]), fmt="cif")
    assert s.composition.anonymized_formula == "AB3"


def test_symmetrized_cif_keeps_the_space_group() -> None:
    rock_salt = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    p1 = rock_salt.get_primitive_structure()
    p1.perturb(0.01, min_distance=0.0)  # a relaxed cell is never exact
    sym = symmetrize(p1)
    assert sym is not None and sym.number == 225 and sym.symbol == "Fm-3m"
    assert "_symmetry_space_group_name_H-M   Fm-3m" in sym.cif or "Fm-3m" in sym.cif
    back = Structure.from_str(sym.cif, fmt="cif")
    assert StructureMatcher().fit(back, rock_salt)


@pytest.mark.slow
def test_best_of_k_keeps_the_selected_structure(tmp_path, rock_salt_and_cscl) -> None:
    """KCl, NaBr, LiCl rebuilt in rock-salt and CsCl-type templates with CHGNet: the kept structure is the
    one the selection rule picks from the relaxed energies, and it is rock salt."""
    from gapforge.structure.pipeline import StructureSettings, build_structures, relax_structures
    from gapforge.structure.relax import RelaxSettings
    from gapforge.structure.selection import SELECTION_MARGIN, pick_template
    from gapforge.structure.stability import ElementalReferences

    cand = tmp_path / "cand.csv"
    pd.DataFrame({"formula": ["KCl", "NaBr", "LiCl"]}).to_csv(cand, index=False)
    settings = StructureSettings(
        search=SearchSettings(top_k=2), prototype_ranking=False, aflow_prototypes=False
    )
    out = tmp_path / "run"
    table = build_structures(cand, out, library=rock_salt_and_cscl, settings=settings)
    assert table.groupby("formula")[C.TEMPLATE_SPACEGROUP].nunique().eq(2).all()  # both types tried
    refs = ElementalReferences(dict.fromkeys(("K", "Cl", "Na", "Br", "Li"), -2.0))
    phases = tmp_path / "phases.csv"
    phases.write_text("formula,formation_energy_per_atom\nKCl,-2.0\nNaBr,-1.8\nLiCl,-2.0\n")
    best = relax_structures(
        out, references=refs, hull=phases, settings=RelaxSettings(fmax=0.05, max_steps=100), workers=1
    ).set_index("formula")
    everything = pd.read_csv(out / "relaxed_all.csv")
    for formula, expected_sg in (("KCl", 225), ("NaBr", 225), ("LiCl", 225)):
        rows = everything[everything.formula == formula]
        # the stage's rule: the first-ranked unless another relaxed lower by more than the margin
        energies = dict(zip(rows[C.TEMPLATE_RANK].astype(int), rows[C.ENERGY_PER_ATOM], strict=True))
        kept = pick_template(energies, SELECTION_MARGIN)
        assert best.loc[formula, C.TEMPLATE_RANK] == kept
        assert best.loc[formula, C.ENERGY_PER_ATOM] == pytest.approx(energies[kept])
        if kept != 1:
            assert energies[1] - energies[kept] > SELECTION_MARGIN
        assert best.loc[formula, C.RELAXED_SPACEGROUP] == expected_sg  # CHGNet knows its alkali halides
        assert best.loc[formula, C.N_TEMPLATES_RELAXED] == 2
        sym = Structure.from_file(out / best.loc[formula, C.SYMMETRIZED_CIF_PATH])
        assert StructureMatcher().fit(sym, Structure.from_file(out / best.loc[formula, C.RELAXED_CIF_PATH]))

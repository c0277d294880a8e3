from __future__ import annotations

import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from gapforge.structure.substitution import (
    SubstitutionError,
    SubstitutionSettings,
    element_mapping,
    fit_volume_increments,
    read_cif,
    substitute,
    write_cif,
)


def rock_salt(a, b, lat):
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(lat), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]]
    ).get_primitive_structure()


def perovskite(a, b, x, lat):
    return Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(lat), [a, b, x], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]
    )


def test_mapping_keeps_cations_and_anions_apart():
    assert element_mapping("KBr", "NaCl") == ({"Na": "K", "Cl": "Br"}, True)
    # Same amounts everywhere in ABX3: the map comes from similarity and oxidation states.
    mapping, ok = element_mapping("BaZrO3", "SrTiO3")
    assert mapping == {"Sr": "Ba", "Ti": "Zr", "O": "O"} and ok
    mapping, ok = element_mapping("ZrBaO3", "TiSrO3")
    assert mapping == {"Sr": "Ba", "Ti": "Zr", "O": "O"}
    # Anion/cation inversion is avoided even when the Pettifor distance would prefer it.
    mapping, ok = element_mapping("LiF", "NaCl")
    assert mapping == {"Na": "Li", "Cl": "F"} and ok


def test_diatomic_elements_map_onto_elemental_templates():
    # pymatgen's reduced formulas: F2 and O2, but I and Si; the map compares atomic fractions
    assert element_mapping("F2", "I")[0] == {"I": "F"}
    assert element_mapping("Si", "O2")[0] == {"O": "Si"}


def test_different_stoichiometry_is_refused():
    with pytest.raises(SubstitutionError, match="stoichiometry"):
        element_mapping("Li3N", "NaCl")


def test_rock_salt_substitution_rescales_volume():
    template = rock_salt("Na", "Cl", 5.69)
    sub = substitute("KBr", template)
    assert sub.structure.composition.reduced_formula == "KBr"
    assert sub.volume_scale > 1.1  # K and Br are larger than Na and Cl
    assert StructureMatcher().fit(sub.structure, rock_salt("K", "Br", 6.6))
    clipped = substitute("KBr", template, SubstitutionSettings(volume_scale_bounds=(0.9, 1.1)))
    assert clipped.volume_scale == pytest.approx(1.1)
    assert clipped.structure.volume == pytest.approx(1.1 * template.volume)
    same = substitute("KBr", template, SubstitutionSettings(volume_method="none"))
    assert same.volume_scale == 1.0 and same.structure.volume == pytest.approx(template.volume)
    assert sub.mapping_str == "Cl->Br Na->K"


def test_perovskite_and_fluorite():
    sub = substitute("BaZrO3", perovskite("Sr", "Ti", "O", 3.905))
    assert sub.structure.composition.reduced_formula == "BaZrO3"
    assert sub.oxidation_consistent is True
    assert sub.structure.volume > 3.905**3
    fl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.46), ["Ca", "F"], [[0, 0, 0], [0.25] * 3])
    sub = substitute("SrF2", fl.get_primitive_structure())
    assert sub.structure.composition.reduced_formula == "SrF2" and len(sub.structure) == 3


def test_oxidation_states_on_template_are_ignored():
    template = rock_salt("Na", "Cl", 5.69)
    template.add_oxidation_state_by_element({"Na": 1, "Cl": -1})
    template.add_site_property("magmom", [0.0, 0.0])
    sub = substitute("KBr", template)
    assert sub.structure.composition.reduced_formula == "KBr"
    assert "magmom" not in sub.structure.site_properties


def test_require_oxidation_consistent():
    # Fluorite CaF2 in the anti-fluorite Li2O: the two F must sit on the Li (cation) sites.
    antifluorite = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(4.62), ["O", "Li"], [[0, 0, 0], [0.25] * 3]
    ).get_primitive_structure()
    mapping, ok = element_mapping("CaF2", "Li2O")
    assert mapping == {"Li": "F", "O": "Ca"} and ok is False
    assert substitute("CaF2", antifluorite).oxidation_consistent is False
    with pytest.raises(SubstitutionError, match="oxidation"):
        substitute("CaF2", antifluorite, SubstitutionSettings(require_oxidation_consistent=True))
    # No oxidation-state guess (intermetallic): consistency unknown, not refused.
    assert element_mapping("NiAl", "NaCl")[1] is None


def test_cif_round_trip(tmp_path):
    sub = substitute("KBr", rock_salt("Na", "Cl", 5.69))
    path = write_cif(sub.structure, tmp_path / "cifs" / "KBr.cif")
    back = read_cif(path)
    assert back.composition.reduced_formula == "KBr"
    assert back.volume == pytest.approx(sub.structure.volume, rel=1e-4)
    assert not list(tmp_path.glob("cifs/.*tmp"))


def test_volume_increments_recover_additive_volumes():
    # volumes per atom made from increments Na 20, K 35, Cl 30, F 10 (Å^3 per atom)
    v = {"Na": 20.0, "K": 35.0, "Cl": 30.0, "F": 10.0}
    formulas = ["NaCl", "KCl", "NaF", "KF", "Na2Cl", "KCl3"]
    per_atom = []
    for f in formulas:
        from pymatgen.core import Composition

        c = Composition(f)
        per_atom.append(sum(n * v[str(el)] for el, n in c.items()) / c.num_atoms)
    inc = fit_volume_increments(formulas, per_atom, min_count=1)
    assert inc == pytest.approx(v, rel=1e-6)
    # an element seen in fewer than min_count formulas gets none; bad volumes are skipped
    inc3 = fit_volume_increments([*formulas, "LiF"], [*per_atom, float("nan")], min_count=3)
    assert "Li" not in inc3 and inc3["K"] == pytest.approx(35.0)


def test_increments_set_the_first_volume_whatever_the_template():
    template = rock_salt("Mg", "O", 4.2)  # 9.26 Å^3 per atom
    inc = {"C": 9.1, "O": 8.5, "Li": 10.4, "F": 11.6}
    by_inc = substitute("CO", template, SubstitutionSettings(volume_method="increments"), increments=inc)
    assert by_inc.structure.volume / len(by_inc.structure) == pytest.approx((9.1 + 8.5) / 2)
    # an element without an increment: RLS, as without increments
    fallback = substitute("NaCl", template, SubstitutionSettings(volume_method="increments"), increments=inc)
    assert fallback.volume_scale == pytest.approx(substitute("NaCl", template).volume_scale)
    assert fallback.volume_scale != pytest.approx(1.0)
    with pytest.raises(ValueError, match="volume_method"):
        substitute("CO", template, SubstitutionSettings(volume_method="dls"))

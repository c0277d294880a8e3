"""Structure types finer than prototypes: Wyckoff labels, their merging, and type-diverse template slots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from gapforge import columns as C
from gapforge.structure.library import TemplateLibrary, normalise_library_table
from gapforge.structure.prototypes import PrototypeCounts, structure_types, wyckoff_label
from gapforge.structure.ranker import FEATURES, PrototypeRanker, RankerParams
from gapforge.structure.templates import SearchSettings, SlotFilling, search_templates

CUBIC = Lattice.cubic(3.8)
CORNER_FACES = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]  # Cu3Au (L1_2): 1a + 3c
CORNER_EDGES = [[0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]]  # ReO3 (D0_9): 1a + 3d


def cu3au(a: str, b: str, lattice: Lattice = CUBIC) -> Structure:
    return Structure(lattice, [b, a, a, a], CORNER_FACES)


def reo3(a: str, b: str, *, shifted: bool = False) -> Structure:
    s = Structure(CUBIC, [a, b, b, b], CORNER_EDGES)
    if shifted:  # the same structure with the origin at the cube centre: 1b + 3c
        s.translate_sites(range(len(s)), [0.5, 0.5, 0.5])
    return s


def test_wyckoff_labels_name_the_structure_type_not_the_elements(rock_salt_and_cscl: TemplateLibrary) -> None:
    lib = rock_salt_and_cscl
    label = {f: lib.wyckoff_label(i) for i, f in enumerate(lib.table[C.REDUCED_FORMULA])}
    assert label["NaCl"] == label["MgO"] == label["KF"] == "225_a_b"  # rock salt
    assert label["CsBr"] == "221_a_b"  # CsCl type: same pattern, another type
    assert label["CaF2"] in {"225_a_c", "225_b_c"}  # fluorite (Ca on either origin)
    # same space group and pattern, other Wyckoff sites: two structure types of one prototype
    assert wyckoff_label(cu3au("Cu", "Au")) == "221_a_c"
    assert wyckoff_label(reo3("Re", "O")) == "221_a_d"
    assert wyckoff_label(cu3au("Cu", "Au", Lattice.tetragonal(3.8, 4.4))) == "123_a_ce"


def ab3_library() -> TemplateLibrary:
    """AB3 templates: three Cu3Au types, ReO3 twice (one origin-shifted), a tetragonal Cu3Au (P4/mmm)."""
    entries = [
        ("t-Ni3Al", cu3au("Ni", "Al"), 221),
        ("t-Pt3Ti", cu3au("Pt", "Ti"), 221),
        ("t-Cu3Au", cu3au("Cu", "Au"), 221),
        ("t-ReO3", reo3("Re", "O"), 221),
        ("t-WF3", reo3("W", "F", shifted=True), 221),
        ("t-Pd3Ti", cu3au("Pd", "Ti", Lattice.tetragonal(3.8, 4.4)), 123),
    ]
    rows = [
        {
            C.MATERIAL_ID: mid,
            C.REDUCED_FORMULA: s.composition.reduced_formula,
            C.CIF: str(CifWriter(s)),
            C.NSITES: len(s),
            C.SPACEGROUP_NUMBER: sg,
            C.E_ABOVE_HULL: 0.0,
        }
        for mid, s, sg in entries
    ]
    return TemplateLibrary(normalise_library_table(pd.DataFrame(rows)), source="test")


def test_structure_types_merge_origin_choices_of_one_type() -> None:
    lib = ab3_library()
    types = structure_types(lib, [0, 1, 2, 3, 4])
    assert types[:3] == ["221_a_c"] * 3
    # ReO3 at two origins: two labels, one type (StructureMatcher), named by the first row's label
    assert lib.wyckoff_label(4) != lib.wyckoff_label(3)
    assert types[3] == types[4] == "221_a_d"
    assert structure_types(lib, [4, 3])[1] == lib.wyckoff_label(4)  # the first row names the type


@pytest.fixture
def ranker() -> PrototypeRanker:
    """A ranker fitted on made-up rows where the local share decides (as in test_ranker)."""
    rng = np.random.default_rng(0)
    x = rng.random((400, len(FEATURES)))
    y = (x[:, FEATURES.index("local_share_3")] > 0.5).astype(int)
    return PrototypeRanker.fit(x, y, RankerParams(max_iter=30))


def test_slots_hold_distinct_structure_types(ranker: PrototypeRanker) -> None:
    lib = ab3_library()
    known = pd.DataFrame(
        {
            "formula": ["Ni3Al", "Pt3Ti", "Cu3Au", "ReO3", "WF3", "Pt3Fe", "Pd3Ti"],
            "spacegroup": [221, 221, 221, 221, 221, 221, 123],
        }
    )
    counts = PrototypeCounts.from_table(known)
    query = "Pt3Zr"  # nearest known formulas Pm-3m (Pt3Ti, then Pd3Ti in P4/mmm); ReO3 nearer than WF3
    base = SearchSettings(top_k=2, exclude_same_formula=True, slots=SlotFilling.PROTOTYPE)
    (by_proto,) = search_templates([query], lib, base, prototypes=counts, ranker=ranker)
    # distinct prototypes: the nearest Pm-3m template, then the P4/mmm one; ReO3 type never tried
    assert [lib.table[C.SPACEGROUP_NUMBER][m.index] for m in by_proto] == [221, 123]
    assert by_proto[0].material_id == "t-Pt3Ti"
    for power in (0.0, 1.0):
        typed = SearchSettings(top_k=3, exclude_same_formula=True, slots=SlotFilling.STRUCTURE_TYPE)
        typed = SearchSettings(**{**typed.__dict__, "type_share_power": power})
        (by_type,) = search_templates([query], lib, typed, prototypes=counts, ranker=ranker)
        # both structure types of Pm-3m (each by its ElMD-nearest template), then P4/mmm
        assert [m.material_id for m in by_type] == ["t-Pt3Ti", "t-ReO3", "t-Pd3Ti"]
        assert [m.rank for m in by_type] == [1, 2, 3]
    # the first slot is the same template either way: only the later slots change
    assert by_type[0].index == by_proto[0].index
    # structure types are the default
    (default,) = search_templates([query], lib, SearchSettings(top_k=2), prototypes=counts, ranker=ranker)
    assert [m.material_id for m in default] == ["t-Pt3Ti", "t-ReO3"]

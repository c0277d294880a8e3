"""The rule that keeps one of a candidate's relaxed templates, and the validation samples."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from gapforge import columns as C
from gapforge.structure.pipeline import select_best
from gapforge.structure.selection import pick_template


def test_margin_keeps_the_first_ranked_unless_another_is_clearly_lower() -> None:
    energies = {1: -5.00, 2: -5.03, 3: -5.01}
    assert pick_template(energies, 0.0) == 2  # lowest energy
    assert pick_template(energies, 0.02) == 2  # 0.03 below the first-ranked: more than the margin
    assert pick_template(energies, 0.05) == 1  # within the margin: the ranking decides
    assert pick_template(energies, math.inf) == 1
    assert pick_template({2: -5.0, 3: -5.0}, 0.0) == 2  # ties: the better rank
    assert pick_template({1: float("nan"), 2: -4.0}, 0.1) == 2  # no energy, no say


def test_converged_relaxations_compete_first() -> None:
    energies = {1: -5.0, 2: -6.0}
    assert pick_template(energies, 0.0, converged={1: True, 2: False}) == 1
    assert pick_template(energies, 0.0, converged={1: False, 2: False}) == 2  # none converged: all compete
    with pytest.raises(ValueError, match="no relaxed template"):
        pick_template({1: float("nan")}, 0.0)


def test_select_best_applies_the_margin_per_candidate() -> None:
    table = pd.DataFrame(
        {
            C.CANDIDATE_ROW: [0, 0, 0, 1, 1, 2],
            C.FORMULA: ["A", "A", "A", "B", "B", "C"],
            C.TEMPLATE_RANK: [2, 1, 3, 1, 2, 1],  # not in rank order in the table
            C.ENERGY_PER_ATOM: [-5.03, -5.00, -4.0, -3.0, -3.2, np.nan],
            C.CONVERGED: [True, True, True, True, True, None],
            C.REASON: [None, None, None, None, None, "blow-up"],
        }
    )
    lowest = select_best(table, 0.0).set_index(C.FORMULA)
    assert lowest.loc["A", C.TEMPLATE_RANK] == 2 and lowest.loc["B", C.TEMPLATE_RANK] == 2
    ranked = select_best(table, 0.05).set_index(C.FORMULA)
    assert ranked.loc["A", C.TEMPLATE_RANK] == 1  # 0.03 lower is within the margin
    assert ranked.loc["B", C.TEMPLATE_RANK] == 2  # 0.2 lower is not
    assert ranked.loc["C", C.REASON] == "blow-up"  # nothing relaxed: the first row and its reason
    assert ranked.loc["A", C.N_TEMPLATES_RELAXED] == 3 and ranked.loc["C", C.N_TEMPLATES_RELAXED] == 0
    assert list(select_best(table, 0.05)[C.CANDIDATE_ROW]) == [0, 1, 2]


STABLE = ["NaCl", "KCl", "LiF", "NaF", "KF", "MgO", "CaO", "SrO", "BaO", "ZnO", "LiCl", "NaBr", "KBr", "RbCl"]


def _library_and_hull():
    from gapforge.structure.hull import HullReference
    from gapforge.structure.library import TemplateLibrary

    rows = [(f"s-{f}", f, 2, -1.0, 0.0) for f in STABLE]
    rows += [
        ("u-CuO2", "CuO2", 3, np.nan, 0.3),  # unstable in MP, and against the hull with itself left out
        ("u-CuF3", "CuF3", 4, np.nan, 0.4),  # no MP formation energy: the library's value decides
        ("u-Cu2O", "Cu2O", 3, np.nan, 0.2),  # this polymorph is unstable, but MP holds one on the hull
        ("u-ZnO", "ZnO", 2, np.nan, 0.3),  # another ZnO row is stable
        ("u-big", "Cu3O2", 10, np.nan, 0.3),  # too many sites
    ]
    table = pd.DataFrame(
        rows,
        columns=[C.MATERIAL_ID, C.REDUCED_FORMULA, C.NSITES, C.FORMATION_ENERGY_PER_ATOM, C.E_ABOVE_HULL],
    )
    phases = pd.DataFrame(
        {"formula": ["CuO", "Cu2O", "CuO2"], "formation_energy_per_atom": [-0.9, -0.6, -0.1]}
    )
    return TemplateLibrary(table), HullReference.from_table(phases)


def test_dev_sample_is_disjoint_from_the_test_sample_and_unstable_means_every_polymorph() -> None:
    from gapforge.structure.validation import SampleSet, ValidationSettings, sample_known

    library, hull = _library_and_hull()
    test = sample_known(library, ValidationSettings(n_materials=6, max_sites=8))
    dev = sample_known(
        library, ValidationSettings(n_materials=6, max_sites=8, sample=SampleSet.DEV, n_test=6)
    )
    assert len(test) == len(dev) == 6
    assert not set(test[C.REDUCED_FORMULA]) & set(dev[C.REDUCED_FORMULA])
    assert set(test[C.REDUCED_FORMULA]) | set(dev[C.REDUCED_FORMULA]) <= set(STABLE)
    unstable = sample_known(
        library, ValidationSettings(n_materials=10, max_sites=8, sample=SampleSet.UNSTABLE), hull
    )
    # CuO2 sits 0.5 eV/atom above CuO + O; Cu2O (-0.6) is on the Cu-CuO line: a stable polymorph exists
    assert sorted(unstable[C.REDUCED_FORMULA]) == ["CuF3", "CuO2"]
    with pytest.raises(ValueError, match="hull"):
        sample_known(library, ValidationSettings(sample=SampleSet.UNSTABLE))

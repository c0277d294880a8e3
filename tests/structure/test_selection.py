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

"""The rediscovery benchmark's parts: hold-out draws by chemical system, metrics, aggregation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gapforge.experiments.rediscovery import (
    CHEMSYS,
    aggregate,
    chemical_system,
    draw_holdout,
    ranking_metrics,
    window_key,
)
from gapforge.window import GapWindow


def test_chemical_system_and_window_keys():
    assert chemical_system("SrYF5") == "F-Sr-Y" and chemical_system("Li2F2") == "F-Li"
    assert window_key(GapWindow(4.0)) == "ge4" and window_key(GapWindow(2.0, 3.0)) == "2-3"


def test_holdout_is_whole_chemical_systems_seeded():
    known = pd.DataFrame({"formula": ["LiF", "Li2F2x", "LiF3", "NaCl", "NaCl3", "KBr", "SrYF5", "MgO"]})
    known[CHEMSYS] = ["F-Li", "F-Li", "F-Li", "Cl-Na", "Cl-Na", "Br-K", "F-Sr-Y", "Mg-O"]
    a = draw_holdout(known, 0.4, seed=3)
    assert a == draw_holdout(known, 0.4, seed=3) and len(a) == 2  # round(0.4 * 5)
    assert a <= set(known[CHEMSYS])
    draws = {frozenset(draw_holdout(known, 0.4, seed=s)) for s in range(10)}
    assert len(draws) > 1  # the seed matters


def test_ranking_metrics_precision_enrichment_recall():
    ranked = [f"X{i}" for i in range(200)]
    hits = {"X0", "X5", "X60", "X150"}
    exists = hits | {"X1", "X2"}
    m = ranking_metrics(ranked, pool_size=200, hits=hits, exists=exists, n_in_window=8, n_pool_hits=4)
    assert m["base_rate"] == pytest.approx(4 / 200)
    assert (m["hits@10"], m["hits@50"], m["hits@100"]) == (2, 2, 3)
    assert m["exists@10"] == 4
    assert m["precision@10"] == pytest.approx(0.2) and m["ef@10"] == pytest.approx(0.2 / 0.02)
    assert m["ef@100"] == pytest.approx(0.03 / 0.02)
    assert m["recall@100"] == pytest.approx(3 / 8) and m["pool_recall"] == pytest.approx(0.5)
    # a random order of the pool has an expected EF of 1
    rng = np.random.default_rng(0)
    efs = [
        ranking_metrics(list(rng.permutation(ranked)), 200, hits, exists, 8, 4)["ef@100"] for _ in range(400)
    ]
    assert np.mean(efs) == pytest.approx(1.0, abs=0.1)


def test_aggregate_mean_and_sd_over_draws():
    rows = []
    for draw, p in enumerate([0.1, 0.3]):
        for variant in ("base-rate", "discover"):
            row = {"draw": draw, "target": "≥ 4.00 eV", "variant": variant}
            row.update(dict.fromkeys(("precision@10", "precision@50"), p if variant == "discover" else 0.0))
            rest = ("precision@100", "ef@10", "ef@100", "recall@100", "pool_recall", "base_rate")
            row.update(dict.fromkeys((*rest, "hits@100", "exists@100"), 1.0))
            rows.append(row)
    t = aggregate(pd.DataFrame(rows))
    assert t["variant"].tolist() == ["discover", "base-rate"]  # the order of VARIANTS
    d = t.set_index("variant").loc["discover"]
    assert d["draws"] == 2 and d["precision@10_mean"] == pytest.approx(0.2)
    assert d["precision@10_sd"] == pytest.approx(np.std([0.1, 0.3], ddof=1))


def test_stability_measure_uses_the_hull_without_the_own_formula_only():
    from gapforge.experiments.rediscovery import stability_measure
    from gapforge.structure.hull import HullReference

    phases = pd.DataFrame(
        {"formula": ["LiF", "Li2F", "NaCl", "KBr"], "formation_energy_per_atom": [-3.0, -1.0, -2.0, -1.5]}
    )
    hull = HullReference.from_table(phases)
    relaxed = pd.DataFrame(
        {
            "formula": ["LiF", "F2", "NaCl3", "KBr2"],
            "formation_energy_per_atom": [-2.9, 0.1, -0.5, -0.2],
            # what the relax stage measured on the hull without the held-out systems (F-Li)
            "e_above_hull": [-2.9, 0.1, 0.5, 0.3],
        }
    )
    m = stability_measure(relaxed, exists={"LiF", "F2"}, hull=hull)
    rows = {r["formula"]: r for r in m["rows"]}
    # LiF competes with Li2F (its own entry left out): hull at x_F = 1/2 is -1 + (1/2 - 1/3) / (2/3) = -0.75
    assert rows["LiF"]["e_above_hull"] == pytest.approx(-2.9 + 0.75)
    assert rows["LiF"]["known_phases_in_system"] == 1
    assert rows["NaCl3"]["e_above_hull"] == pytest.approx(-0.5 + 1.0)  # hull at x_Cl = 3/4: half of NaCl
    assert m["n_elements_left_out"] == 1 and (m["n_positive"], m["n_negative"]) == (1, 2)
    assert m["n_pairs"] == 2 and m["roc_auc"] == pytest.approx(1.0)

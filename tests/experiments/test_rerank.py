"""Stability re-ranking of the rediscovery draws: the measure, the hull without the own formula, resuming."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gapforge.errors import InputError
from gapforge.experiments.rediscovery import (
    CHEMSYS,
    POOL_FLAGS,
    RerankReferences,
    RerankSettings,
    bootstrap_auc,
    own_formula_left_out,
    rerank_measure,
    run_stability_rerank,
    summarize_rerank,
)
from gapforge.structure.hull import HullReference
from gapforge.window import GapWindow

TINY_LIBRARY = Path(__file__).resolve().parents[1] / "files" / "structures" / "tiny_library.csv"


def _top() -> pd.DataFrame:
    """Six candidates in the screen's order; the stability terms reorder them (worked out by hand below)."""
    return pd.DataFrame(
        {
            "formula": ["A", "B", "C", "D", "E", "F"],
            "rank": [1, 2, 3, 4, 5, 6],
            "p_in_window": [0.99, 0.98, 0.97, 0.96, 0.95, 0.90],
            # p_stable = 1 / (1 + exp(-(1.996 - 8.095 e))): A 0.002, B 0.880, D 0.114, E 0.917, F 0.862
            "e_above_hull": [1.0, 0.0, np.nan, 0.5, -0.05, 0.02],
        }
    )


def test_rerank_measure_screen_final_and_random_orders_by_hand():
    m = rerank_measure(_top(), hits={"B", "E"}, exists={"B", "E", "F"}, ks=(1, 2, 3, 6))
    # P(in) x P(stable), to 0.01: E 0.87, B 0.86, F 0.78, D 0.11, A 0.00; C (no e_above_hull) last
    assert m["final_order"] == ["E", "B", "F", "D", "A", "C"]
    assert (m["n"], m["n_hits"], m["n_exists"]) == (6, 2, 3)
    screen = [m[f"screen_hits@{k}"] for k in (1, 2, 3, 6)]
    final = [m[f"final_hits@{k}"] for k in (1, 2, 3, 6)]
    assert screen == [0, 1, 1, 2] and final == [1, 2, 2, 2]
    assert [m[f"screen_exists@{k}"] for k in (1, 2, 3, 6)] == [0, 1, 1, 3]
    assert [m[f"final_exists@{k}"] for k in (1, 2, 3, 6)] == [1, 2, 3, 3]
    # a random order of the same six: hits x k / N exactly
    assert [m[f"random_hits@{k}"] for k in (1, 2, 3, 6)] == pytest.approx([1 / 3, 2 / 3, 1, 2])
    assert [m[f"random_exists@{k}"] for k in (1, 2, 3, 6)] == pytest.approx([0.5, 1, 1.5, 3])
    # a cut-off beyond N counts the whole list
    assert rerank_measure(_top(), {"B"}, {"B"}, ks=(10,))["random_hits@10"] == pytest.approx(1.0)


def test_own_formula_left_out_keeps_every_other_phase():
    hull = HullReference.from_table(
        pd.DataFrame(
            {
                "formula": ["LiF", "Li2F", "NaCl"],
                "formation_energy_per_atom": [-3.0, -1.0, -2.0],
            }
        )
    )
    t = own_formula_left_out(["LiF", "Li2F", "NaCl2", "KBr"], np.array([-2.9, -1.2, -0.5, np.nan]), hull)
    e = t["e_above_hull"].to_numpy()
    # LiF without LiF: Li2F (x_F 1/3, -1) to F: -1 + (1/2 - 1/3) / (2/3) = -0.75 at x_F = 1/2
    assert e[0] == pytest.approx(-2.9 + 0.75)
    # Li2F without Li2F, LiF kept: Li to LiF at x_F = 1/3: -3 x (1/3) / (1/2) = -2
    assert e[1] == pytest.approx(-1.2 + 2.0)
    # NaCl2, not in the reference, meets the whole hull: NaCl to Cl at x_Cl = 2/3: -2 + 2/3 = -4/3
    assert e[2] == pytest.approx(-0.5 + 4 / 3)
    assert np.isnan(e[3])
    assert t["hull_known_phases"].tolist() == [1, 1, 1, 0]


def test_bootstrap_auc_and_summary_over_draws():
    y = np.array([True, True, False, False, False])
    auc, lo, hi = bootstrap_auc(y, np.array([0.9, 0.2, 0.5, 0.1, 0.0]), 500, seed=1)
    assert auc == pytest.approx(5 / 6)  # the positive at 0.2 loses to 0.5 only
    assert 0.0 <= lo <= auc <= hi <= 1.0

    def result(draw: int, screen: int, final: int) -> dict:
        rows = [
            {"formula": "LiF", "held_out": True, "e_above_hull": -0.02},
            {"formula": "NaCl3", "held_out": False, "e_above_hull": 0.3},
            {"formula": "Na", "held_out": False, "e_above_hull": 0.0},  # an element: not in the AUC
        ]
        r = {"draw": draw, "target": "≥ 4.00 eV", "rows": rows, "n_hits": 1, "n_exists": 1}
        r.update({"n_relaxed": 3, "n_with_e_above_hull": 3})
        for k in (5,):
            r.update({f"screen_hits@{k}": screen, f"final_hits@{k}": final, "random_hits@5": 0.5})
            r.update({"screen_exists@5": screen, "final_exists@5": final, "random_exists@5": 0.5})
        return r

    s = summarize_rerank([result(0, 0, 1), result(1, 1, 1)], RerankSettings(ks=(5,), bootstrap=0))
    w = s["windows"][0]
    assert w["draws"] == [0, 1] and w["final_hits@5"]["mean"] == pytest.approx(1.0)
    d = w["final_minus_screen_hits@5"]
    assert d["per_draw"] == [1, 0] and (d["ahead"], d["behind"]) == (1, 0)
    assert d["mean"] == pytest.approx(0.5) and d["sd"] == pytest.approx(np.std([1, 0], ddof=1))
    st = w["stability"]
    assert (st["n_positive"], st["n_negative"], st["n_pairs"]) == (2, 2, 4) and st["roc_auc"] == 1.0
    assert (st["held_out_within"], st["other_within"]) == (2, 2)  # Na at 0.0 is within 0.1 too


def _tiny_work(tmp_path: Path) -> tuple[Path, pd.DataFrame, RerankReferences]:
    """One finished draw: K-F held out; KF (a held-out wide-gap material), LiCl and NaBr screened."""
    from gapforge.structure.library import load_library
    from gapforge.structure.prototypes import PrototypeCounts

    out = tmp_path / "rediscovery"
    (out / "heldout_systems_draw0.txt").parent.mkdir(parents=True)
    (out / "heldout_systems_draw0.txt").write_text("F-K\n")
    known = pd.DataFrame(
        {"formula": ["KF", "NaCl", "MgO"], "band_gap": [6.0, 5.0, 4.5], CHEMSYS: ["F-K", "Cl-Na", "Mg-O"]}
    )
    screen = out / "work" / "draw0" / "discover_ge4" / "screen"
    screen.mkdir(parents=True)
    screened = pd.DataFrame(
        {"formula": ["LiCl", "KF", "NaBr"], "band_gap_mean": [5.5, 6.2, 4.6], "band_gap_std": [0.5, 0.3, 0.5]}
    )
    for flag in POOL_FLAGS:
        screened[flag] = True
    screened.to_parquet(screen / "screened.parquet")
    library = load_library(TINY_LIBRARY, max_e_above_hull=0.1)
    counts = PrototypeCounts.from_table(
        pd.DataFrame({"formula": ["NaCl", "MgO", "KF", "CaF2"], "spacegroup": [225, 225, 225, 225]})
    )
    hull = HullReference.from_table(
        pd.DataFrame(
            {
                "formula": ["KF", "NaCl", "LiCl", "NaBr", "MgO"],
                "formation_energy_per_atom": [-2.9, -2.1, -2.1, -1.9, -3.0],
            }
        )
    )
    return out, known, RerankReferences(library=library, prototypes=counts, hull=hull)


@pytest.mark.slow
def test_rerank_runs_real_chgnet_and_a_second_call_reuses_the_draw(tmp_path, real_data_env, monkeypatch):
    pytest.importorskip("chgnet")
    from gapforge.executor import ExecutorSettings
    from gapforge.structure import pipeline

    out, known, refs = _tiny_work(tmp_path)
    settings = RerankSettings(n_candidates=3, relax_steps=30, ks=(1, 3), bootstrap=50)
    kw = {"draws": [0], "windows": [GapWindow(4.0)], "references": refs, "known": known}
    first = run_stability_rerank(out, settings, executor=ExecutorSettings.serial(), **kw)
    res = first["results"][0]
    rows = {r["formula"]: r for r in res["rows"]}
    by_screen = sorted(res["rows"], key=lambda r: r["screen_rank"])
    assert [r["formula"] for r in by_screen] == ["KF", "LiCl", "NaBr"]
    assert rows["KF"]["held_out"] and rows["KF"]["hit"] and not rows["LiCl"]["held_out"]
    assert res["n_relaxed"] == 3 and res["n_with_e_above_hull"] == 3
    # the template came from another system: KF's own K-F templates are held out
    assert rows["KF"]["template_formula"] not in ("KF", "KF2")
    assert res["screen_hits@1"] == 1 and res["random_hits@1"] == pytest.approx(1 / 3)
    assert sorted(r["final_rank"] for r in res["rows"]) == [1, 2, 3]
    path = out / "runs" / "rerank_draw0_ge4.json"
    assert json.loads(path.read_text())["settings"] == settings.per_window()
    n_cached = len(list((out / "work" / "relax_cache").glob("*.json")))
    assert n_cached == 3

    def boom(*a, **k):
        raise AssertionError("a finished draw and window must not be redone")

    with monkeypatch.context() as m:  # the same settings: the saved draw is reused, nothing rebuilt
        m.setattr(pipeline, "build_structures", boom)
        m.setattr(pipeline, "relax_structures", boom)
        again = run_stability_rerank(out, settings, executor=ExecutorSettings.serial(), **kw)
    assert again["results"][0] == json.loads(path.read_text())
    assert again["windows"][0]["screen_hits@1"]["mean"] == first["windows"][0]["screen_hits@1"]["mean"]

    # other settings: redone, but the relaxations come from the shared cache
    fewer = RerankSettings(n_candidates=2, relax_steps=30, ks=(1,), bootstrap=0)
    res2 = run_stability_rerank(out, fewer, executor=ExecutorSettings.serial(), **kw)["results"][0]
    assert res2["n"] == 2 and len(list((out / "work" / "relax_cache").glob("*.json"))) == n_cached
    e_first = {r["formula"]: r["e_above_hull"] for r in res["rows"]}
    assert {r["formula"]: r["e_above_hull"] for r in res2["rows"]} == {
        f: pytest.approx(e_first[f]) for f in ("KF", "LiCl")
    }


def test_cli_refuses_bad_rerank_settings_before_any_draw(tmp_path, monkeypatch, capsys):
    import sys

    from gapforge.cli import main
    from gapforge.experiments import rediscovery

    def boom(*a, **k):
        raise AssertionError("the draws must not start with bad re-ranking settings")

    monkeypatch.setattr(rediscovery, "run_rediscovery", boom)
    out = tmp_path / "rd"
    for flag in ("--rerank-candidates", "--rerank-templates"):
        args = ["reproduce", "rediscovery", "--out", str(out), "--rerank", flag, "0"]
        monkeypatch.setattr(sys, "argv", ["gapforge", *args])
        with pytest.raises(SystemExit) as exc:
            main()
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and len(err) == 1, err
        assert flag in err[0] and "0" in err[0], err  # the flag and the value it got
        assert not out.exists()
    with pytest.raises(InputError, match="relax_steps must be >= 1"):
        RerankSettings(relax_steps=0)

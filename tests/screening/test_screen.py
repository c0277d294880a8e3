"""The screen on a tiny real model: flags, funnel, ranking, files, CLI and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestRegressor
from typer.testing import CliRunner

from gapforge import columns as C
from gapforge.encoding import FormulaEncoder
from gapforge.errors import InputError
from gapforge.screening.screen import (
    ScreenSettings,
    funnel_path,
    read_formula_column,
    screen,
    screen_file,
    screened_path,
)
from gapforge.window import GapWindow

FILES = Path(__file__).resolve().parents[1] / "files"

# A hand-made training table: band gaps (eV) of simple compounds.
TRAIN = {
    "LiF": 8.7, "NaF": 6.1, "KF": 6.0, "MgF2": 6.8, "CaF2": 7.1, "SrF2": 6.9, "BaF2": 6.5, "LiCl": 6.0,
    "NaCl": 5.0, "KCl": 5.2, "MgO": 4.5, "CaO": 3.6, "Al2O3": 5.9, "SiO2": 5.7, "ZnO": 1.0, "ZnS": 2.0,
    "GaAs": 0.5, "Si": 0.6, "Ge": 0.0, "Fe": 0.0, "Cu": 0.0, "TiO2": 1.8, "NaBr": 4.1, "KI": 3.7,
}  # fmt: skip


class TinyForest:
    """A real scikit-learn forest on element-fraction features, wrapped to the BandGapModel protocol."""

    kind = "tiny-forest"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.encoder = FormulaEncoder(n_levels=64)

    def _features(self, formulas):
        batch = self.encoder.encode(formulas)
        counts = batch.counts.astype(float)
        total = counts.sum(axis=1, keepdims=True)
        return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0), batch

    def fit(self, formulas, band_gaps):
        x, _ = self._features(list(formulas))
        self.forest_ = RandomForestRegressor(n_estimators=20, random_state=self.seed).fit(x, band_gaps)
        return self

    def predict(self, formulas):
        x, batch = self._features(list(formulas))
        per_tree = np.stack([t.predict(x) for t in self.forest_.estimators_])
        mean, std = per_tree.mean(axis=0), per_tree.std(axis=0)
        mean[~batch.valid] = np.nan
        std[~batch.valid] = np.nan
        return pd.DataFrame(
            {
                C.FORMULA: list(formulas),
                C.BAND_GAP_MEAN: mean,
                C.BAND_GAP_STD: std,
                C.REASON: np.where(batch.valid, "", batch.reasons),
            }
        )


@pytest.fixture(scope="module")
def model() -> TinyForest:
    return TinyForest().fit(list(TRAIN), list(TRAIN.values()))


KNOWN = set(TRAIN)
CANDIDATES = [
    "LiF",
    "RbF",
    "CsF",
    "NaF",
    "LiF",
    "Li2F2",
    "KMgF3",
    "NaCl2",
    "GaAs",
    "Li3AlF6",
    "SrYF5",
    "Xx2",
    "Fe",
]


def test_flags_and_funnel(model):
    res = screen(CANDIDATES, model, ScreenSettings(window=GapWindow(5.5)), known=KNOWN)
    t = res.table.set_index(C.FORMULA)
    # duplicates by reduced formula are screened once (LiF, LiF, Li2F2)
    assert res.funnel["n_input"] == len(CANDIDATES)
    assert res.funnel["n_duplicates"] == 2
    assert len(t) == len(CANDIDATES) - 2
    # every flag column is there and each is computed on its own
    assert not t.loc["Xx2", "readable"] and "Xx" in t.loc["Xx2", "reason"]
    assert not t.loc["LiF", "novel"] and t.loc["RbF", "novel"]
    assert not t.loc["NaCl2", "smact_valid"] and t.loc["KMgF3", "smact_valid"]
    assert not t.loc["Li3AlF6", "simple"]  # 10 atoms
    assert t.loc["SrYF5", "simple"]  # 7 atoms, 3 elements: the paper's discovery is simple
    assert not t.loc["GaAs", "in_window"]
    # candidates pass everything required; dropped rows say why
    for _name, row in t.iterrows():
        failed = [f for f in res.settings.required() if not row[f]]
        assert row["candidate"] == (not failed)
        assert row["dropped_by"] == ",".join(failed)
    # the funnel adds up
    seq = list(res.funnel["sequential"].values())
    assert seq == sorted(seq, reverse=True)
    assert res.funnel["n_screened"] - sum(res.funnel["removed"].values()) == res.n_candidates
    assert res.funnel["fails_alone"]["novel"] == int((~t["novel"]).sum())


def test_ranking_puts_candidates_first_by_probability_in_window(model):
    window = GapWindow(5.5)
    res = screen(CANDIDATES, model, ScreenSettings(window=window), known=KNOWN)
    cand = res.candidates
    assert res.n_candidates == len(cand) > 0
    assert cand["rank"].tolist() == list(range(1, len(cand) + 1))
    p = cand[C.P_IN_WINDOW].to_numpy()
    assert (np.diff(p) <= 0).all()
    # the column is the window's probability under N(mean, std), computed independently here
    want = [
        1 - NormalDist(m, s).cdf(5.5)
        for m, s in zip(cand[C.BAND_GAP_MEAN], cand[C.BAND_GAP_STD], strict=True)
    ]
    assert p == pytest.approx(want, abs=1e-9)
    assert (res.table["rank"].iloc[len(cand) :] == 0).all()
    # a closed window: the probability mass inside [5.5, 7.0] decides, highest first
    res2 = screen(CANDIDATES, model, ScreenSettings(window=GapWindow(5.5, 7.0)), known=KNOWN)
    p2 = res2.candidates[C.P_IN_WINDOW].to_numpy()
    assert (np.diff(p2) <= 0).all() and ((p2 > 0) & (p2 < 1)).all()
    # top keeps the best n; the rest are marked as dropped by "top"
    res3 = screen(CANDIDATES, model, ScreenSettings(window=window, top=1), known=KNOWN)
    assert res3.n_candidates == 1 and res3.candidates[C.FORMULA].tolist() == cand[C.FORMULA].tolist()[:1]
    assert (res3.table["dropped_by"] == "top").sum() == len(cand) - 1


def test_excluded_elements_and_max_std_are_filters(model):
    formulas = ["XeF2", "KrF2", "RbF", "PoO2", "TcO2", "SrYF5", "F2"]
    res = screen(formulas, model, ScreenSettings(window=GapWindow(0.0), require_novel=False), known=KNOWN)
    t = res.table.set_index(C.FORMULA)
    assert not t.loc[["XeF2", "KrF2", "PoO2", "TcO2"], "allowed_elements"].any()
    assert t.loc[["RbF", "SrYF5"], "allowed_elements"].all()
    assert "allowed_elements" in res.funnel["required"]
    assert not t.loc["F2", "compound"] and t.loc["RbF", "compound"]  # an element is no discovery
    keep_all = screen(
        formulas,
        model,
        ScreenSettings(window=GapWindow(0.0), exclude_elements=(), require_novel=False),
        known=KNOWN,
    )
    readable = keep_all.table[keep_all.table["readable"]]
    assert readable["allowed_elements"].all() and "allowed_elements" not in keep_all.funnel["required"]
    std = res.table.set_index(C.FORMULA)[C.BAND_GAP_STD]
    cut = float(std.dropna().median())
    tight = screen(
        formulas, model, ScreenSettings(window=GapWindow(0.0), max_std=cut, require_novel=False), known=KNOWN
    )
    assert (tight.candidates[C.BAND_GAP_STD] <= cut).all()


def test_filters_can_be_switched_off(model):
    strict = screen(CANDIDATES, model, ScreenSettings(window=GapWindow(5.5)), known=KNOWN)
    loose = screen(
        CANDIDATES,
        model,
        ScreenSettings(window=GapWindow(5.5), require_simple=False, require_smact=False, require_novel=False),
        known=KNOWN,
    )
    assert loose.funnel["required"] == ["readable", "predicted", "compound", "allowed_elements", "in_window"]
    assert set(strict.candidates[C.FORMULA]) <= set(loose.candidates[C.FORMULA])
    assert "LiF" in set(loose.candidates[C.FORMULA])
    wider = screen(
        CANDIDATES, model, ScreenSettings(window=GapWindow(5.5), max_atoms=11, max_elements=4), known=KNOWN
    )
    assert wider.table.set_index(C.FORMULA).loc["Li3AlF6", "simple"]


def test_empty_result_keeps_the_columns(model):
    res = screen(["GaAs", "Si", "Fe"], model, ScreenSettings(window=GapWindow(50.0)), known=KNOWN)
    assert res.n_candidates == 0
    assert list(res.candidates.columns) == list(res.table.columns)


def test_screen_file_writes_three_files(model, tmp_path, monkeypatch):
    import importlib

    screen_mod = importlib.import_module("gapforge.screening.screen")
    monkeypatch.setattr(screen_mod, "load_band_gap_model", lambda _m: model)
    src = tmp_path / "gen.parquet"
    pd.DataFrame({"composition": CANDIDATES}).to_parquet(src)
    out = tmp_path / "cand.parquet"
    res = screen_file(src, out, model="whatever", settings=ScreenSettings(window=GapWindow(5.5)), known=KNOWN)
    cand = pd.read_parquet(out)
    allrows = pd.read_parquet(screened_path(out))
    funnel = json.loads(funnel_path(out).read_text())
    assert cand[C.FORMULA].tolist() == res.candidates[C.FORMULA].tolist()
    assert len(allrows) == res.funnel["n_screened"]
    assert funnel["funnel"]["n_candidates"] == len(cand)
    assert (
        funnel["settings"]["gap_min"] == 5.5
        and funnel["settings"]["smact"]["oxidation_states_set"] == "icsd24"
    )
    with pytest.raises(InputError, match="exists"):
        screen_file(src, out, model="whatever", settings=ScreenSettings(window=GapWindow(5.5)), known=KNOWN)
    # an empty result still writes a table with headers
    out2 = tmp_path / "none.csv"
    res2 = screen_file(src, out2, model="x", settings=ScreenSettings(window=GapWindow(99.0)), known=KNOWN)
    assert res2.n_candidates == 0
    empty = pd.read_csv(out2)
    assert len(empty) == 0 and C.FORMULA in empty.columns and "smact_valid" in empty.columns


def test_bad_input(model, tmp_path):
    with pytest.raises(InputError, match="no formulas"):
        screen([], model)
    with pytest.raises(InputError, match="no formula could be read"):
        screen(["Xx2", "Qq"], model, known=KNOWN)
    wrong = tmp_path / "wrong.csv"
    pd.DataFrame({"gap": [1.0, 2.0]}).to_csv(wrong, index=False)
    with pytest.raises(InputError, match="no formula column"):
        read_formula_column(wrong)
    empty = tmp_path / "empty.csv"
    empty.write_text("formula\n")
    with pytest.raises(InputError, match="no data rows"):
        read_formula_column(empty)
    with pytest.raises(InputError, match="gap_max must be above gap_min"):
        ScreenSettings(window=GapWindow(6.0, 3.0))
    with pytest.raises(InputError, match="unsupported table format"):
        screen_file(wrong, tmp_path / "out.txt", model="x")


def _tiny_forest_dir(tmp_path: Path) -> Path:
    from gapforge.models.forest import ForestModel

    df = pd.read_csv(FILES / "gaps_small.csv", keep_default_na=False, na_values=[])
    model = ForestModel(n_estimators=10, n_jobs=1, random_state=0).fit(df["composition"].tolist(), df["Eg"])
    return model.save(tmp_path / "forest")


def test_cli_screen_with_a_saved_forest(tmp_path):
    from gapforge.cli import app

    model_dir = _tiny_forest_dir(tmp_path)
    src = tmp_path / "gen.csv"
    pd.DataFrame({"formula": ["RbF", "CsF", "LiF", "KMgF3", "GaAs", "Xx2", "NaCl2"]}).to_csv(src, index=False)
    known = tmp_path / "known.csv"
    pd.DataFrame({"formula": ["LiF"]}).to_csv(known, index=False)
    out = tmp_path / "cand.csv"
    runner = CliRunner()
    args = ["screen", "--model", str(model_dir), "--input", str(src), "--gap-min", "4", "--out", str(out)]
    bad = runner.invoke(app, [*args, "--known", str(known)])
    assert f"{src}, row 6: unknown element" in str(bad.exception) and not out.exists()
    res = runner.invoke(app, [*args, "--known", str(known), "--skip-bad"])
    assert res.exit_code == 0, res.output
    cand = pd.read_csv(out, keep_default_na=False, na_values=[])
    assert "LiF" not in set(cand[C.FORMULA])  # known
    assert "GaAs" not in set(cand[C.FORMULA])  # outside the window
    allrows = pd.read_csv(screened_path(out), keep_default_na=False, na_values=[])
    assert allrows.set_index(C.FORMULA).loc["Xx2", "readable"] in (False, "False")
    # bad input: wrong shape -> one-line error, exit code 2, nothing written
    wrong = tmp_path / "wrong.csv"
    pd.DataFrame({"gap": [1.0]}).to_csv(wrong, index=False)
    out3 = tmp_path / "nothing.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "gapforge", "screen", "--model", str(model_dir), "--input", str(wrong),
         "--gap-min", "4", "--out", str(out3)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "no formula column" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out3.exists()

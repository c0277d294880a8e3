from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gapforge.data import load_dataset
from gapforge.encoding import FormulaEncoder
from gapforge.errors import ModelError
from gapforge.models.base import BandGapModel, file_sha256
from gapforge.models.forest import ForestModel
from gapforge.models.registry import load_model

QUERY = ["LiF", "GaAs", "SrYF5", "Xx2O", "", "Li0.5F0.5", "NaN"]


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return load_dataset(Path(__file__).parents[1] / "files" / "gaps_small.csv")


@pytest.fixture(scope="module")
def fitted(small: pd.DataFrame) -> ForestModel:
    return ForestModel(n_estimators=25, min_samples_leaf=1, max_leaf_nodes=None, n_jobs=2).fit(
        small["formula"], small["band_gap"]
    )


def test_protocol_and_columns(fitted: ForestModel) -> None:
    assert isinstance(fitted, BandGapModel)
    out = fitted.predict(QUERY)
    assert list(out.columns) == ["formula", "band_gap_mean", "band_gap_std", "reason"]
    assert out["formula"].tolist() == QUERY
    ok = out["reason"] == ""
    assert ok.tolist() == [True, True, True, False, False, True, True]
    assert out.loc[~ok, ["band_gap_mean", "band_gap_std"]].isna().all().all()
    assert (out.loc[ok, "band_gap_std"] >= 0).all()
    assert "Xx" in out.loc[3, "reason"]


def test_learns_something(fitted: ForestModel, small: pd.DataFrame) -> None:
    pred = fitted.predict(small["formula"])
    train_mae = np.abs(pred["band_gap_mean"] - small["band_gap"]).mean()
    assert train_mae < 0.7 * np.abs(small["band_gap"] - small["band_gap"].mean()).mean()
    lif, gaas = fitted.predict(["LiF", "GaAs"])["band_gap_mean"]
    assert lif > gaas + 3  # a wide-gap fluoride vs a semiconductor
    # tree spread is a real uncertainty: not constant across formulas
    assert pred["band_gap_std"].std() > 0


def test_std_is_tree_spread(fitted: ForestModel) -> None:
    X = fitted.featurizer.transform(["SrTiO3", "KCl"])
    per_tree = np.stack([t.predict(X) for t in fitted.pipeline_.named_steps["regressor"].estimators_])
    out = fitted.predict(["SrTiO3", "KCl"])
    np.testing.assert_allclose(out["band_gap_mean"], per_tree.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(out["band_gap_std"], per_tree.std(axis=0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(out["band_gap_mean"], fitted.pipeline_.predict(["SrTiO3", "KCl"]), rtol=1e-10)


def test_predict_counts_matches_strings(fitted: ForestModel) -> None:
    enc = FormulaEncoder()
    formulas = ["LiF", "SrTiO3", "Ba2YCu3O7", "MgAl2O4"]
    batch = enc.encode(formulas)
    p = fitted.predict_counts(batch.counts, enc.elements)
    np.testing.assert_allclose(p.mean, fitted.predict(formulas)["band_gap_mean"])


def test_save_load_round_trip(fitted: ForestModel, tmp_path: Path) -> None:
    fitted.save(tmp_path / "m", metadata={"seed": 0})
    card = json.loads((tmp_path / "m" / "model.json").read_text())
    assert card["kind"] == "forest" and card["params"]["n_estimators"] == 25
    assert len(card["metadata"]["features"]) == 142
    again = ForestModel.load(tmp_path / "m")
    pd.testing.assert_frame_equal(again.predict(QUERY), fitted.predict(QUERY))
    via_registry = load_model(tmp_path / "m")
    pd.testing.assert_frame_equal(via_registry.predict(QUERY), fitted.predict(QUERY))


def test_broken_directories(fitted: ForestModel, tmp_path: Path) -> None:
    d = fitted.save(tmp_path / "m")
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "nowhere")
    (d / "forest.skops").rename(d / "moved")
    with pytest.raises(ModelError, match="partial"):
        load_model(d)
    (d / "forest.skops").write_bytes(b"not a zip file")
    with pytest.raises(ModelError, match="skops"):
        load_model(d)
    (d / "moved").rename(d / "forest.skops")
    card = json.loads((d / "model.json").read_text())
    card["metadata"]["format_version"] = 99
    (d / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="format"):
        load_model(d)
    card["metadata"]["format_version"] = 1
    card["params"]["n_trees_typo"] = 3
    (d / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="incompatible parameters"):
        load_model(d)
    (d / "model.json").write_text("{")
    with pytest.raises(ModelError, match="JSON"):
        load_model(d)
    (d / "model.json").write_text(json.dumps({"kind": "autoencoder", "params": {}, "metadata": {}}))
    with pytest.raises(ModelError, match="not a band-gap model"):
        load_model(d)


def test_refuses_untrusted_skops_content(fitted: ForestModel, tmp_path: Path) -> None:
    from fractions import Fraction

    import skops.io as sio

    d = fitted.save(tmp_path / "m")
    sio.dump({"pipeline": Fraction(1, 3)}, d / "forest.skops")
    # Record the new file's sha256 so that load gets past the digest check to the type check.
    card = json.loads((d / "model.json").read_text())
    card["metadata"]["weights_sha256"] = file_sha256(d / "forest.skops")
    card["metadata"].pop("files_sha256", None)
    (d / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match=r"refusing to load untrusted types fractions\.Fraction"):
        ForestModel.load(d)


def test_unfitted_and_bad_lengths() -> None:
    with pytest.raises(ModelError, match="not fitted"):
        ForestModel().predict(["LiF"])
    with pytest.raises(ModelError, match="band gaps"):
        ForestModel().fit(["LiF", "NaCl"], [1.0])
    with pytest.raises(ModelError, match="featurised"):
        ForestModel().fit(["Xx", "Yy"], [1.0, 2.0])


@pytest.mark.data
def test_shipped_forest_loads_and_predicts() -> None:
    model = load_model("default", kind="forest")
    out = model.predict(["LiF", "Si", "GaAs"])
    assert (out["reason"] == "").all()
    lif, si, gaas = out["band_gap_mean"]
    assert lif > 5 and si < 1.5 and gaas < 2
    meta = model.metadata_
    assert meta["seed"] == 0 and meta["holdout"] == ["test-500"]
    assert meta["metrics"]["test"]["r2"] > 0.65 and meta["metrics"]["test-500"]["mae_eV"] < 0.8
    from gapforge.models.base import pretrained_dir

    assert (pretrained_dir("forest") / "forest.skops").stat().st_size < 10_000_000


def test_gradient_boosting_variant_round_trip(small: pd.DataFrame, tmp_path: Path) -> None:
    model = ForestModel(estimator="hgb", n_estimators=40, max_leaf_nodes=7, min_samples_leaf=3).fit(
        small["formula"], small["band_gap"]
    )
    out = model.predict(QUERY)
    lower, upper = (m.predict(model.featurizer.transform(["LiF"])) for m in model.quantile_models_)
    assert out.loc[0, "band_gap_std"] == pytest.approx(max(upper[0] - lower[0], 0) / 2)
    assert out["band_gap_mean"].isna().tolist() == [False, False, False, True, True, False, False]
    model.save(tmp_path / "h")
    pd.testing.assert_frame_equal(load_model(tmp_path / "h").predict(QUERY), out)
    with pytest.raises(ModelError, match="estimator"):
        ForestModel(estimator="svm")

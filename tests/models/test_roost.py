from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gapforge.models.base import file_sha256

torch = pytest.importorskip("torch")
pytest.importorskip("aviary")

from gapforge.data import load_dataset  # noqa: E402
from gapforge.errors import ModelError  # noqa: E402
from gapforge.models.base import BandGapModel  # noqa: E402
from gapforge.models.registry import load_model  # noqa: E402
from gapforge.models.roost import RoostEnsemble, build_graphs, collate, embedding_elements  # noqa: E402

QUERY = ["LiF", "GaAs", "Xx2O", "", "Li0.5F0.5", "NaN", "Li("]
TINY = {"elem_fea_len": 16, "hidden": 16, "trunk_hidden": (32,), "out_hidden": (16, 8), "batch_size": 8}


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return load_dataset(Path(__file__).parents[1] / "files" / "gaps_small.csv")


@pytest.fixture(scope="module")
def fitted(small: pd.DataFrame) -> RoostEnsemble:
    torch.set_num_threads(1)
    model = RoostEnsemble(
        n_members=2, epochs=25, patience=25, learning_rate=3e-3, weights_dtype="float32", seed=3, **TINY
    )
    return model.fit(small["formula"], small["band_gap"])


def test_collate_matches_aviary_collate_batch() -> None:
    from aviary.roost.data import CompositionData, collate_batch

    formulas = ["LiF", "Mo3W(SeS)4", "Fe2O3", "Li0.5Mn0.5O", "Si", "SrTiO3"]
    df = pd.DataFrame({"composition": formulas, "band_gap": 0.0, "material_id": range(len(formulas))})
    ds = CompositionData(df, {"band_gap": "regression"})
    ref = collate_batch([ds[i] for i in range(len(formulas))])[0]
    ours = collate(build_graphs(formulas, embedding_elements()), np.arange(len(formulas)))
    torch.manual_seed(0)
    net = RoostEnsemble(**TINY)._network().eval()
    with torch.no_grad():
        np.testing.assert_allclose(net(*ours)[0].numpy(), net(*ref)[0].numpy(), rtol=1e-5, atol=1e-6)
    # same graph sizes: nodes and n^2 edges per formula
    assert [t.shape for t in ours] == [t.shape for t in ref]


def test_graphs_mark_bad_formulas() -> None:
    g = build_graphs(QUERY, embedding_elements())
    assert g.valid.tolist() == [True, True, False, False, True, True, False]
    assert "Xx" in g.reasons[2] and g.reasons[3] and g.reasons[6]
    assert g.n_nodes.tolist() == [2, 2, 0, 0, 2, 2, 0]
    assert np.allclose(g.weight[:2], [0.5, 0.5])


def test_fit_predict_protocol(fitted: RoostEnsemble, small: pd.DataFrame) -> None:
    assert isinstance(fitted, BandGapModel)
    out = fitted.predict(QUERY)
    assert list(out.columns) == ["formula", "band_gap_mean", "band_gap_std", "reason"]
    assert out["formula"].tolist() == QUERY
    bad = out["reason"] != ""
    assert bad.tolist() == [False, False, True, True, False, False, True]
    assert out.loc[bad, ["band_gap_mean", "band_gap_std"]].isna().all().all()
    assert (out.loc[~bad, "band_gap_mean"] >= 0).all()
    assert (out.loc[~bad, "band_gap_std"] > 0).all()
    assert len(fitted.histories_) == 2 and all(h.epochs_run == 25 for h in fitted.histories_)
    # learned something in 25 tiny epochs: better than predicting the training mean
    pred = fitted.predict(small["formula"])["band_gap_mean"]
    base = np.abs(small["band_gap"] - small["band_gap"].mean()).mean()
    assert np.abs(pred - small["band_gap"]).mean() < base


def test_std_combines_spread_and_aleatoric(fitted: RoostEnsemble) -> None:
    means, stds, _ = fitted.predict_members(["LiF", "SrTiO3"])
    out = fitted.predict(["LiF", "SrTiO3"])
    expected = np.sqrt(means.var(axis=0) + (stds**2).mean(axis=0))
    np.testing.assert_allclose(out["band_gap_std"], expected)
    assert (out["band_gap_std"] >= means.std(axis=0)).all()
    assert not np.allclose(means[0], means[1])  # members differ


def test_save_load_round_trip_exact(fitted: RoostEnsemble, tmp_path: Path) -> None:
    fitted.save(tmp_path / "m", metadata={"seed": 3})
    card = json.loads((tmp_path / "m" / "model.json").read_text())
    assert card["kind"] == "roost" and card["params"]["elem_embedding"] == "matscholar200"
    assert card["metadata"]["aviary-models_version"]
    again = RoostEnsemble.load(tmp_path / "m")
    pd.testing.assert_frame_equal(again.predict(QUERY), fitted.predict(QUERY))
    pd.testing.assert_frame_equal(load_model(tmp_path / "m").predict(QUERY), fitted.predict(QUERY))


def test_float16_storage_is_close(fitted: RoostEnsemble, tmp_path: Path) -> None:
    fitted.weights_dtype = "float16"
    try:
        fitted.save(tmp_path / "h")
    finally:
        fitted.weights_dtype = "float32"
    half = RoostEnsemble.load(tmp_path / "h").predict(["LiF", "GaAs", "SrTiO3"])
    full = fitted.predict(["LiF", "GaAs", "SrTiO3"])
    np.testing.assert_allclose(half["band_gap_mean"], full["band_gap_mean"], atol=0.02)


def test_weights_load_without_pickle(fitted: RoostEnsemble, tmp_path: Path) -> None:
    d = fitted.save(tmp_path / "m")
    state = torch.load(d / "roost_weights.pt", weights_only=True)
    assert len(state["members"]) == 2


def test_broken_directories(fitted: RoostEnsemble, tmp_path: Path) -> None:
    d = fitted.save(tmp_path / "m")
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"no model\.json"):
        load_model(tmp_path / "empty")
    (d / "roost_weights.pt").rename(d / "w.bak")
    with pytest.raises(ModelError, match="partial"):
        load_model(d)
    (d / "roost_weights.pt").write_bytes(b"garbage")
    with pytest.raises(ModelError, match=r"roost_weights\.pt: sha256 .* does not match"):
        load_model(d)
    card = json.loads((d / "model.json").read_text())
    digest = file_sha256(d / "roost_weights.pt")  # a card that vouches for the garbage
    card["metadata"]["weights_sha256"] = digest
    card["metadata"]["files_sha256"]["roost_weights.pt"] = digest
    (d / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="cannot load weights"):
        load_model(d)
    (d / "w.bak").rename(d / "roost_weights.pt")
    card = json.loads((d / "model.json").read_text())
    card["params"]["hidden"] = 32  # weights no longer fit the architecture
    (d / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="does not match"):
        load_model(d)
    card["params"]["hidden"] = TINY["hidden"]
    card["metadata"]["format_version"] = 2
    (d / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="format"):
        load_model(d)


def test_unfitted_and_unusable_training_data() -> None:
    with pytest.raises(ModelError, match="not fitted"):
        RoostEnsemble().predict(["LiF"])
    with pytest.raises(ModelError, match="band gaps"):
        RoostEnsemble().fit(["LiF"], [1.0, 2.0])
    with pytest.raises(ModelError, match="no training formula"):
        RoostEnsemble(epochs=1, **TINY).fit(["Xx", "Yy", "Zz"], [1.0, 2.0, 3.0])


@pytest.mark.data
@pytest.mark.slow
def test_shipped_oracle_predicts_sensible_gaps() -> None:
    model = load_model("default", kind="oracle")
    out = model.predict(["LiF", "NaCl", "Si", "GaAs", "SrYF5", "Cu", "Fe3Al"]).set_index("formula")
    assert (out["reason"] == "").all()
    assert out.loc["LiF", "band_gap_mean"] > out.loc["NaCl", "band_gap_mean"] > out.loc["Si", "band_gap_mean"]
    assert out.loc["SrYF5", "band_gap_mean"] > 5  # the paper's wide-gap discovery
    assert out.loc["Si", "band_gap_mean"] < 1.5
    assert out.loc["GaAs", "band_gap_mean"] < 1.5  # PBE: 0.19 eV in MP (one entry metallic)
    # the metal gate: metals at exactly 0 eV with a high P(metal)
    for metal in ("Cu", "Fe3Al"):
        assert out.loc[metal, "band_gap_mean"] == 0.0 and out.loc[metal, "p_metal"] > 0.9
    assert out.loc["LiF", "p_metal"] < 0.05
    assert model.metadata_["metrics"]["test"]["r2"] > 0.8  # matbench_mp_gap fold 0: 0.855


@pytest.mark.data
@pytest.mark.slow
def test_paper_setting_oracle_is_still_shipped() -> None:
    model = load_model("oracle-exp1", kind="oracle")
    assert not model.metal_head
    out = model.predict(["LiF", "Si", "GaAs", "SrYF5"]).set_index("formula")
    assert out.loc["LiF", "band_gap_mean"] > 5 and out.loc["SrYF5", "band_gap_mean"] > 5
    assert "p_metal" not in out.columns
    assert model.metadata_["metrics"]["test"]["mae_eV"] == pytest.approx(0.46, abs=0.01)

"""The Roost metal head, the experimental head and the ``--fidelity`` switch (tiny models)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")
pytest.importorskip("aviary")

from gapforge import columns as C  # noqa: E402
from gapforge.cli import app  # noqa: E402
from gapforge.data import load_dataset  # noqa: E402
from gapforge.errors import ModelError  # noqa: E402
from gapforge.models.experiment import ExperimentHead, ExperimentPredictor, head_dir  # noqa: E402
from gapforge.models.registry import load_predictor, predict_formulas  # noqa: E402
from gapforge.models.roost import RoostEnsemble  # noqa: E402

SMALL = Path(__file__).parents[1] / "files" / "gaps_small.csv"
TINY = {"elem_fea_len": 16, "hidden": 16, "trunk_hidden": (32,), "out_hidden": (16, 8), "batch_size": 8}
METALS = ["Cu", "Fe", "Al", "Ni3Al", "Fe3Al", "Ag", "Au", "CuZn", "Ti", "Co", "Ni", "Cr3Ni", "Mo", "W", "Pt"]
runner = CliRunner()


def _table() -> pd.DataFrame:
    small = load_dataset(SMALL)[[C.FORMULA, C.BAND_GAP]]
    metals = pd.DataFrame({C.FORMULA: METALS, C.BAND_GAP: 0.0})
    return pd.concat([small, metals], ignore_index=True).sample(frac=1.0, random_state=0)


@pytest.fixture(scope="module")
def oracle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    df = _table()
    model = RoostEnsemble(
        n_members=2,
        epochs=30,
        patience=30,
        learning_rate=3e-3,
        weights_dtype="float32",
        metal_head=True,
        **TINY,
    ).fit(df[C.FORMULA], df[C.BAND_GAP])
    out = tmp_path_factory.mktemp("oracle") / "oracle"
    model.save(out)
    # an "experimental" table: wider gaps than PBE, the same metals
    expt = df.assign(**{C.BAND_GAP: df[C.BAND_GAP] * 1.4})
    ExperimentHead(max_iter=30, min_samples_leaf=3).fit(
        expt[C.FORMULA].tolist(), expt[C.BAND_GAP].to_numpy(), pbe_model=model
    ).save(head_dir(out))
    return out


def test_metal_head_learns_p_metal_and_gates_metals_to_zero(oracle_dir: Path) -> None:
    pred = predict_formulas(["Cu", "Fe3Al", "LiF", "NaCl", "Xx"], str(oracle_dir))
    assert list(pred.columns) == [C.FORMULA, C.BAND_GAP_MEAN, C.BAND_GAP_STD, C.P_METAL, C.FIDELITY, C.REASON]
    p = pred[C.P_METAL].to_numpy()
    assert p[0] > 0.5 and p[1] > 0.5 and p[2] < 0.5 and p[3] < 0.5
    assert pred[C.BAND_GAP_MEAN].iloc[0] == 0.0 and pred[C.BAND_GAP_MEAN].iloc[1] == 0.0
    assert pred[C.BAND_GAP_MEAN].iloc[2] > 2.0
    assert np.isnan(p[4]) and "Xx" in pred[C.REASON].iloc[4]
    card = json.loads((oracle_dir / "model.json").read_text())
    assert card["params"]["metal_head"] is True


def test_fidelity_switch_changes_the_gap_and_is_recorded(oracle_dir: Path) -> None:
    formulas = ["LiF", "NaCl", "MgO", "Cu", "Xx"]
    pbe = predict_formulas(formulas, str(oracle_dir), fidelity="pbe")
    exp = predict_formulas(formulas, str(oracle_dir), fidelity="experiment")
    assert pbe[C.FIDELITY].eq("pbe").all() and exp[C.FIDELITY].eq("experiment").all()
    assert isinstance(load_predictor(str(oracle_dir), fidelity="experiment"), ExperimentPredictor)
    # the head learnt gaps 1.4x the PBE labels: wide-gap insulators come out wider
    assert (exp[C.BAND_GAP_MEAN].iloc[:3].to_numpy() > pbe[C.BAND_GAP_MEAN].iloc[:3].to_numpy()).all()
    assert exp[C.BAND_GAP_MEAN].iloc[3] == 0.0 and exp[C.P_METAL].iloc[3] > 0.5
    assert np.isnan(exp[C.BAND_GAP_MEAN].iloc[4]) and "Xx" in exp[C.REASON].iloc[4]


def test_experiment_head_round_trips(oracle_dir: Path) -> None:
    pbe = load_predictor(str(oracle_dir))
    head = ExperimentHead.load(head_dir(oracle_dir))
    a = head.predict(["LiF", "GaAs"], pbe_model=pbe)
    b = head.predict(["LiF", "GaAs"], pbe_model=pbe)
    pd.testing.assert_frame_equal(a, b)
    assert head.std_scale_ == 1.0  # fitted without validation rows


def test_unknown_fidelity_and_missing_head_fail_clearly(oracle_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="unknown fidelity"):
        load_predictor(str(oracle_dir), fidelity="hse")
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("model.json", "roost_weights.pt"):
        (bare / f).write_bytes((oracle_dir / f).read_bytes())
    with pytest.raises(ModelError, match="no experimental-gap head"):
        load_predictor(str(bare), fidelity="experiment")


def test_cli_predict_shows_p_metal_and_fidelity(oracle_dir: Path) -> None:
    res = runner.invoke(app, ["predict", "--model", str(oracle_dir), "--fidelity", "experiment", "Cu", "LiF"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert lines[0].split() == [
        "formula", "band_gap_mean", "(eV)", "band_gap_std", "(eV)", "p_metal", "fidelity", "reason"
    ]  # fmt: skip
    assert lines[1].split()[0] == "Cu" and lines[1].split()[4] == "experiment"
    assert float(lines[1].split()[3]) > 0.5 and float(lines[2].split()[3]) < 0.5
    res = runner.invoke(app, ["predict", "--model", str(oracle_dir), "--fidelity", "hse", "Cu"])
    assert res.exit_code != 0


def test_checkpoint_resumes_a_member(tmp_path: Path) -> None:
    df = _table()
    kw = {"n_members": 1, "epochs": 3, "patience": 10, "weights_dtype": "float32", "metal_head": True, **TINY}
    first = RoostEnsemble(**kw).fit(df[C.FORMULA], df[C.BAND_GAP], checkpoint_dir=tmp_path / "ck")
    assert (tmp_path / "ck" / "member_0.pt").is_file()
    again = RoostEnsemble(**kw).fit(df[C.FORMULA], df[C.BAND_GAP], checkpoint_dir=tmp_path / "ck")
    # every epoch was already done: the resumed member trains no further and ends where the first did
    assert again.histories_[0].val_mae == first.histories_[0].val_mae
    a = first.predict(["LiF", "Cu"])
    b = again.predict(["LiF", "Cu"])
    np.testing.assert_allclose(a[C.BAND_GAP_MEAN], b[C.BAND_GAP_MEAN], rtol=1e-6)


def test_screen_and_discover_take_the_fidelity(oracle_dir: Path, tmp_path: Path) -> None:
    from gapforge.discover import resolve_config
    from gapforge.errors import InputError
    from gapforge.screening.screen import ScreenSettings, screen_file

    assert resolve_config(gap_min=1.0).models.fidelity == "pbe"
    assert resolve_config(gap_min=1.0, fidelity="experiment").models.fidelity == "experiment"
    with pytest.raises(InputError, match="fidelity"):
        resolve_config(gap_min=1.0, fidelity="hse")
    inp = tmp_path / "in.csv"
    pd.DataFrame({"formula": ["LiF", "NaCl", "MgO", "Cu"]}).to_csv(inp, index=False)
    from gapforge.window import GapWindow

    settings = ScreenSettings(window=GapWindow(0.5), require_smact=False, require_novel=False)
    res = screen_file(
        inp, tmp_path / "c.csv", model=str(oracle_dir), settings=settings, known=[], fidelity="experiment"
    )
    funnel = json.loads(res.summary_path.read_text())
    assert funnel["fidelity"] == "experiment"
    want = predict_formulas(["LiF", "NaCl", "MgO", "Cu"], str(oracle_dir), fidelity="experiment")
    got = res.table.set_index(C.FORMULA).loc[want[C.FORMULA], C.BAND_GAP_MEAN].to_numpy()
    np.testing.assert_allclose(got, want[C.BAND_GAP_MEAN].to_numpy(), rtol=1e-9)


def test_recalibration_survives_save_and_drives_predict_and_screen(oracle_dir: Path, tmp_path: Path) -> None:
    from gapforge.models.registry import load_model
    from gapforge.screening.screen import ScreenSettings, screen_file
    from gapforge.window import GapWindow

    model = load_model(str(oracle_dir))
    assert model.recalibration_ is None
    df = _table()
    model.recalibrate(df[C.FORMULA].tolist(), df[C.BAND_GAP].to_numpy(), seed=1)
    out = model.save(tmp_path / "recal")
    again = load_model(str(out))
    np.testing.assert_allclose(again.recalibration_.freqs, model.recalibration_.freqs)
    formulas = ["LiF", "NaCl", "MgO", "Cu", "GaAs"]
    dist = again.predict_distribution(formulas)
    pred = again.predict(formulas)
    np.testing.assert_allclose(pred[C.BAND_GAP_MEAN], dist.median())
    np.testing.assert_allclose(pred[C.BAND_GAP_STD], dist.sigma_equivalent())
    raw = dist.with_recalibration(None)
    assert not np.allclose(dist.cdf(np.full(5, 3.0)), raw.cdf(np.full(5, 3.0)))
    inp = tmp_path / "in.csv"
    pd.DataFrame({"formula": formulas}).to_csv(inp, index=False)
    window = GapWindow(2.0, 6.0)
    res = screen_file(
        inp,
        tmp_path / "c.csv",
        model=str(out),
        settings=ScreenSettings(window=window, require_smact=False, require_novel=False),
        known=[],
    )
    got = res.table.set_index(C.FORMULA).loc[formulas, C.P_IN_WINDOW].to_numpy()
    np.testing.assert_allclose(got, dist.window_probability(window), rtol=1e-9)


def test_metal_classifier_blends_into_the_head_and_round_trips(oracle_dir: Path, tmp_path: Path) -> None:
    from gapforge.models.metal_gate import MagpieMetalClassifier
    from gapforge.models.registry import load_model

    df = _table()
    model = load_model(str(oracle_dir))
    formulas = ["LiF", "NaCl", "Cu", "Fe3Al", "GaAs"]
    p_head = model.components(formulas)[C.P_METAL].to_numpy()
    clf = MagpieMetalClassifier(max_iter=20, min_samples_leaf=3).fit(df[C.FORMULA], df[C.BAND_GAP])
    p_clf = clf.p_metal(formulas)
    assert p_clf[2] > 0.5 > p_clf[0]  # Cu a metal, LiF not: it learned from the 0 eV rows
    model.attach_metal_classifier(clf, 0.25)
    np.testing.assert_allclose(model.components(formulas)[C.P_METAL], 0.25 * p_clf + 0.75 * p_head)
    out = model.save(tmp_path / "blend")
    again = load_model(str(out))
    assert again.metal_blend_weight_ == 0.25
    np.testing.assert_allclose(again.predict(formulas)[C.P_METAL], model.predict(formulas)[C.P_METAL])
    with pytest.raises(ModelError, match="blend weight"):
        again.attach_metal_classifier(clf, 1.5)
    (out / "metal_classifier.skops").write_bytes(b"tampered")
    with pytest.raises(ModelError, match="sha256"):
        load_model(str(out))


def test_gap_regressor_blends_into_the_gap_head_and_round_trips(oracle_dir: Path, tmp_path: Path) -> None:
    from gapforge.models.metal_gate import MagpieGapRegressor, blend
    from gapforge.models.registry import load_model

    df = _table()
    model = load_model(str(oracle_dir))
    assert model.gap_regressor_ is None  # a card without a gap regressor loads as the plain head
    formulas = ["LiF", "NaCl", "MgO", "Cu", "GaAs"]
    head = model.components(formulas)
    reg = MagpieGapRegressor(max_iter=30, min_samples_leaf=3).fit(df[C.FORMULA], df[C.BAND_GAP])
    g = reg.gap(formulas)
    assert g[0] > g[4] > 0  # LiF wider than GaAs: it learned from the non-metal rows
    model.attach_gap_regressor(reg, 0.3)
    got = model.components(formulas)
    np.testing.assert_allclose(got[C.BAND_GAP_MEAN], 0.3 * g + 0.7 * head[C.BAND_GAP_MEAN].to_numpy())
    np.testing.assert_allclose(got[C.P_METAL], head[C.P_METAL])  # the gate's P(metal) is untouched
    np.testing.assert_allclose(got[C.BAND_GAP_STD], head[C.BAND_GAP_STD])
    out = model.save(tmp_path / "blend")
    card = json.loads((out / "model.json").read_text())
    entry = card["metadata"]["gap_regressor"]
    assert entry["blend_weight"] == 0.3 and entry["file"] == "gap_regressor.skops"
    assert card["metadata"]["files_sha256"]["gap_regressor.skops"] == entry["sha256"]
    again = load_model(str(out))
    assert again.gap_blend_weight_ == 0.3
    np.testing.assert_allclose(
        again.predict(formulas)[C.BAND_GAP_MEAN], model.predict(formulas)[C.BAND_GAP_MEAN]
    )
    again.attach_gap_regressor(reg, 0.0)  # weight 0: the head's own gap
    np.testing.assert_allclose(again.components(formulas)[C.BAND_GAP_MEAN], head[C.BAND_GAP_MEAN])
    with pytest.raises(ModelError, match="blend weight"):
        again.attach_gap_regressor(reg, 1.5)
    with pytest.raises(ModelError, match="metal_head=True"):
        RoostEnsemble(metal_head=False).attach_gap_regressor(reg, 0.5)
    np.testing.assert_allclose(blend(np.array([1.0, 2.0]), np.array([np.nan, 4.0]), 0.5), [1.0, 3.0])
    (out / "gap_regressor.skops").write_bytes(b"tampered")
    with pytest.raises(ModelError, match="sha256"):
        load_model(str(out))


def test_experiment_head_cross_fits_its_recalibration(oracle_dir: Path) -> None:
    from gapforge.models.calibration import CdfRecalibration
    from gapforge.models.registry import load_model

    pbe = load_model(str(oracle_dir))
    df = _table()
    expt = df.assign(**{C.BAND_GAP: df[C.BAND_GAP] * 1.4})
    head = ExperimentHead(max_iter=10, min_samples_leaf=3)
    f, y = expt[C.FORMULA].tolist(), expt[C.BAND_GAP].to_numpy()
    head.fit(f[:50], y[:50], pbe_model=pbe, val_formulas=f[50:], val_band_gaps=y[50:])
    from_val = head.recalibration_
    assert isinstance(from_val, CdfRecalibration) and from_val.n_fit == len(f) - 50
    head.cross_fit_recalibration(f[:50], y[:50], pbe_model=pbe, folds=3)
    assert head.recalibration_.n_fit == 50  # one out-of-fold PIT per training row
    assert not np.allclose(head.recalibration_(np.linspace(0, 1, 11)), from_val(np.linspace(0, 1, 11)))
    dist = head.predict_distribution(["LiF", "Cu"], pbe_model=pbe)
    assert dist.recalibration is head.recalibration_

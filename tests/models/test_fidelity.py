"""The Roost metal head, the experimental head and the ``--fidelity`` switch (tiny models)."""

from __future__ import annotations

import json
from dataclasses import replace
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
from gapforge.models.boosting import BoosterSettings  # noqa: E402
from gapforge.models.experiment import HEAD_BOOSTER, ExperimentHead, ExperimentPredictor, head_dir  # noqa: E402
from gapforge.models.registry import load_predictor, predict_formulas  # noqa: E402
from gapforge.models.roost import RoostEnsemble  # noqa: E402

SMALL = Path(__file__).parents[1] / "files" / "gaps_small.csv"
TINY = {"elem_fea_len": 16, "hidden": 16, "trunk_hidden": (32,), "out_hidden": (16, 8), "batch_size": 8}
METALS = ["Cu", "Fe", "Al", "Ni3Al", "Fe3Al", "Ag", "Au", "CuZn", "Ti", "Co", "Ni", "Cr3Ni", "Mo", "W", "Pt"]
runner = CliRunner()


def _tiny(max_iter: int) -> BoosterSettings:
    """The head's booster settings, shortened for the tiny table."""
    return replace(HEAD_BOOSTER, max_iter=max_iter, min_samples_leaf=3)


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
    ExperimentHead(booster=_tiny(30)).fit(
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
    head = ExperimentHead(booster=_tiny(10))
    f, y = expt[C.FORMULA].tolist(), expt[C.BAND_GAP].to_numpy()
    head.fit(f[:50], y[:50], pbe_model=pbe, val_formulas=f[50:], val_band_gaps=y[50:])
    from_val = head.recalibration_
    assert isinstance(from_val, CdfRecalibration) and from_val.n_fit == len(f) - 50
    head.cross_fit_recalibration(f[:50], y[:50], pbe_model=pbe, folds=3)
    assert head.recalibration_.n_fit == 50  # one out-of-fold PIT per training row
    assert not np.allclose(head.recalibration_(np.linspace(0, 1, 11)), from_val(np.linspace(0, 1, 11)))
    dist = head.predict_distribution(["LiF", "Cu"], pbe_model=pbe)
    assert dist.recalibration is head.recalibration_


def test_host_head_sees_a_doped_compound_as_its_host(oracle_dir: Path, tmp_path: Path) -> None:
    from gapforge.models.registry import load_model

    pbe = load_model(str(oracle_dir))
    df = _table()
    expt = df.assign(**{C.BAND_GAP: df[C.BAND_GAP] * 1.4})
    f, y = expt[C.FORMULA].tolist(), expt[C.BAND_GAP].to_numpy()
    kw = {"booster": _tiny(30)}
    host_pbe = ExperimentHead(**kw, host_fraction=0.05).fit(f, y, pbe_model=pbe)
    host = ExperimentHead(**kw, host_fraction=0.05, host_magpie=True).fit(f, y, pbe_model=pbe)
    plain = ExperimentHead(**kw).fit(f, y, pbe_model=pbe)
    doped = ["MgO", "Mg0.995Ca0.005O"]
    # the PBE oracle is asked about the host: the same four PBE inputs for both rows
    hp, pp = host_pbe.design(doped, pbe).X[:, -4:], plain.design(doped, pbe).X[:, -4:]
    np.testing.assert_allclose(hp[0], hp[1], rtol=1e-2)  # Mg0.995O: nearly MgO
    np.testing.assert_allclose(hp[0], pp[0], rtol=1e-6)
    assert np.abs(pp[0] - pp[1]).max() > 10 * np.abs(hp[0] - hp[1]).max()  # Roost reads 0.5 % Ca as Mg-Ca-O
    h = host.predict(doped, pbe_model=pbe)[C.BAND_GAP_MEAN].to_numpy()
    p = plain.predict(doped, pbe_model=pbe)[C.BAND_GAP_MEAN].to_numpy()
    assert abs(h[0] - h[1]) < 0.05 * h[0]  # 0.5 % Ca: the host's gap
    assert abs(h[0] - h[1]) < abs(p[0] - p[1])  # the plain head jumps on the dopant
    host.save(tmp_path / "head")
    back = ExperimentHead.load(tmp_path / "head")
    assert (back.host_fraction, back.host_magpie) == (0.05, True)
    assert set(back.metadata_["files_sha256"]) == {"head.skops"}  # issue 19's policy
    pd.testing.assert_frame_equal(back.predict(doped, pbe_model=pbe), host.predict(doped, pbe_model=pbe))
    # a head saved before the option (no host_* in its card) reads the plain composition
    old = tmp_path / "old"
    old.mkdir()
    card = json.loads((head_dir(oracle_dir) / "model.json").read_text())
    del card["params"]["host_fraction"], card["params"]["host_magpie"], card["params"]["target"]
    (old / "model.json").write_text(json.dumps(card))
    (old / "head.skops").write_bytes((head_dir(oracle_dir) / "head.skops").read_bytes())
    back = ExperimentHead.load(old)
    assert (back.host_fraction, back.host_magpie, back.target) == (0.0, False, "gap")


def test_log1p_head_fits_the_log_gap_and_round_trips(oracle_dir: Path, tmp_path: Path) -> None:
    from gapforge.models.registry import load_model

    pbe = load_model(str(oracle_dir))
    df = _table()
    f, y = df[C.FORMULA].tolist(), df[C.BAND_GAP].to_numpy() * 1.4
    head = ExperimentHead(booster=_tiny(30), target="log1p").fit(f, y, pbe_model=pbe)
    X = head.design(["LiF", "NaCl"], pbe).X
    _, mu, _, _ = head._parts(["LiF", "NaCl"], pbe)
    np.testing.assert_allclose(mu, np.expm1(head.regressor_.predict(X)))  # the regressor fits log1p(gap)
    fitted = head.regressor_.predict(head.design(f, pbe).X)
    assert fitted.max() < np.log1p(y.max()) + 0.5  # on the log scale, not in eV
    head.save(tmp_path / "head")
    back = ExperimentHead.load(tmp_path / "head")
    assert back.target == "log1p"
    pd.testing.assert_frame_equal(
        back.predict(["LiF", "Cu"], pbe_model=pbe), head.predict(["LiF", "Cu"], pbe_model=pbe)
    )
    with pytest.raises(ValueError):
        ExperimentHead(target="sqrt").fit(f, y, pbe_model=pbe)


def test_head_booster_settings_card_layouts_old_and_new(oracle_dir: Path, tmp_path: Path) -> None:
    from gapforge.models.experiment import FORMAT_VERSION
    from gapforge.models.registry import load_model

    pbe = load_model(str(oracle_dir))
    f, y = _table()[C.FORMULA].tolist(), _table()[C.BAND_GAP].to_numpy() * 1.4
    slow = replace(_tiny(40), learning_rate=0.02, seed=5)
    head = ExperimentHead(booster=_tiny(30).with_seed(5), regressor_booster=slow, n_bags=3, target="log1p")
    head.fit(f, y, pbe_model=pbe)
    assert len(head.regressors_) == 3 and head.regressors_[1].learning_rate == 0.02
    assert head.classifier_.learning_rate == HEAD_BOOSTER.learning_rate and head.classifier_.random_state == 5
    head.save(tmp_path / "new")
    card = json.loads((tmp_path / "new" / "model.json").read_text())
    assert card["metadata"]["format_version"] == FORMAT_VERSION == 2
    assert card["params"]["booster"] == _tiny(30).with_seed(5).to_dict()
    assert card["params"]["regressor_booster"] == slow.to_dict() and "max_iter" not in card["params"]
    back = ExperimentHead.load(tmp_path / "new")
    assert back.get_params() == head.get_params() and len(back.regressors_) == 3
    pd.testing.assert_frame_equal(back.predict(f[:6], pbe_model=pbe), head.predict(f[:6], pbe_model=pbe))
    # the layout of heads saved before BoosterSettings (format 1, e.g. the log1p head shipped
    # with the oracle until then): the five settings flat in params, one regressor
    plain = ExperimentHead(booster=_tiny(30).with_seed(5), target="log1p").fit(f, y, pbe_model=pbe)
    plain.save(tmp_path / "plain")
    old = tmp_path / "old"
    old.mkdir()
    card = json.loads((tmp_path / "plain" / "model.json").read_text())
    params = {k: card["params"][k] for k in ("features", "host_fraction", "host_magpie", "target")}
    card["params"] = {**params, **card["params"]["booster"]}
    card["metadata"]["format_version"] = 1
    (old / "model.json").write_text(json.dumps(card))
    (old / "head.skops").write_bytes((tmp_path / "plain" / "head.skops").read_bytes())
    again = ExperimentHead.load(old)
    assert again.booster_settings == _tiny(30).with_seed(5) and again.regressor_booster is None
    assert (again.n_bags, again.monotone_pbe, again.seed) == (1, False, 5)
    pd.testing.assert_frame_equal(again.predict(f[:6], pbe_model=pbe), plain.predict(f[:6], pbe_model=pbe))
    card["params"]["booster"] = _tiny(30).to_dict()  # both layouts at once: refused
    (old / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="both"):
        ExperimentHead.load(old)
    card["metadata"]["format_version"] = 9
    (old / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="format 1 or 2"):
        ExperimentHead.load(old)


def test_head_fit_design_is_the_fit_path_and_monotone_holds(oracle_dir: Path) -> None:
    from gapforge.models.registry import load_model

    pbe = load_model(str(oracle_dir))
    f, y = _table()[C.FORMULA].tolist(), _table()[C.BAND_GAP].to_numpy() * 1.4
    head = ExperimentHead(booster=_tiny(30), target="log1p").fit(f, y, pbe_model=pbe)
    d = ExperimentHead(booster=_tiny(30), target="log1p").design(f, pbe)  # an unfitted head's design
    again = ExperimentHead(booster=_tiny(30), target="log1p").fit_design(d.X[d.valid], y[d.valid])
    parts, ref = again.predict_design(d.X[:5]), head._parts(f[:5], pbe)
    np.testing.assert_array_equal(parts.p_metal, ref[0])
    np.testing.assert_array_equal(parts.mu, ref[1])
    np.testing.assert_array_equal(parts.sigma, ref[2])
    gate_only = ExperimentHead(booster=_tiny(30)).fit_design(d.X[d.valid], y[d.valid], regressor=False)
    assert gate_only.predict_design(d.X[:2]).mu is None
    # monotone_pbe: the gap never falls as the PBE non-metal and gated gaps rise together
    mono = ExperimentHead(booster=_tiny(30), monotone_pbe=True).fit_design(d.X[d.valid], y[d.valid])
    sweep = np.repeat(d.X[:1], 20, axis=0)
    sweep[:, -3] = sweep[:, -1] = np.linspace(0.0, 10.0, 20)
    assert (np.diff(mono.predict_design(sweep).mu) >= -1e-12).all()
    free = ExperimentHead(booster=_tiny(30)).fit_design(d.X[d.valid], y[d.valid])
    assert free.regressors_[0].monotonic_cst is None and mono.regressors_[0].monotonic_cst is not None
    with pytest.raises(ModelError, match="monotone_pbe"):
        ExperimentHead(features="magpie", monotone_pbe=True).fit(f, y)
    with pytest.raises(ModelError, match="n_bags"):
        ExperimentHead(n_bags=0).fit_design(d.X[d.valid], y[d.valid])


def test_seed_bagging_on_all_rows_needs_feature_subsampling(oracle_dir: Path, tmp_path: Path) -> None:
    from gapforge.models.registry import load_model

    pbe = load_model(str(oracle_dir))
    f, y = _table()[C.FORMULA].tolist(), _table()[C.BAND_GAP].to_numpy() * 1.4
    d = ExperimentHead(booster=_tiny(30)).design(f, pbe)
    X, yv = d.X[d.valid], y[d.valid]
    sub = replace(_tiny(30), max_features=0.5, seed=3)
    head = ExperimentHead(
        booster=_tiny(30), regressor_booster=sub, n_bags=3, bag_fraction=1.0, target="log1p"
    )
    head.fit_design(X, yv)
    assert [r.max_features for r in head.regressors_] == [0.5] * 3
    assert [r.random_state for r in head.regressors_] == [3, 4, 5]
    members = [r.predict(X) for r in head.regressors_]
    assert not np.allclose(members[0], members[1]) and not np.allclose(members[1], members[2])
    np.testing.assert_allclose(
        head.predict_design(X).mu, np.clip(np.expm1(np.mean(members, axis=0)), 0, None)
    )
    # every member saw every row: the first member is the single regressor with its settings
    one = ExperimentHead(booster=_tiny(30), regressor_booster=sub, target="log1p").fit_design(X, yv)
    np.testing.assert_array_equal(one.regressors_[0].predict(X), members[0])
    # without feature subsampling the seeds give identical members
    same = ExperimentHead(booster=_tiny(30), n_bags=2, bag_fraction=1.0).fit_design(X, yv)
    np.testing.assert_array_equal(same.regressors_[0].predict(X), same.regressors_[1].predict(X))
    # the setting travels with the card; a card without it (every head before it) reads None
    head.fit(f, y, pbe_model=pbe).save(tmp_path / "bagged")
    card = json.loads((tmp_path / "bagged" / "model.json").read_text())
    assert (
        card["params"]["regressor_booster"]["max_features"] == 0.5 and card["params"]["bag_fraction"] == 1.0
    )
    back = ExperimentHead.load(tmp_path / "bagged")
    assert back.regressor_settings == sub and len(back.regressors_) == 3
    pd.testing.assert_frame_equal(back.predict(f[:6], pbe_model=pbe), head.predict(f[:6], pbe_model=pbe))
    del card["params"]["regressor_booster"]["max_features"]
    (tmp_path / "bagged" / "model.json").write_text(json.dumps(card))
    assert ExperimentHead.load(tmp_path / "bagged").regressor_settings.max_features is None

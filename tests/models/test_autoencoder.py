"""Composition autoencoder: round trips, latent bounds, save/load, bad input, measures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gapforge.errors import FormulaError, InputError, ModelError
from gapforge.models.autoencoder import (
    CompositionAutoencoder,
    decode_table,
    encode_table,
    read_latent_file,
    train_autoencoder,
)
from gapforge.models.base import MODEL_CARD_FILE, file_sha256
from gapforge.models.latent_metrics import (
    SmactSettings,
    decode_stats,
    decode_valid,
    evaluate_autoencoder,
    latent_map,
    smact_valid,
)

ELEMENTS = ("H", "Li", "O", "F", "Na", "Mg", "Cl", "K")
LEVELS = 4
# 32 hand-written formulas over the tiny vocabulary, all counts <= 4
TINY = [
    "LiF", "NaCl", "KCl", "MgO", "Li2O", "Na2O", "K2O", "MgF2", "MgCl2", "LiCl",
    "NaF", "KF", "LiH", "NaH", "KH", "MgH2", "H2O", "HF", "HCl", "LiOH",
    "NaOH", "KOH", "Mg(OH)2", "KMgF3", "NaMgF3", "LiMgCl3", "Li3ClO", "Na3ClO", "KClO3", "NaClO4",
    "K2MgCl4", "Li2MgCl4",
]  # fmt: skip


def _tiny(arch: str, **kw) -> CompositionAutoencoder:
    params = {
        "latent_dim": 8,
        "channels": (8, 16),
        "hidden": 64,
        "epochs": 300,
        "batch_size": 32,
        "learning_rate": 3e-3,
        "seed": 0,
        "elements": ELEMENTS,
        "n_levels": LEVELS,
        "beta": 0.0 if arch == "paper" else 1e-3,
        "threads": 1,
    }
    params.update(kw)
    return CompositionAutoencoder(arch, **params)


@pytest.fixture(scope="module", params=["softmax", "paper", "softmax-factored"])
def fitted(request) -> CompositionAutoencoder:
    if request.param == "softmax-factored":  # shared element x count factors (the shipped recipe)
        return _tiny("softmax", factor_rank=4).fit(TINY)
    return _tiny(request.param).fit(TINY)


def _reduced(formulas):
    return (
        CompositionAutoencoder(elements=ELEMENTS, n_levels=LEVELS)
        .formula_encoder.encode(formulas)
        .reduced.tolist()
    )


# -- fitting and round trips ------------------------------------------------------------------
def test_round_trip_on_training_formulas(fitted: CompositionAutoencoder) -> None:
    decoded = fitted.reconstruct(TINY)
    exact = np.mean([d == t for d, t in zip(decoded, _reduced(TINY), strict=True)])
    assert exact >= 0.9, (fitted.arch, list(zip(TINY, decoded, strict=True)))


def test_reduced_formula_is_the_key(fitted: CompositionAutoencoder) -> None:
    # Li2F2 reduces to LiF: same code, same decode
    z = fitted.encode(["Li2F2", "LiF"])
    np.testing.assert_array_equal(z[0], z[1])
    assert fitted.training_formulas == frozenset(_reduced(TINY))


def test_encode_shape_dtype_and_single_string(fitted: CompositionAutoencoder) -> None:
    z = fitted.encode(TINY)
    assert z.shape == (len(TINY), fitted.latent_dim)
    assert z.dtype == np.float32
    assert fitted.encode("LiF").shape == (1, fitted.latent_dim)


def test_latent_bounds_are_min_max_of_training_codes(fitted: CompositionAutoencoder) -> None:
    z = fitted.encode(sorted(fitted.training_formulas))
    b = fitted.latent_bounds
    assert b.shape == (2, fitted.latent_dim)
    np.testing.assert_allclose(b[0], z.min(axis=0), rtol=0, atol=1e-6)
    np.testing.assert_allclose(b[1], z.max(axis=0), rtol=0, atol=1e-6)
    assert (b[0] < b[1]).all()
    np.testing.assert_allclose(fitted.latent_mean, z.mean(axis=0), atol=1e-5)
    cov = fitted.latent_cov
    assert cov.shape == (fitted.latent_dim, fitted.latent_dim)
    np.testing.assert_allclose(cov, cov.T, atol=1e-6)
    assert np.linalg.eigvalsh(cov.astype(np.float64)).min() > -1e-6


def test_sampling_inside_bounds_and_gaussian_moments(fitted: CompositionAutoencoder) -> None:
    u = fitted.sample(500, method="uniform", seed=1)
    lo, hi = fitted.latent_bounds
    assert u.shape == (500, fitted.latent_dim)
    assert ((u >= lo) & (u <= hi)).all()
    g = fitted.sample(20000, method="gaussian", seed=2)
    sd = np.sqrt(np.diag(fitted.latent_cov))
    np.testing.assert_allclose(g.mean(axis=0), fitted.latent_mean, atol=float(0.05 * sd.max()))
    np.testing.assert_array_equal(fitted.sample(3, seed=5), fitted.sample(3, seed=5))
    with pytest.raises(InputError):
        fitted.sample(3, method="sobol")  # type: ignore[arg-type]


def test_code_refinement_fixes_wrong_codes_and_leaves_right_ones() -> None:
    # 40 epochs: the encoder alone gets 13 of 32 wrong; refinement fixes 10 of those
    ae = _tiny("softmax", epochs=40, refine_steps=0).fit(TINY)
    counts = ae.formula_encoder.formulas_to_counts(TINY)
    z0 = ae._encode_counts(counts)
    wrong = (ae.decode_counts(z0)[0] != counts).any(axis=1)
    assert 0 < wrong.sum() < len(TINY)
    ae.refine_steps = 200
    z1 = ae._encode_counts(counts)
    n_bad, n_fixed = ae.last_refined_
    assert n_bad == wrong.sum() and n_fixed > 0
    fixed = ~(ae.decode_counts(z1)[0] != counts).any(axis=1)
    assert fixed.sum() == len(TINY) - n_bad + n_fixed  # every fixed code now decodes exactly
    np.testing.assert_array_equal(z1[~wrong], z0[~wrong])  # right codes do not move
    lo, hi = ae.latent_bounds
    moved = (z1 != z0).any(axis=1)
    assert moved.sum() == n_fixed
    assert ((z1[moved] >= lo - 1e-6) & (z1[moved] <= hi + 1e-6)).all()  # inside the search box
    with pytest.raises(InputError, match="refine_steps"):
        _tiny("softmax", refine_steps=-1).fit(TINY)


def test_fit_is_deterministic_for_a_seed() -> None:
    a = _tiny("softmax", epochs=5).fit(TINY[:10])
    b = _tiny("softmax", epochs=5).fit(TINY[:10])
    np.testing.assert_array_equal(a.encode(TINY[:10]), b.encode(TINY[:10]))
    c = _tiny("softmax", epochs=5, seed=1).fit(TINY[:10])
    assert not np.array_equal(a.encode(TINY[:10]), c.encode(TINY[:10]))


def test_history_records_each_epoch_and_validation() -> None:
    m = _tiny("softmax", epochs=4).fit(TINY[:20], validation=TINY[20:])
    assert [h.epoch for h in m.history_] == [1, 2, 3, 4]
    assert all(h.val_exact is not None and 0 <= h.val_exact <= 1 for h in m.history_)
    assert m.history_[-1].loss < m.history_[0].loss


# -- decoding maths without fitting -------------------------------------------------------------
def test_softmax_decode_rule_and_gcd_reduction(
    fitted: CompositionAutoencoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    if fitted.arch != "softmax":
        pytest.skip("softmax rule")
    e, k = len(ELEMENTS), LEVELS + 1
    p = np.zeros((3, e, k), dtype=np.float32)
    p[:, :, 0] = 0.9  # absent everywhere ...
    li, f, o = ELEMENTS.index("Li"), ELEMENTS.index("F"), ELEMENTS.index("O")
    p[0, li] = [0.1, 0.0, 0.8, 0.1, 0.0]  # Li2
    p[0, f] = [0.2, 0.0, 0.7, 0.1, 0.0]  # F2  -> Li2F2 -> LiF
    p[1, li] = [0.3, 0.1, 0.5, 0.1, 0.0]  # Li2
    p[1, o] = [0.4, 0.6, 0.0, 0.0, 0.0]  # O   -> Li2O
    # row 2: every element's argmax is "absent"; the constrained maximum switches on the row
    # whose best count loses least: Mg (0.3 vs 0.6) beats Na (0.1 vs 0.9) -> Mg2 -> Mg
    mg, na = ELEMENTS.index("Mg"), ELEMENTS.index("Na")
    p[2, mg] = [0.6, 0.05, 0.3, 0.05, 0.0]
    p[2, na] = [0.9, 0.1, 0.0, 0.0, 0.0]
    monkeypatch.setattr(fitted, "decode_scores", lambda z: p)
    assert fitted.decode(np.zeros((3, fitted.latent_dim))) == ["LiF", "Li2O", "Mg"]
    assert fitted.last_forced_ == 1


def test_paper_decode_is_strict(fitted: CompositionAutoencoder, monkeypatch: pytest.MonkeyPatch) -> None:
    if fitted.arch != "paper":
        pytest.skip("paper rule")
    e = len(ELEMENTS)
    p = np.zeros((3, e, LEVELS), dtype=np.float32)
    na, cl = ELEMENTS.index("Na"), ELEMENTS.index("Cl")
    p[0, na, 0] = p[0, cl, 0] = 0.9  # NaCl
    p[1, na, 0] = p[1, na, 1] = 0.6  # two levels on in one row -> invalid
    p[1, cl, 0] = 0.9
    monkeypatch.setattr(fitted, "decode_scores", lambda z: p)
    assert fitted.decode(np.zeros((3, fitted.latent_dim))) == ["NaCl", None, None]
    monkeypatch.setattr(fitted, "decode_rule", "argmax")  # most probable level per row
    assert fitted.decode(np.zeros((3, fitted.latent_dim))) == ["NaCl", "NaCl", None]


def test_softmax_decodes_of_random_points_are_well_formed() -> None:
    m = _tiny("softmax", epochs=30).fit(TINY)
    z = np.random.default_rng(0).normal(0, 5, size=(300, m.latent_dim))
    decoded = m.decode(z)
    assert None not in decoded
    assert decode_valid(decoded, m.formula_encoder).all()


# -- bad input ----------------------------------------------------------------------------------
def test_unencodable_formulas(fitted: CompositionAutoencoder) -> None:
    with pytest.raises(FormulaError, match="Xx"):
        fitted.encode(["LiF", "Xx2O"])
    with pytest.raises(FormulaError, match="above 4"):
        fitted.encode(["Li5F"])
    with pytest.raises(FormulaError, match="not in the vocabulary"):
        fitted.encode(["SrYF5"])
    z = fitted.encode(["LiF", "Li5F", "NaCl"], errors="nan")
    assert np.isnan(z[1]).all()
    assert np.isfinite(z[[0, 2]]).all()
    enc = fitted.encode_batch(["LiF", "CsI"])
    assert enc.valid.tolist() == [True, False]
    assert "Cs" in enc.reasons[1]


def test_fit_rejects_unencodable_and_bad_params() -> None:
    with pytest.raises(FormulaError, match="Fe2O3"):
        _tiny("softmax", epochs=1).fit(["LiF", "Fe2O3"])
    with pytest.raises(InputError, match="architecture"):
        _tiny("gan", epochs=1).fit(TINY)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        _tiny("softmax", epochs=0).fit(TINY)


@pytest.mark.parametrize(
    ("z", "match"),
    [
        (np.zeros((2, 7)), "shape"),
        (np.zeros((2, 3, 8)), "shape"),
        (np.full((2, 8), np.nan), "not finite"),
        (np.array([[0.0] * 7 + [np.inf]]), "not finite"),
        ([["a"] * 8], "numbers"),
    ],
)
def test_decode_rejects_bad_latent_vectors(fitted: CompositionAutoencoder, z, match: str) -> None:
    with pytest.raises(InputError, match=match):
        fitted.decode(z)


def test_decode_accepts_one_vector(fitted: CompositionAutoencoder) -> None:
    z = fitted.encode(["MgO"])
    assert fitted.decode(z[0]) == fitted.decode(z)


def test_unfitted_model_says_so() -> None:
    with pytest.raises(ModelError, match="not fitted"):
        CompositionAutoencoder().decode(np.zeros((1, 128)))
    with pytest.raises(ModelError):
        _ = CompositionAutoencoder().latent_bounds


# -- persistence --------------------------------------------------------------------------------
def test_save_load_round_trip(fitted: CompositionAutoencoder, tmp_path: Path) -> None:
    fitted.save(tmp_path / "ae", metadata={"seed": 0, "note": "tiny"}, heldout=["NaBr"])
    card = json.loads((tmp_path / "ae" / MODEL_CARD_FILE).read_text())
    assert card["kind"] == "composition-autoencoder"
    assert card["params"]["arch"] == fitted.arch
    assert card["metadata"]["encoding"] == {"elements": list(ELEMENTS), "n_levels": LEVELS}
    assert card["metadata"]["note"] == "tiny"
    assert card["metadata"]["n_training_formulas"] == len(fitted.training_formulas)
    same = CompositionAutoencoder.load(tmp_path / "ae")
    assert same.get_params() == fitted.get_params()
    np.testing.assert_array_equal(same.encode(TINY), fitted.encode(TINY))
    np.testing.assert_array_equal(same.latent_bounds, fitted.latent_bounds)
    np.testing.assert_array_equal(same.latent_cov, fitted.latent_cov)
    z = fitted.sample(50, seed=3)
    assert same.decode(z) == fitted.decode(z)
    assert same.training_formulas == fitted.training_formulas
    assert same.heldout_formulas() == ["NaBr"]
    assert len(same.history_) == fitted.epochs


def test_float16_weights_keep_decodes(fitted: CompositionAutoencoder, tmp_path: Path) -> None:
    fitted.save(tmp_path / "f32")
    fitted.save(tmp_path / "f16", precision="float16")
    assert (tmp_path / "f16" / "weights.pt").stat().st_size < 0.7 * (
        tmp_path / "f32" / "weights.pt"
    ).stat().st_size
    half = CompositionAutoencoder.load(tmp_path / "f16")
    np.testing.assert_allclose(half.encode(TINY), fitted.encode(TINY), atol=0.05)
    assert half.reconstruct(TINY) == fitted.reconstruct(TINY)


def test_load_errors(fitted: CompositionAutoencoder, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        CompositionAutoencoder.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"model\.json"):
        CompositionAutoencoder.load(tmp_path / "empty")
    fitted.save(tmp_path / "partial")
    (tmp_path / "partial" / "weights.pt").unlink()
    with pytest.raises(ModelError, match=r"weights\.pt"):
        CompositionAutoencoder.load(tmp_path / "partial")
    fitted.save(tmp_path / "other")
    card = json.loads((tmp_path / "other" / MODEL_CARD_FILE).read_text())
    card["kind"] = "roost"
    (tmp_path / "other" / MODEL_CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelError, match="not a composition autoencoder"):
        CompositionAutoencoder.load(tmp_path / "other")
    fitted.save(tmp_path / "corrupt")
    (tmp_path / "corrupt" / "weights.pt").write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match=r"weights\.pt: sha256 .* does not match"):
        CompositionAutoencoder.load(tmp_path / "corrupt")
    card = json.loads((tmp_path / "corrupt" / MODEL_CARD_FILE).read_text())
    card["metadata"]["files_sha256"]["weights.pt"] = file_sha256(tmp_path / "corrupt" / "weights.pt")
    (tmp_path / "corrupt" / MODEL_CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelError, match="cannot load weights"):
        CompositionAutoencoder.load(tmp_path / "corrupt")


# -- tables and files ---------------------------------------------------------------------------
def test_encode_and_decode_tables(fitted: CompositionAutoencoder) -> None:
    t = encode_table(fitted, ["LiF", "Li9F", "NaCl"])
    assert list(t.columns[:3]) == ["formula", "reduced_formula", "reason"]
    assert t.shape == (3, 3 + fitted.latent_dim)
    assert t["reason"].tolist()[0] == "" and "above" in t["reason"].tolist()[1]
    d = decode_table(fitted, t.loc[[0, 2], [f"z{i}" for i in range(fitted.latent_dim)]].to_numpy())
    assert d.columns.tolist() == [
        "formula",
        "valid",
        "smact_valid",
        "novel",
        "n_elements",
        "n_atoms",
        "reason",
    ]
    assert d["formula"].tolist() == fitted.reconstruct(["LiF", "NaCl"])


def test_read_latent_file(tmp_path: Path) -> None:
    z = np.arange(24, dtype=np.float32).reshape(3, 8)
    np.save(tmp_path / "z.npy", z)
    np.testing.assert_array_equal(read_latent_file(tmp_path / "z.npy", 8), z)
    import pandas as pd

    pd.DataFrame(z, columns=[f"z{i}" for i in range(8)]).assign(formula="x").to_csv(
        tmp_path / "z.csv", index=False
    )
    np.testing.assert_array_equal(read_latent_file(tmp_path / "z.csv", 8), z)
    with pytest.raises(InputError, match="needs 16"):
        read_latent_file(tmp_path / "z.csv", 16)
    (tmp_path / "bad.csv").write_text("z0,z1\n1,2\nx,3\n")
    with pytest.raises(InputError, match="row 2"):
        read_latent_file(tmp_path / "bad.csv", 2)
    with pytest.raises(InputError, match="not found"):
        read_latent_file(tmp_path / "missing.npy", 8)


# -- measures -----------------------------------------------------------------------------------
def test_smact_validity_pinned() -> None:
    # charge-neutral ionic compounds pass; wrong stoichiometries and an alloy do not
    # (SMACT's fast path accepts any single element)
    assert smact_valid(["NaCl", "MgO", "Al2O3", "SrYF5", "Fe"]).tolist() == [True] * 5
    assert smact_valid(["NaCl2", "MgCl", "LiF2", "CuZn", None]).tolist() == [False] * 5
    # more elements than max_elements: not checked, counted invalid
    assert smact_valid(["NaCl"], SmactSettings(max_elements=1)).tolist() == [False]


def test_decode_stats_hand_made() -> None:
    enc = CompositionAutoencoder(elements=ELEMENTS, n_levels=LEVELS).formula_encoder
    decoded = ["LiF", "LiF", "NaCl2", None, "KCl"]
    s = decode_stats(
        decoded, source="x", encoder=enc, training={"LiF"}, targets=["LiF", "NaF", "NaCl2", "KF", "KCl"]
    )
    assert s.n == 5
    assert s.valid == pytest.approx(4 / 5)
    assert s.smact_valid == pytest.approx(3 / 5)  # LiF, LiF, KCl
    assert s.smact_valid_of_valid == pytest.approx(3 / 4)
    assert s.novel == pytest.approx(2 / 4)  # NaCl2, KCl
    assert s.unique == pytest.approx(3 / 4)
    assert s.exact == pytest.approx(3 / 5)
    assert s.mean_elements == pytest.approx(2.0)
    assert s.smact_compound == pytest.approx(3 / 5)
    single = decode_stats(["Na", "NaCl"], source="x", encoder=enc, training=set())
    assert single.smact_valid == 1.0 and single.smact_compound == 0.5  # SMACT accepts any element


def test_evaluate_autoencoder(fitted: CompositionAutoencoder) -> None:
    ev = evaluate_autoencoder(fitted, ["NaCl", "LiF", "KBr"][:2], n_samples=100, seed=0)
    d = ev.to_dict()
    assert d["heldout"]["n"] == 2 and d["uniform"]["n"] == 100 and d["gaussian"]["n"] == 100
    assert d["heldout_smact_baseline"] == 1.0
    for key in ("valid", "smact_valid", "novel", "unique"):
        assert 0.0 <= d["uniform"][key] <= 1.0


def test_latent_map_png(fitted: CompositionAutoencoder, tmp_path: Path) -> None:
    gaps = np.linspace(0, 8, len(TINY))
    res = latent_map(fitted, [*TINY, "Xx"], [*gaps, 1.0], tmp_path / "map.png", tsne=20, seed=0)
    assert res.n_points == len(TINY)
    assert res.pca.shape == (len(TINY), 2) and res.tsne.shape == (20, 2)
    assert (tmp_path / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- the training command -------------------------------------------------------------------------
def test_train_autoencoder_writes_a_complete_model(tmp_path: Path) -> None:
    out = tmp_path / "model"
    res = train_autoencoder(
        out,
        arch="softmax",
        epochs=3,
        seed=1,
        holdout=0.25,
        formulas=[*TINY, "Fe2O3"],  # Fe is outside the vocabulary: dropped with a warning
        elements=ELEMENTS,
        n_levels=LEVELS,
        n_samples=50,
        command="test",
        latent_dim=8,
        channels=(8, 16),
        hidden=32,
        precision="float16",
    )
    assert res.n_train + res.n_heldout == len(TINY)
    assert res.n_heldout == 8
    card = json.loads((out / MODEL_CARD_FILE).read_text())
    meta = card["metadata"]
    assert meta["seed"] == 1 and meta["command"] == "test" and meta["precision"] == "float16"
    assert set(meta["metrics"]) >= {"train_seconds", "heldout", "uniform", "gaussian"}
    m = CompositionAutoencoder.load(out)
    assert not set(m.heldout_formulas()) & m.training_formulas
    readme = (out / "README.md").read_text()
    assert "# Composition autoencoder (softmax)" in readme and "| held-out | 8 |" in readme
    with pytest.raises(InputError, match="exists"):
        train_autoencoder(out, formulas=TINY, elements=ELEMENTS, n_levels=LEVELS, epochs=1)


# -- the shipped model -----------------------------------------------------------------------------
def test_shipped_default_model() -> None:
    ae = CompositionAutoencoder.load("default")
    assert ae.latent_dim == 128 and ae.latent_bounds.shape == (2, 128)
    known = ["LiF", "NaCl", "SrYF5", "MgAl2O4", "GaN", "BaTiO3", "Si"]
    assert ae.reconstruct(known) == known
    assert ae.metadata_["metrics"]["heldout"]["exact"] > 0.98


@pytest.mark.data
@pytest.mark.slow
def test_mp_training_formulas(real_data_env: Path) -> None:
    from gapforge.models.autoencoder import mp_training_formulas

    d = mp_training_formulas()
    assert len(d.formulas) == 62415
    assert d.n_candidates == 89407
    assert "LiF" in d.formulas and len(set(d.formulas)) == len(d.formulas)

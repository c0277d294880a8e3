"""``gapforge train autoencoder`` and ``gapforge latent ...`` on a tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from gapforge.cli import app
from gapforge.errors import InputError, ModelError
from gapforge.models.autoencoder import CompositionAutoencoder, train_autoencoder

FORMULAS = [
    "LiF", "NaCl", "KCl", "MgO", "Li2O", "Na2O", "K2O", "MgF2", "MgCl2", "LiCl",
    "NaF", "KF", "CaO", "CaF2", "SrO", "BaO", "ZnO", "GaN", "AlN", "Al2O3",
    "SiO2", "TiO2", "SrTiO3", "BaTiO3", "MgAl2O4", "LiMgCl3", "KMgF3", "NaMgF3",
]  # fmt: skip
runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ae") / "model"
    train_autoencoder(
        out,
        formulas=FORMULAS,
        epochs=150,
        holdout=0.0,
        n_samples=50,
        latent_dim=8,
        hidden=64,
        channels=(8, 16),
        batch_size=32,
        learning_rate=3e-3,
        lr_schedule="constant",  # the toy needs the full rate to memorise its 40 formulas
        kl_warmup=0,
        threads=1,
    )
    return out


def _table(path: Path, formulas: list[str]) -> Path:
    pd.DataFrame({"composition": formulas}).to_csv(path, index=False)
    return path


def test_train_command(tmp_path: Path) -> None:
    src = _table(tmp_path / "f.csv", FORMULAS)
    args = ["train", "autoencoder", "--out", str(tmp_path / "m"), "--input", str(src), "--epochs", "2"]
    args += ["--latent-dim", "8", "--holdout", "0.25", "--samples", "20", "--seed", "3", "--arch", "paper"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "held-out exact reconstruction" in res.output
    card = json.loads((tmp_path / "m" / "model.json").read_text())
    assert card["params"]["arch"] == "paper" and card["metadata"]["seed"] == 3
    assert card["metadata"]["n_heldout"] == 7
    again = runner.invoke(app, args)
    assert isinstance(again.exception, InputError) and "--overwrite" in str(again.exception)
    bad = runner.invoke(app, [*args[:-2], "--arch", "vae"])
    assert bad.exit_code != 0 and "unknown architecture" in bad.output


def test_encode_arguments_and_files(model_dir: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["latent", "encode", "--model", str(model_dir), "LiF", "Al2O3"])
    assert res.exit_code == 0, res.output
    assert "LiF" in res.output and "Al2O3" in res.output
    src = _table(tmp_path / "in.csv", ["LiF", "Li9F", "Xx", "MgO"])
    out = tmp_path / "z.csv"
    res = runner.invoke(
        app,
        [
            "latent",
            "encode",
            "--model",
            str(model_dir),
            "--input",
            str(src),
            "--output",
            str(out),
            "--skip-bad",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "2 formula(s) could not be encoded" in res.output
    t = pd.read_csv(out, keep_default_na=False, na_values=[""])
    assert t.shape == (4, 3 + 8)
    assert t["reason"].iloc[1].startswith("count 9 of Li above 8")
    assert t["z0"].isna().tolist() == [False, True, True, False]
    ae = CompositionAutoencoder.load(model_dir)
    np.testing.assert_allclose(
        t.loc[[0, 3], [f"z{i}" for i in range(8)]].to_numpy(), ae.encode(["LiF", "MgO"]), rtol=1e-5
    )
    strict = runner.invoke(app, ["latent", "encode", "--model", str(model_dir), "--input", str(src)])
    assert isinstance(strict.exception, InputError)
    assert f"{src}, row 2: count 9 of Li above 8" in str(strict.exception)
    both = runner.invoke(app, ["latent", "encode", "--model", str(model_dir), "LiF", "--input", str(src)])
    assert both.exit_code != 0
    one_pass = tmp_path / "z1.npy"
    res = runner.invoke(
        app,
        [
            "latent",
            "encode",
            "--model",
            str(model_dir),
            *FORMULAS,
            "--refine-steps",
            "0",
            "--output",
            str(one_pass),
        ],
    )
    assert res.exit_code == 0, res.output
    ae.refine_steps = 0
    np.testing.assert_allclose(np.load(one_pass), ae.encode(FORMULAS), rtol=1e-5)
    neg = runner.invoke(app, ["latent", "encode", "--model", str(model_dir), "LiF", "--refine-steps", "-1"])
    assert neg.exit_code != 0


def test_encode_then_decode_round_trip(model_dir: Path, tmp_path: Path) -> None:
    src = _table(tmp_path / "in.csv", FORMULAS[:10])
    z = tmp_path / "z.npy"
    res = runner.invoke(
        app, ["latent", "encode", "--model", str(model_dir), "--input", str(src), "--output", str(z)]
    )
    assert res.exit_code == 0, res.output
    assert np.load(z).shape == (10, 8)
    out = tmp_path / "dec.csv"
    res = runner.invoke(
        app, ["latent", "decode", "--model", str(model_dir), "--input", str(z), "--output", str(out)]
    )
    assert res.exit_code == 0, res.output
    dec = pd.read_csv(out, keep_default_na=False, na_values=[])
    ae = CompositionAutoencoder.load(model_dir)
    assert dec["formula"].tolist() == [f or "" for f in ae.reconstruct(FORMULAS[:10])]
    assert (dec["formula"] == pd.Series(FORMULAS[:10])).mean() >= 0.6  # a 150-epoch toy model
    # a csv of z columns decodes the same
    zcsv = tmp_path / "z.csv"
    pd.DataFrame(np.load(z), columns=[f"z{i}" for i in range(8)]).to_csv(zcsv, index=False)
    res = runner.invoke(app, ["latent", "decode", "--model", str(model_dir), "--input", str(zcsv)])
    assert res.exit_code == 0 and dec["formula"].iloc[0] in res.output


def test_decode_bad_input(model_dir: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "wrong.npy", np.zeros((3, 5)))
    res = runner.invoke(
        app, ["latent", "decode", "--model", str(model_dir), "--input", str(tmp_path / "wrong.npy")]
    )
    assert isinstance(res.exception, InputError) and "shape (N, 8)" in str(res.exception)
    z = np.zeros((3, 8))
    z[1, 2] = np.nan
    np.save(tmp_path / "nan.npy", z)
    res = runner.invoke(
        app, ["latent", "decode", "--model", str(model_dir), "--input", str(tmp_path / "nan.npy")]
    )
    assert isinstance(res.exception, InputError) and "row 2" in str(res.exception)
    out = tmp_path / "exists.csv"
    out.write_text("keep me\n")
    np.save(tmp_path / "ok.npy", np.zeros((2, 8)))
    res = runner.invoke(
        app,
        [
            "latent",
            "decode",
            "--model",
            str(model_dir),
            "--input",
            str(tmp_path / "ok.npy"),
            "--output",
            str(out),
        ],
    )
    assert isinstance(res.exception, InputError)
    assert out.read_text() == "keep me\n"


def test_sample_and_info(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    res = runner.invoke(
        app, ["latent", "sample", "--model", str(model_dir), "--n", "40", "--output", str(out)]
    )
    assert res.exit_code == 0, res.output
    t = pd.read_csv(out, keep_default_na=False, na_values=[])
    assert len(t) == 40 and {"formula", "valid", "smact_valid", "novel"} <= set(t.columns)
    res = runner.invoke(app, ["latent", "info", "--model", str(model_dir)])
    assert res.exit_code == 0 and '"arch": "softmax"' in res.output


def test_map(model_dir: Path, tmp_path: Path, files: Path) -> None:
    out = tmp_path / "map.png"
    res = runner.invoke(
        app,
        [
            "latent",
            "map",
            "--model",
            str(model_dir),
            "--dataset",
            str(files / "gaps_small.csv"),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:4] == b"\x89PNG"
    res = runner.invoke(app, ["latent", "map", "--model", str(model_dir), "--out", str(tmp_path / "m.txt")])
    assert isinstance(res.exception, InputError)


def test_missing_model_is_one_line_error(tmp_path: Path) -> None:
    np.save(tmp_path / "z.npy", np.zeros((1, 128)))
    proc = subprocess.run(
        [sys.executable, "-m", "gapforge", "latent", "decode", "--model", str(tmp_path / "none"), "--input",
         str(tmp_path / "z.npy")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "model directory not found" in lines[0]
    res = runner.invoke(app, ["latent", "encode", "--model", str(tmp_path), "LiF"])
    assert isinstance(res.exception, ModelError)

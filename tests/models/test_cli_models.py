from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from gapforge.cli import app
from gapforge.errors import InputError, ModelError

SMALL = Path(__file__).parents[1] / "files" / "gaps_small.csv"
runner = CliRunner()


@pytest.fixture(scope="module")
def forest_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "forest"
    res = runner.invoke(
        app,
        ["train", "forest", "--data", str(SMALL), "--out", str(out), "--seed", "1", "--n-estimators", "20",
         "--split", "0.7,0.15,0.15"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    return out


def test_train_forest_records_the_run(forest_dir: Path) -> None:
    card = json.loads((forest_dir / "model.json").read_text())
    meta = card["metadata"]
    assert card["kind"] == "forest"
    assert meta["seed"] == 1 and meta["split_sizes"] == {"train": 35, "val": 8, "test": 7}
    assert set(meta["metrics"]) == {"validation", "test"}
    assert meta["holdout"] == []
    assert len(meta["data_fingerprint"]) == 16
    assert {"r2", "mae_eV", "rmse_eV"} <= set(meta["metrics"]["test"])


def test_train_refuses_to_overwrite(forest_dir: Path) -> None:
    res = runner.invoke(app, ["train", "forest", "--data", str(SMALL), "--out", str(forest_dir)])
    assert isinstance(res.exception, InputError)
    assert "--overwrite" in str(res.exception)
    assert (forest_dir / "forest.skops").is_file()  # untouched


def test_train_rejects_bad_split(tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["train", "forest", "--data", str(SMALL), "--out", str(tmp_path / "f"), "--split", "0.5,0.5"]
    )
    assert res.exit_code != 0
    assert not (tmp_path / "f").exists()


def test_predict_formulas_prints_a_table(forest_dir: Path) -> None:
    bad = runner.invoke(app, ["predict", "--model", str(forest_dir), "LiF", "GaAs", "Xx2O"])
    assert isinstance(bad.exception, InputError) and "argument 3: unknown element" in str(bad.exception)
    res = runner.invoke(app, ["predict", "--model", str(forest_dir), "LiF", "GaAs", "Xx2O", "--skip-bad"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert lines[0].split() == [
        "formula", "band_gap_mean", "(eV)", "band_gap_std", "(eV)", "p_metal", "fidelity", "reason"
    ]  # fmt: skip
    assert [ln.split()[0] for ln in lines[1:]] == ["LiF", "GaAs", "Xx2O"]
    assert float(lines[1].split()[1]) > float(lines[2].split()[1])
    assert "nan" in lines[3] and "Xx" in lines[3]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_predict_file(forest_dir: Path, tmp_path: Path, suffix: str) -> None:
    src = pd.DataFrame({"pretty_formula": ["LiF", "NaN", "Xx", "SrTiO3"], "note": ["a", "b", "c", "d"]})
    inp = tmp_path / f"in{suffix}"
    if suffix == ".csv":
        src.to_csv(inp, index=False)
    else:
        src.to_parquet(inp, index=False)
    out = tmp_path / f"out{suffix}"
    cmd = ["predict", "--model", str(forest_dir), "--input", str(inp), "--output", str(out)]
    bad = runner.invoke(app, cmd)
    assert isinstance(bad.exception, InputError) and f"{inp}, row 3: unknown element" in str(bad.exception)
    assert not out.exists()
    res = runner.invoke(app, [*cmd, "--skip-bad"])
    assert res.exit_code == 0, res.output
    got = (
        pd.read_csv(out, keep_default_na=False, na_values=[""]) if suffix == ".csv" else pd.read_parquet(out)
    )
    assert list(got.columns) == ["formula", "band_gap_mean", "band_gap_std", "p_metal", "fidelity", "reason"]
    assert got["fidelity"].eq("pbe").all() and got["p_metal"].isna().all()  # a forest has no metal gate
    assert got["formula"].tolist() == ["LiF", "NaN", "Xx", "SrTiO3"]  # sodium nitride stays a formula
    assert got["band_gap_mean"].isna().tolist() == [False, False, True, False]
    assert "1 of 4 formulas could not be predicted" in res.output


def test_predict_file_without_formula_column(forest_dir: Path, tmp_path: Path) -> None:
    inp = tmp_path / "in.csv"
    inp.write_text("name,x\nfoo,1\n")
    res = runner.invoke(
        app, ["predict", "--model", str(forest_dir), "--input", str(inp), "--output", str(tmp_path / "o.csv")]
    )
    assert isinstance(res.exception, InputError)
    assert "formula" in str(res.exception)
    assert not (tmp_path / "o.csv").exists()


def test_evaluate_prints_metrics_and_writes_plot(forest_dir: Path, tmp_path: Path) -> None:
    png = tmp_path / "parity.png"
    res = runner.invoke(
        app, ["evaluate", "--model", str(forest_dir), "--data", str(SMALL), "--out", str(png)]
    )
    assert res.exit_code == 0, res.output
    for key in ("R2", "MAE", "RMSE"):
        assert key in res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_model_dir_raises(tmp_path: Path) -> None:
    res = runner.invoke(app, ["predict", "--model", str(tmp_path / "nope"), "LiF"])
    assert isinstance(res.exception, ModelError)


def test_console_script_reports_one_line_and_exit_2(tmp_path: Path) -> None:
    exe = shutil.which("gapforge")
    cmd = [exe] if exe else [sys.executable, "-c", "from gapforge.cli import main; main()"]
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "model.json").write_text(
        json.dumps({"kind": "forest", "params": {}, "metadata": {}})
    )
    proc = subprocess.run(
        [*cmd, "predict", "--model", str(tmp_path / "partial"), "LiF"],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=False,
    )
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "format" in err[0]


def test_train_oracle_rejects_unknown_widths(tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["train", "oracle", "--data", str(SMALL), "--out", str(tmp_path / "o"), "--widths", "huge"]
    )
    assert isinstance(res.exception, InputError) and "compact, aviary" in str(res.exception)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_train_oracle_tiny(tmp_path: Path) -> None:
    pytest.importorskip("aviary")
    out = tmp_path / "oracle"
    res = runner.invoke(
        app,
        ["train", "oracle", "--data", str(SMALL), "--out", str(out), "--epochs", "2", "--members", "2",
         "--batch-size", "16", "--split", "0.7,0.15,0.15", "--widths", "aviary"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    card = json.loads((out / "model.json").read_text())
    assert card["kind"] == "roost" and card["params"]["n_members"] == 2
    assert card["params"]["elem_heads"] == 3 and card["params"]["trunk_hidden"] == [1024, 512]
    assert [m["epochs_run"] for m in card["metadata"]["members"]] == [2, 2]
    res = runner.invoke(app, ["predict", "--model", str(out), "LiF", "Xx", "--skip-bad"])
    assert res.exit_code == 0 and "Xx" in res.output

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def gapforge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gapforge", *args], capture_output=True, text=True, env=env, check=False
    )


def test_help_lists_the_stages() -> None:
    out = gapforge("--help")
    assert out.returncode == 0
    assert "data" in out.stdout


def test_show_small_file(files: Path, tmp_path: Path) -> None:
    out = gapforge("data", "show", str(files / "gaps_small.csv"), "--json", str(tmp_path / "s.json"))
    assert out.returncode == 0, out.stderr
    assert "rows               50" in out.stdout
    assert json.loads((tmp_path / "s.json").read_text())["encodable"] == 50


def test_bad_file_one_line_error_nonzero_exit_and_no_output(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("formula,band_gap\nLiF,8.7\nNaCl,-2\n")
    out = gapforge("data", "show", str(bad), "--json", str(tmp_path / "s.json"))
    assert out.returncode == 2
    assert out.stderr.strip() == f"error: {bad}, row 2: band gap is negative: -2.0"
    assert not (tmp_path / "s.json").exists()
    assert list(tmp_path.iterdir()) == [bad]


@pytest.mark.data
def test_show_mp_bandgap(real_data_env: Path) -> None:
    out = gapforge("data", "show", "mp-bandgap", env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert "distinct formulas  42,669" in out.stdout
    assert "elements           89" in out.stdout
    assert "not encodable      13,548" in out.stdout

"""The model-directory helpers shared by every model's save/load (models/base.py)."""

from __future__ import annotations

import zipfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from gapforge.errors import ModelError
from gapforge.io import file_sha256
from gapforge.models.base import dump_skops, load_skops, verify_weights


def test_dump_skops_records_what_verify_weights_checks(tmp_path: Path) -> None:
    content = {"w": np.arange(6.0).reshape(2, 3)}
    record = dump_skops(content, tmp_path, "w.skops", compression=zipfile.ZIP_DEFLATED, compresslevel=9)
    assert record == {"weights_file": "w.skops", "weights_sha256": file_sha256(tmp_path / "w.skops")}
    assert [p.name for p in tmp_path.iterdir()] == ["w.skops"]  # no temp file left behind
    with zipfile.ZipFile(tmp_path / "w.skops") as zf:  # the caller's compression reached skops
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_DEFLATED}
    verify_weights(tmp_path, record, ["w.skops"])
    back = load_skops(tmp_path / "w.skops", (), label="test model")
    np.testing.assert_array_equal(back["w"], content["w"])
    (tmp_path / "w.skops").write_bytes((tmp_path / "w.skops").read_bytes() + b"\0")
    with pytest.raises(ModelError, match=r"w\.skops: sha256 .* does not match"):
        verify_weights(tmp_path, record, ["w.skops"])


def test_load_skops_refuses_untrusted_and_unreadable(tmp_path: Path) -> None:
    dump_skops({"x": Fraction(1, 3)}, tmp_path, "f.skops")
    with pytest.raises(ModelError, match=r"f\.skops: refusing to load untrusted types fractions\.Fraction"):
        load_skops(tmp_path / "f.skops", (), label="test model")
    trusted = load_skops(tmp_path / "f.skops", ("fractions.Fraction",), label="test model")
    assert trusted == {"x": Fraction(1, 3)}
    (tmp_path / "bad.skops").write_text("not a zip")
    with pytest.raises(ModelError, match=r"bad\.skops: not a readable skops file"):
        load_skops(tmp_path / "bad.skops", (), label="test model")

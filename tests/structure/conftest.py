from __future__ import annotations

from pathlib import Path

import pytest

FILES = Path(__file__).resolve().parents[1] / "files" / "structures"
SHARED_DATA = Path("/work/shared/data")


@pytest.fixture
def files() -> Path:
    return FILES


@pytest.fixture
def tiny_library_path() -> Path:
    return FILES / "tiny_library.csv"


@pytest.fixture
def data_path(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point GAPFORGE_DATA_PATH at the shared data (tests marked ``data``)."""
    if not (SHARED_DATA / "structures").is_dir():
        pytest.skip("shared data not available")
    monkeypatch.setenv("GAPFORGE_DATA_PATH", str(SHARED_DATA))
    return SHARED_DATA

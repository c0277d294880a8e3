from __future__ import annotations

import os
from pathlib import Path

import pytest

FILES = Path(__file__).parent / "files"

# The README's test command gives GAPFORGE_DATA_PATH relative to the repository
# (../shared/data); tests that change directory or start subprocesses elsewhere
# need it absolute.
if os.environ.get("GAPFORGE_DATA_PATH"):
    os.environ["GAPFORGE_DATA_PATH"] = os.pathsep.join(
        str(Path(p).expanduser().resolve()) for p in os.environ["GAPFORGE_DATA_PATH"].split(os.pathsep) if p
    )
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _data_root() -> Path | None:
    for raw in os.environ.get("GAPFORGE_DATA_PATH", "").split(os.pathsep):
        if raw and (Path(raw) / "mp_bandgap" / "Exp1_42k.csv").is_file():
            return Path(raw)
        if raw and (Path(raw) / "Exp1_42k.csv").is_file():
            return Path(raw).parent
    if (SHARED_DATA / "mp_bandgap" / "Exp1_42k.csv").is_file():
        return SHARED_DATA
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data mirror (../shared/data); tests using it are skipped without it."""
    root = _data_root()
    if root is None:
        pytest.skip("the real data (../shared/data) is not available; set GAPFORGE_DATA_PATH")
    return root


@pytest.fixture
def real_data_env(data_root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """GAPFORGE_DATA_PATH pointing at the real data, an empty private cache."""
    monkeypatch.setenv("GAPFORGE_DATA_PATH", str(data_root))
    monkeypatch.setenv("GAPFORGE_CACHE", str(tmp_path / "cache"))
    return data_root


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No data path, an empty private cache: nothing resolves unless the test provides it."""
    monkeypatch.delenv("GAPFORGE_DATA_PATH", raising=False)
    monkeypatch.setenv("GAPFORGE_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture
def files() -> Path:
    return FILES

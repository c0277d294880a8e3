from __future__ import annotations

import gzip
import hashlib
import http.server
import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import pytest

from gapforge.data import registry
from gapforge.data.loaders import load_dataset
from gapforge.errors import ChecksumError, DatasetNotFoundError
from gapforge.io import file_sha256

TABLE = b"id,composition,Eg\n1,LiF,8.72\n2,NaCl,5.0\n3,MgO,4.45\n"
SHA = hashlib.sha256(TABLE).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[bytes, int | None]]] = {}

    def do_GET(self) -> None:
        body, length = self.routes.get(self.path, (b"", None))
        if self.path not in self.routes:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(length if length is not None else len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    _Handler.routes = {
        "/good.csv": (TABLE, None),
        "/altered.csv": (TABLE.replace(b"8.72", b"9.99"), None),
        "/truncated.csv": (TABLE[:20], len(TABLE)),
    }
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def entry(monkeypatch: pytest.MonkeyPatch, server: str) -> registry.DatasetEntry:
    e = registry.DatasetEntry("tiny", "tiny.csv", "mp_bandgap", f"{server}/good.csv", SHA, "bandgap", "test")
    monkeypatch.setitem(registry.REGISTRY, "tiny", e)
    return e


def test_explicit_path_wins(isolated_env: Path, entry: registry.DatasetEntry, tmp_path: Path) -> None:
    local = tmp_path / "mine.csv"
    local.write_bytes(TABLE)
    assert registry.resolve("tiny", path=local) == local
    assert registry.resolve(str(local)) == local


def test_data_path_beats_cache_and_download(
    isolated_env: Path, entry: registry.DatasetEntry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "mp_bandgap").mkdir(parents=True)
    (mirror / "mp_bandgap" / "tiny.csv").write_bytes(TABLE)
    monkeypatch.setenv("GAPFORGE_DATA_PATH", f"{tmp_path / 'missing'}:{mirror}")
    assert registry.resolve("tiny") == mirror / "mp_bandgap" / "tiny.csv"
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "tiny.csv").write_bytes(TABLE)
    monkeypatch.setenv("GAPFORGE_DATA_PATH", str(flat))
    assert registry.resolve("tiny") == flat / "tiny.csv"


def test_download_into_cache_then_cache_is_used(isolated_env: Path, entry: registry.DatasetEntry) -> None:
    path = registry.resolve("tiny")
    assert path == registry.cache_dir() / "tiny.csv"
    assert path.read_bytes() == TABLE
    # the server is no longer needed: the cached copy is used
    registry.REGISTRY["tiny"] = replace(entry, url="http://127.0.0.1:9/nothing.csv")
    assert registry.resolve("tiny") == path
    df = load_dataset("tiny")
    assert list(df["formula"]) == ["LiF", "NaCl", "MgO"]


def test_gzipped_mirror_or_plain_download(
    isolated_env: Path, entry: registry.DatasetEntry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # like mp-e-form: the mirror holds tiny.csv.gz, the pinned address serves the plain CSV
    registry.REGISTRY["tiny"] = replace(entry, filename="tiny.csv.gz")
    path = registry.resolve("tiny")
    assert path == registry.cache_dir() / "tiny.csv"
    assert path.read_bytes() == TABLE
    mirror = tmp_path / "mirror" / "mp_bandgap"
    mirror.mkdir(parents=True)
    (mirror / "tiny.csv.gz").write_bytes(gzip.compress(TABLE))
    monkeypatch.setenv("GAPFORGE_DATA_PATH", str(mirror.parent))
    assert registry.resolve("tiny") == mirror / "tiny.csv.gz"
    assert list(load_dataset("tiny")["formula"]) == ["LiF", "NaCl", "MgO"]


@pytest.mark.parametrize("route", ["/altered.csv", "/truncated.csv"])
def test_bad_download_is_rejected_and_nothing_kept(
    isolated_env: Path, entry: registry.DatasetEntry, server: str, route: str
) -> None:
    registry.REGISTRY["tiny"] = replace(entry, url=f"{server}{route}")
    with pytest.raises((ChecksumError, DatasetNotFoundError), match=r"sha256|truncated|download failed"):
        registry.resolve("tiny")
    assert not (registry.cache_dir() / "tiny.csv").exists()
    assert not list(registry.cache_dir().glob(".tiny.csv*")) if registry.cache_dir().exists() else True


def test_corrupt_cache_is_reported(isolated_env: Path, entry: registry.DatasetEntry) -> None:
    registry.cache_dir().mkdir(parents=True)
    (registry.cache_dir() / "tiny.csv").write_bytes(b"id,composition,Eg\n1,LiF,1\n")
    with pytest.raises(ChecksumError, match="delete it"):
        registry.resolve("tiny")


def test_offline_failure_says_which_file_to_put_where(
    isolated_env: Path, entry: registry.DatasetEntry
) -> None:
    registry.REGISTRY["tiny"] = replace(entry, url="http://127.0.0.1:9/unreachable.csv")
    with pytest.raises(DatasetNotFoundError) as info:
        registry.resolve("tiny", timeout=2)
    msg = str(info.value)
    assert "put tiny.csv in a directory listed in GAPFORGE_DATA_PATH" in msg
    assert "\n" not in msg
    with pytest.raises(DatasetNotFoundError, match=r"put tiny\.csv"):
        registry.resolve("tiny", download=False)


def test_unknown_name() -> None:
    with pytest.raises(DatasetNotFoundError, match="neither a file nor a known dataset"):
        registry.resolve("no-such-set")


def test_every_entry_is_pinned() -> None:
    for e in registry.REGISTRY.values():
        assert e.url and re.search(r"/[0-9a-f]{40}/", e.url), e.name  # a commit-pinned address
        assert e.sha256 and len(e.sha256) == 64


@pytest.mark.data
def test_mirror_matches_pinned_checksums(real_data_env: Path) -> None:
    for e in registry.REGISTRY.values():
        path = registry.resolve(e.name, download=False)
        if path.suffix == ".gz" and not str(e.url).endswith(".gz"):  # the mirror gzipped what the url serves
            digest = hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()
        else:
            digest = file_sha256(path)
        assert digest == e.sha256, e.name

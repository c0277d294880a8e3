"""Named datasets and where their files come from.

A dataset name resolves to a local file in this order:

1. an explicit path (``resolve("mp-bandgap", path=...)`` or a path given as the name);
2. a directory listed in ``GAPFORGE_DATA_PATH`` (``os.pathsep``-separated; each
   directory is searched as ``DIR/FILE`` and ``DIR/SUBDIR/FILE``, so both
   ``.../shared/data`` and ``.../shared/data/mp_bandgap`` work);
3. the user cache (``GAPFORGE_CACHE`` or ``~/.cache/gapforge``), checked against
   the pinned sha256;
4. a download from the pinned public address into the cache, checked against
   the sha256 (a truncated or altered download is deleted and reported).

Offline, a missing dataset fails with one sentence saying which file to put where.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from gapforge.errors import ChecksumError, DatasetNotFoundError
from gapforge.io import atomic_path, file_sha256

log = logging.getLogger(__name__)

_AGD_COMMIT = "135e530ec5f5d613ee6342aca15a5cf70350077d"
_AGD_RAW = (
    f"https://raw.githubusercontent.com/usccolumbia/Acitve-Generative-Design/{_AGD_COMMIT}/AGD_inverse_design"
)
_ROOST_DATA = f"{_AGD_RAW}/roost/roost/examples/prepared_training_data"
_CRABNET_COMMIT = "457b4d4835737ecbe4dd33e53174bd818bd82143"
_CRABNET_MATBENCH = f"https://raw.githubusercontent.com/anthony-wang/CrabNet/{_CRABNET_COMMIT}/data/matbench"


@dataclass(frozen=True)
class DatasetEntry:
    """One named dataset.

    Attributes:
        name: the registry key (``mp-bandgap``).
        filename: the file's name on disk.
        subdir: the folder of the data mirror that holds it.
        url: pinned public address (a commit-pinned raw file), or None.
        sha256: checksum of the file's bytes.
        kind: ``"bandgap"`` (formula + gap), ``"formulas"`` (formulas only) or
            ``"formation_energy"`` (formula + eV/atom; read by ``gapforge.structure.hull``).
        description: one line for ``gapforge data list``.
    """

    name: str
    filename: str
    subdir: str
    url: str | None
    sha256: str | None
    kind: str
    description: str


def _e(name: str, filename: str, url: str | None, sha: str, kind: str, desc: str) -> DatasetEntry:
    return DatasetEntry(name, filename, "mp_bandgap", url, sha, kind, desc)


REGISTRY: dict[str, DatasetEntry] = {
    e.name: e
    for e in (
        _e("mp-bandgap", "Exp1_42k.csv", f"{_ROOST_DATA}/Exp1_42k.csv",
           "ee49aadffbcf6cb1dd253712dde2016a1f5eeb6624b2ec866ef0e43e70f1c8d9", "bandgap",
           "42,669 Materials Project compositions with PBE band gaps (the paper's Exp1 / oracle data)"),
        _e("test-500", "bd_test_only.csv", f"{_ROOST_DATA}/bd_test_only.csv",
           "b21bd61af56a7c46adbcd7d0325aacc1b1d1813dbeebe548a8dca7d7d87b9494", "bandgap",
           "the paper's fixed 500-formula test set"),
        _e("exp2-bs", "Exp2_BS_1k.csv", f"{_ROOST_DATA}/Exp2_BS_1k.csv",
           "c9b256958b5540fa7d180a857ea216208a0e8c251bfeb331655501c96aa6f0bb", "bandgap",
           "Exp2 baseline training set (1,000)"),
        _e("exp2-al", "Exp2_AL_1741.csv", f"{_ROOST_DATA}/Exp2_AL_1741.csv",
           "13e23aa5cf98028e36f909bee558b12d2da70543ff0de50abe0ef9aed65bbe59", "bandgap",
           "Exp2 baseline + 741 active-learning labels (1,741)"),
        _e("exp3-bs", "Exp3_BS_0.3k.csv", f"{_ROOST_DATA}/Exp3_BS_0.3k.csv",
           "ded768573ee531a11b23f29ee6e2a7492b22f828b73d0127c142e6908e927bb2", "bandgap",
           "Exp3 baseline training set (300)"),
        _e("exp3-al", "Exp3_AL_1153.csv", f"{_ROOST_DATA}/Exp3_AL_1153.csv",
           "f442cff9d7ebe212358610a61400aac77e62b25feb615015def1d96565393d4c", "bandgap",
           "Exp3 baseline + 853 active-learning labels (1,153)"),
        _e("init-300", "bd_AML_whole_init_300.csv", f"{_AGD_RAW}/AML_Roost/bd_AML_whole_init_300.csv",
           "4b7006791453afd6acc0968c0118033a46c2c307cd990e8f5b539ca0ec3b82aa", "bandgap",
           "initial labelled sample of the paper's AL runs (300)"),
        _e("init-1000", "bd_AML_whole_init_1000.csv", f"{_AGD_RAW}/AML_Roost/bd_AML_whole_init_1000.csv",
           "854905075a6c9fe648cbfbbe44716537d25780b6c429d981dc48e6534c1b19c8", "bandgap",
           "initial labelled sample of the paper's AL runs (1,000)"),
        _e("ae-29k", "bd_AML_whole_for_autoencoder.csv",
           f"{_AGD_RAW}/AML_Roost/Utils/bd_AML_whole_for_autoencoder.csv",
           "56327deefa3efb842fb26e7e1041beeb30e476b78991b9904ccff84a82cf698e", "bandgap",
           "the 29,089 mp-bandgap formulas with counts <= 8 used by the paper's AL runs"),
        _e("mp-formulas", "mpid_formula_sp.csv", f"{_AGD_RAW}/AML_Roost/data/mpid_formula_sp.csv",
           "1cc1e749681525b644945907d1163650d45c2b8aae721b79f3dd9ba8b992ee37", "formulas",
           "123,805 Materials Project ids with formulas (89,374 distinct) and space groups"),
        # the mirror holds it gzipped (sha256 5e5a424c…); pinned here: the CSV's sha256 (what the url serves)
        DatasetEntry("mp-e-form", "mp_e_form.csv.gz", "matbench", f"{_CRABNET_MATBENCH}/mp_e_form.csv",
                     "90e895635c96447c5be4e9070d26f26e1b4d17925102a6597ae3c4d79c32555b", "formation_energy",
                     "132,752 Materials Project formation energies per atom (95,118 formulas, matbench)"),
    )
}  # fmt: skip


def data_path_dirs() -> list[Path]:
    """Directories listed in ``GAPFORGE_DATA_PATH``, in order (missing ones skipped)."""
    raw = os.environ.get("GAPFORGE_DATA_PATH", "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]


def cache_dir() -> Path:
    """The user cache: ``GAPFORGE_CACHE`` or ``~/.cache/gapforge``."""
    raw = os.environ.get("GAPFORGE_CACHE")
    if raw:
        return Path(raw).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "gapforge"


def find_data_file(filename: str, subdir: str | None = None) -> Path:
    """Find ``filename`` in the ``GAPFORGE_DATA_PATH`` directories.

    Each directory is searched as ``DIR/filename`` and ``DIR/subdir/filename``.

    Raises:
        DatasetNotFoundError: the file is in none of them.
    """
    dirs = data_path_dirs()
    for d in dirs:
        for candidate in (d / filename, d / subdir / filename if subdir else None):
            if candidate is not None and candidate.is_file():
                return candidate
    where = os.pathsep.join(map(str, dirs)) or "(GAPFORGE_DATA_PATH is not set)"
    raise DatasetNotFoundError(
        f"{filename} not found: put it in a directory listed in GAPFORGE_DATA_PATH (now {where})"
    )


def resolve(
    name: str, *, path: str | Path | None = None, download: bool = True, timeout: float = 60.0
) -> Path:
    """Return the local file of a named dataset (see the module docstring for the order).

    Args:
        name: a registry name (``mp-bandgap``) or the path of a local file.
        path: an explicit file to use for ``name``.
        download: allow step 4 (download into the cache).
        timeout: seconds to wait for the download server.

    Raises:
        DatasetNotFoundError: not found locally and not downloadable.
        ChecksumError: a cached or downloaded file does not match its sha256.
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise DatasetNotFoundError(f"{p}: file not found")
        return p
    entry = REGISTRY.get(name)
    if entry is None:
        p = Path(name).expanduser()
        if p.is_file():
            return p
        known = ", ".join(REGISTRY)
        raise DatasetNotFoundError(f"{name}: neither a file nor a known dataset ({known})")
    try:
        return find_data_file(entry.filename, entry.subdir)
    except DatasetNotFoundError:
        pass
    cached = cache_dir() / _cache_name(entry)
    if cached.is_file():
        if entry.sha256 and file_sha256(cached) != entry.sha256:
            raise ChecksumError(
                f"{cached}: sha256 does not match the pinned value for {name}; delete it to download again"
            )
        return cached
    hint = (
        f"dataset {name} not found: put {entry.filename} in a directory listed in GAPFORGE_DATA_PATH "
        f"or {_cache_name(entry)} in {cache_dir()}"
    )
    if not download or entry.url is None:
        raise DatasetNotFoundError(hint)
    return _download(entry, cached, hint=hint, timeout=timeout)


def _cache_name(entry: DatasetEntry) -> str:
    """The cache keeps what the pinned address serves (a mirror may hold it gzipped as ``filename``)."""
    if entry.url and entry.filename.endswith(".gz") and not entry.url.endswith(".gz"):
        return entry.filename.removesuffix(".gz")
    return entry.filename


def _download(entry: DatasetEntry, dest: Path, *, hint: str, timeout: float) -> Path:
    log.info("downloading %s from %s", entry.name, entry.url)
    url = os.environ.get(f"GAPFORGE_URL_{entry.name.upper().replace('-', '_')}", entry.url)
    try:
        with atomic_path(dest) as tmp:
            h = hashlib.sha256()
            with urllib.request.urlopen(url, timeout=timeout) as resp, tmp.open("wb") as out:
                expected = resp.headers.get("Content-Length")
                size = 0
                for block in iter(lambda: resp.read(1 << 20), b""):
                    out.write(block)
                    h.update(block)
                    size += len(block)
            if expected is not None and size != int(expected):
                raise ChecksumError(
                    f"{url}: download truncated ({size} of {expected} bytes); nothing was kept"
                )
            if entry.sha256 and h.hexdigest() != entry.sha256:
                raise ChecksumError(
                    f"{url}: sha256 {h.hexdigest()[:12]}… does not match the pinned {entry.sha256[:12]}…; "
                    "nothing was kept"
                )
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        if isinstance(exc, ChecksumError):
            raise
        reason = getattr(exc, "reason", exc)
        raise DatasetNotFoundError(f"{hint} (download failed: {reason})") from exc
    return dest


# -- the CrabNet copies of matbench / OQMD / AFLOW band gaps (issue 18) ----------------------
# The mirror holds them gzipped (``*.csv.gz``); the pinned sha256 is that of the CSV the
# address serves (each folder's SOURCES.md lists both). Metals are labelled 0 eV.
_CRABNET = f"https://raw.githubusercontent.com/anthony-wang/CrabNet/{_CRABNET_COMMIT}/data"
REGISTRY.update(
    (e.name, e)
    for e in (
        DatasetEntry("mp-gap", "mp_gap.csv.gz", "matbench", f"{_CRABNET}/matbench/mp_gap.csv",
                     "4084e584467e6f81ec8bf12c438eeb2c049ae39e11401bae694ef6a9983b9d9f", "bandgap",
                     "106,113 MP entries with PBE gaps, metals as 0 eV (78,164 formulas; matbench_mp_gap)"),
        DatasetEntry("mp-is-metal", "mp_is_metal.csv.gz", "matbench", f"{_CRABNET}/matbench/mp_is_metal.csv",
                     "080afc38363fd7e0872fb04ae93a73fdecd0329408d007e8811ccd6e96b7e79a", "metal",
                     "the same 106,113 MP entries labelled 1 metal / 0 non-metal (matbench_mp_is_metal)"),
        DatasetEntry("expt-gap", "expt_gap.csv.gz", "matbench", f"{_CRABNET}/matbench/expt_gap.csv",
                     "3de82c37f1db3ab9bbd92366c96633f131913ded5db0969eb36216bdd11cef2f", "bandgap",
                     "4,604 experimental band gaps, metals as 0 eV (Zhuo et al. 2018; matbench_expt_gap)"),
        *(
            DatasetEntry(f"{name}-{part}", f"{stem}_{part}.csv.gz", subdir,
                         f"{_CRABNET}/benchmark_data/{folder}/{part}.csv", sha, "bandgap",
                         f"{what} ({part} part of the CrabNet split; metals as 0 eV)")
            for name, stem, subdir, folder, what, shas in (
                ("oqmd-gap", "oqmd_bandgap", "oqmd", "OQMD_Bandgap", "OQMD PBE band gaps", (
                    "8611a9f1f76ad06d846890d2234e6b37909abd941c156cdc339447bbcce3ada7",
                    "7838750eb3b5b09ec296b0fbf194271f6588b4bcd4653e392aba6df04c645002",
                    "59206d9cf13387a6cbf5a155f5b350043aee2f190663bb9baf97a6ee85e63d55")),
                ("aflow-gap", "aflow_egap", "aflow", "aflow__Egap", "AFLOW PBE band gaps", (
                    "54cfdde0f9dc313acf2ffb22f49c9861d8d0e1fc5ee3938b8810785db65c1c17",
                    "798bd5b2d16cca829be8873a483872910de4c948a1bc55ae89c70efb9be0c545",
                    "d2096c4b87dcc1f13407532f048552544cd389d49486770b9b065dffd5cc92ef")),
            )
            for part, sha in zip(("train", "val", "test"), shas, strict=True)
        ),
    )
)  # fmt: skip

"""PBE band gap and total energy of (relaxed) crystal structures with GPAW.

The DFT stage (``gapforge dft``) checks the best few candidates with real DFT:
each structure is reduced to its standard primitive cell (spglib, 1e-3 Å) so
that GPAW sees its full symmetry; then a plane-wave PBE ground state on a
Γ-centred k-point grid and (by default) a non-self-consistent band structure
along the cell's high-symmetry path, so that a band edge lying between grid
points (silicon's conduction-band minimum) is not missed. The gap is
``CBM - VBM`` over the grid and the path together.

Protocol (:class:`DFTSettings`): PBE, plane waves, Fermi-Dirac smearing of
0.01 eV, spin-unpolarised unless asked, k-points by density (ASE convention,
points per Å⁻¹ including the 2π), max(8, atoms) empty bands, converged up to
CBM + 1 eV.

Each structure is one task on the executor (:mod:`gapforge.executor`); the task
runs GPAW in its own child process (behind an MPI launch command if one is
set), killed when it overruns its time budget, so one hard case cannot stall
the stage. Results are cached on disk by
structure fingerprint + the physical settings: a rerun only computes what is
missing. GPAW is optional; without it the stage raises
:class:`~gapforge.errors.DependencyError` saying how to install it, and nothing
else in gapforge needs it.

Energies are GPAW's total energies, which are relative to GPAW's isolated-atom
PAW references: they compare between GPAW runs with the same setups, not with
VASP or Materials Project energies.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import math
import re
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from gapforge import columns as C
from gapforge.errors import DependencyError, InputError
from gapforge.executor import ExecutorSettings, TaskFailure, choose_executor, run_tasks
from gapforge.io import find_column, read_table, write_json, write_table

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- names

RESULTS_FILE = "dft.csv"
SETTINGS_FILE = "dft_settings.json"
CACHE_DIR = "cache"
LOG_DIR = "gpaw_logs"
#: The structure stage's ranked table, used when ``--input`` is its run directory.
RELAXED_TABLE = "relaxed.csv"
#: Columns of a candidate table that hold a CIF path, in order of preference.
CIF_PATH_ALIASES: tuple[str, ...] = (C.RELAXED_CIF_PATH, C.CIF_PATH)

# Columns of dft.csv; the ones shared with other tables are defined in gapforge.columns.
NAME = "name"
CIF_PATH = C.CIF_PATH
INPUT_ROW = "input_row"  # 1-based data row of the input table, if the input was a table
NSITES = C.NSITES
FINGERPRINT = "structure_fingerprint"
DFT_BAND_GAP = C.DFT_BAND_GAP  # eV, PBE, grid + band path
DFT_BAND_GAP_SCF = "dft_band_gap_scf"  # eV, on the self-consistent k-point grid only
DFT_VBM = "dft_vbm"  # eV
DFT_CBM = "dft_cbm"  # eV
DFT_ENERGY = "dft_energy"  # eV per input cell (energy per atom x nsites), GPAW total energy
DFT_ENERGY_PER_ATOM = "dft_energy_per_atom"  # eV/atom
CONVERGED = C.CONVERGED
STATUS = "status"
MESSAGE = "message"
WALL_TIME_S = C.WALL_TIME_S
CPU_TIME_S = "cpu_time_s"
SCF_ITERATIONS = "scf_iterations"
KPTS = "kpts"  # Monkhorst-Pack grid used, e.g. "6x6x6"
CACHED = "cached"
SETTINGS = "settings"  # JSON of DFTSettings
GPAW_VERSION = "gpaw_version"

RESULT_COLUMNS: tuple[str, ...] = (
    NAME,
    C.FORMULA,
    INPUT_ROW,
    CIF_PATH,
    NSITES,
    DFT_BAND_GAP,
    DFT_BAND_GAP_SCF,
    DFT_VBM,
    DFT_CBM,
    DFT_ENERGY,
    DFT_ENERGY_PER_ATOM,
    CONVERGED,
    STATUS,
    MESSAGE,
    WALL_TIME_S,
    CPU_TIME_S,
    SCF_ITERATIONS,
    KPTS,
    CACHED,
    FINGERPRINT,
    GPAW_VERSION,
    SETTINGS,
)

# Values of the status column.
STATUS_OK = "ok"
STATUS_NOT_CONVERGED = "not_converged"
STATUS_TIMEOUT = "timeout"
STATUS_ERROR = "error"
#: Statuses worth caching: rerunning with the same settings gives the same answer.
_CACHEABLE = frozenset({STATUS_OK, STATUS_NOT_CONVERGED})

INSTALL_HINT = (
    "install it with `apt-get install -y g++ libxc-dev libopenblas-dev` then `CC=g++ pip install gpaw` "
    "(PyPI's gpaw-data comes with it and brings the PAW setups); see the README"
)


# ----------------------------------------------------------------------------- settings / results


@dataclass(frozen=True)
class DFTSettings:
    """How each structure is computed.

    Attributes:
        xc: exchange-correlation functional.
        symprec: the structure is first reduced to spglib's standard primitive
            cell at this tolerance (Å), so that GPAW finds the full symmetry (a
            CIF's rounding noise otherwise hides it and multiplies the k-points);
            ``None`` computes the cell exactly as given.
        ecut: plane-wave cutoff (eV).
        kpt_density: k-point density of the Γ-centred self-consistent grid, in
            points per Å⁻¹ (ASE's convention, 2π included).
        spinpol: spin-polarised calculation (initial moment 1 μB per atom).
        empty_bands: unoccupied bands computed above the occupied ones; ``None``
            takes max(8, number of atoms). Enough of them must lie above
            CBM + ``conv_bands_above_cbm`` at every k-point, else the SCF cannot
            converge (GPAW's default leaves as few as one for Ba or Sr compounds).
        smearing_width: Fermi-Dirac smearing width (eV).
        band_path_points: k-points of the non-self-consistent band structure along
            the high-symmetry path; 0 takes the gap from the grid only.
        conv_bands_above_cbm: unoccupied bands are converged up to CBM + this (eV).
        maxiter: maximum SCF iterations; beyond it the result is "not converged".
        time_budget: wall-clock seconds per structure; the child process is killed
            past it. Not part of the cache key.
    """

    xc: str = "PBE"
    symprec: float | None = 1e-3
    ecut: float = 400.0
    kpt_density: float = 3.0
    spinpol: bool = False
    empty_bands: int | None = None
    smearing_width: float = 0.01
    band_path_points: int = 40
    conv_bands_above_cbm: float = 1.0
    maxiter: int = 200
    time_budget: float = 1800.0

    def __post_init__(self) -> None:
        checks = {
            "symprec": self.symprec is None or self.symprec > 0,
            "ecut": self.ecut > 0,
            "kpt_density": self.kpt_density > 0,
            "empty_bands": self.empty_bands is None or self.empty_bands >= 1,
            "smearing_width": self.smearing_width >= 0,
            "band_path_points": self.band_path_points >= 0 and self.band_path_points != 1,
            "conv_bands_above_cbm": self.conv_bands_above_cbm >= 0,
            "maxiter": self.maxiter >= 1,
            "time_budget": self.time_budget > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise InputError(f"invalid DFT setting {name}", value=getattr(self, name))

    def physics(self) -> dict[str, Any]:
        """The settings that change the answer (everything but the time budget)."""
        out = asdict(self)
        out.pop("time_budget")
        return out

    def to_json(self) -> str:
        """Compact, key-sorted JSON of all settings."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DFTSettings:
        """Rebuild from :func:`dataclasses.asdict` output (unknown keys are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class DFTResult:
    """One structure's DFT outcome (energies in eV).

    ``band_gap`` is NaN unless the calculation finished; ``converged`` is the SCF
    convergence of the ground state. ``energy`` is per computed cell
    (``nsites_computed`` atoms, the primitive cell when ``symprec`` is set);
    ``cpu_time_s`` is the worker's CPU time, less sensitive to a busy machine
    than ``wall_time_s``.
    """

    status: str
    converged: bool
    band_gap: float = math.nan
    band_gap_scf: float = math.nan
    vbm: float = math.nan
    cbm: float = math.nan
    energy: float = math.nan
    energy_per_atom: float = math.nan
    scf_iterations: int | None = None
    kpts: str = ""
    wall_time_s: float = 0.0
    cpu_time_s: float = math.nan
    nsites_computed: int | None = None
    message: str = ""
    gpaw_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (NaN kept as ``None``)."""
        out = asdict(self)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DFTResult:
        """Inverse of :meth:`to_dict`."""
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        for key in ("band_gap", "band_gap_scf", "vbm", "cbm", "energy", "energy_per_atom", "cpu_time_s"):
            if kwargs.get(key) is None:
                kwargs[key] = math.nan
        return cls(**kwargs)


@dataclass(frozen=True)
class StructureInput:
    """One structure to compute: where it came from and the structure itself."""

    name: str
    cif_path: Path
    structure: Structure
    formula: str
    input_row: int | None = None


# ----------------------------------------------------------------------------- GPAW availability


def gpaw_available() -> bool:
    """Whether ``import gpaw`` can work (checked without importing it)."""
    try:
        return importlib.util.find_spec("gpaw") is not None
    except (ImportError, ValueError):  # a broken or blocked install
        return False


def require_gpaw() -> None:
    """Raise :class:`DependencyError` with install instructions if GPAW is absent."""
    if not gpaw_available():
        raise DependencyError(f"the DFT stage needs GPAW, which is not installed: {INSTALL_HINT}")


# ----------------------------------------------------------------------------- fingerprint / cache


def structure_fingerprint(structure: Structure, *, decimals: int = 4) -> str:
    """A short hash of the cell, species and fractional coordinates.

    Invariant under the order of sites and under fractional coordinates
    differing by a lattice vector; identical CIFs give identical fingerprints.
    Two settings of the same crystal (another cell choice) give different ones.
    """
    lattice = np.round(structure.lattice.matrix, decimals) + 0.0
    sites = []
    for site in structure:
        frac = np.round(np.mod(site.frac_coords, 1.0), decimals) % 1.0 + 0.0
        sites.append(f"{site.species_string}:" + ",".join(f"{x:.{decimals}f}" for x in frac))
    text = ";".join(f"{x:.{decimals}f}" for x in lattice.ravel()) + "|" + ";".join(sorted(sites))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cache_key(fingerprint: str, settings: DFTSettings) -> str:
    """Cache key of one structure under one set of physical settings."""
    text = fingerprint + "|" + json.dumps(settings.physics(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _cache_load(cache_dir: Path, key: str) -> DFTResult | None:
    path = cache_dir / f"{key}.json"
    if not path.is_file():
        return None
    try:
        return DFTResult.from_dict(json.loads(path.read_text())["result"])
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable cache entry %s (%s)", path, exc)
        return None


def _cache_store(
    cache_dir: Path,
    key: str,
    *,
    item: StructureInput,
    fingerprint: str,
    settings: DFTSettings,
    result: DFTResult,
) -> None:
    payload = {
        "key": key,
        "fingerprint": fingerprint,
        "formula": item.formula,
        "name": item.name,
        "settings": settings.physics(),
        "result": result.to_dict(),
    }
    write_json(payload, cache_dir / f"{key}.json")


# ----------------------------------------------------------------------------- input


def collect_structures(input_path: str | Path, *, top: int | None = None) -> list[StructureInput]:
    """The structures to compute, in order.

    ``input_path`` is a directory of ``*.cif`` files (sorted by name), a directory
    holding the structure stage's ``relaxed.csv`` (its rows in order), or a table
    (CSV/Parquet) with a ``relaxed_cif_path`` or ``cif_path`` column; relative CIF
    paths are resolved against the table's directory. Table rows without a CIF
    path are skipped. ``top`` keeps the first N structures.

    Raises:
        InputError: missing input, no CIFs, no CIF column, or a CIF that cannot be read.
    """
    path = Path(input_path)
    if top is not None and top < 1:
        raise InputError("--top must be at least 1", value=top)
    if not path.exists():
        raise InputError("input not found", path=path)
    if path.is_dir() and (path / RELAXED_TABLE).is_file():
        return _from_table(path / RELAXED_TABLE, top)
    if path.is_dir():
        cifs = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".cif")
        if not cifs:
            raise InputError(f"no *.cif files and no {RELAXED_TABLE} in the directory", path=path)
        cifs = cifs[:top] if top is not None else cifs
        items = []
        for cif in cifs:
            structure = _read_cif(cif)
            items.append(StructureInput(cif.stem, cif, structure, structure.composition.reduced_formula))
        return items
    if path.suffix.lower() == ".cif":
        structure = _read_cif(path)
        return [StructureInput(path.stem, path, structure, structure.composition.reduced_formula)]
    return _from_table(path, top)


def _from_table(table_path: Path, top: int | None) -> list[StructureInput]:
    table = read_table(table_path)
    col = find_column(table, CIF_PATH_ALIASES, what="CIF path", path=table_path)
    formula_col = next((c for c in C.FORMULA_ALIASES if c in table.columns), None)
    formulas = table[formula_col].tolist() if formula_col is not None else [None] * len(table)
    items: list[StructureInput] = []
    skipped = 0
    for i, raw in enumerate(table[col].tolist()):
        if top is not None and len(items) >= top:
            break
        if not isinstance(raw, str) or not raw.strip():
            skipped += 1
            continue
        cif = Path(raw)
        if not cif.is_absolute():
            cif = table_path.parent / cif
        if not cif.is_file():
            raise InputError("CIF file not found", path=table_path, row=i + 1, value=raw)
        structure = _read_cif(cif, table_path=table_path, row=i + 1)
        given = formulas[i]
        formula = given if isinstance(given, str) and given else structure.composition.reduced_formula
        items.append(StructureInput(cif.stem, cif, structure, formula, input_row=i + 1))
    if skipped:
        log.info("%s: %d row(s) without a CIF path skipped", table_path, skipped)
    if not items:
        raise InputError(f"no row with a CIF path in column {col}", path=table_path)
    return items


def _read_cif(path: Path, *, table_path: Path | None = None, row: int | None = None) -> Structure:
    try:
        structure = Structure.from_file(str(path))
    except Exception as exc:  # pymatgen raises ValueError, KeyError, IndexError, ...
        first = _first_line(exc)
        if table_path is not None:
            raise InputError(f"cannot read CIF {path} ({first})", path=table_path, row=row) from exc
        raise InputError(f"cannot read CIF ({first})", path=path) from exc
    if len(structure) == 0:
        raise InputError("CIF has no atoms", path=path)
    return structure


# ----------------------------------------------------------------------------- one structure (needs GPAW)


def compute_band_gap(
    structure: Structure, settings: DFTSettings = DFTSettings(), *, txt: str | Path | None = None
) -> DFTResult:
    """Run GPAW on one structure in this process (no time budget) and return its gap.

    Args:
        structure: the crystal (used as given: no relaxation, no symmetrisation).
        settings: the protocol.
        txt: GPAW's text log (``None``: no log); the band path's goes beside it
            with the suffix ``.bandpath.txt``.

    Raises:
        DependencyError: GPAW is not installed.
    """
    require_gpaw()
    from ase.dft.bandgap import bandgap
    from gpaw import GPAW, PW, FermiDirac, KohnShamConvergenceError
    from gpaw import __version__ as gpaw_version
    from pymatgen.io.ase import AseAtomsAdaptor

    start, cpu_start = time.perf_counter(), time.process_time()
    atoms = AseAtomsAdaptor.get_atoms(idealize(structure, settings.symprec))
    if settings.spinpol:
        atoms.set_initial_magnetic_moments([1.0] * len(atoms))
    txt_arg = str(txt) if txt is not None else None
    calc = GPAW(
        mode=PW(settings.ecut),
        xc=settings.xc,
        kpts={"density": settings.kpt_density, "gamma": True},
        occupations=FermiDirac(settings.smearing_width),
        spinpol=settings.spinpol,
        nbands=-(settings.empty_bands or max(8, len(atoms))),  # negative: occupied + this many
        convergence={"bands": f"CBM+{settings.conv_bands_above_cbm:g}"},
        maxiter=settings.maxiter,
        txt=txt_arg,
    )
    atoms.calc = calc
    try:
        energy = float(atoms.get_potential_energy())
    except KohnShamConvergenceError as exc:
        return DFTResult(
            status=STATUS_NOT_CONVERGED,
            converged=False,
            scf_iterations=settings.maxiter,
            wall_time_s=time.perf_counter() - start,
            cpu_time_s=time.process_time() - cpu_start,
            nsites_computed=len(atoms),
            message=f"SCF not converged: {_first_line(exc)}",
            gpaw_version=gpaw_version,
        )
    kpts = "x".join(str(n) for n in _grid_size(atoms, settings.kpt_density))
    efermi = float(calc.get_fermi_level())
    eig_scf = _eigenvalues(calc)
    gap_scf, _, _ = bandgap(eigenvalues=eig_scf, efermi=efermi, output=None)
    eigs = eig_scf
    message = ""
    if settings.band_path_points > 0 and gap_scf > 0:
        try:
            path = atoms.cell.bandpath(npoints=settings.band_path_points)
            bs_txt = None if txt is None else str(Path(txt).with_suffix(".bandpath.txt"))
            bs_calc = calc.fixed_density(
                kpts=path,
                symmetry="off",
                txt=bs_txt,
                convergence={"bands": f"CBM+{settings.conv_bands_above_cbm:g}"},
            )
            eig_path = _eigenvalues(bs_calc)
            nb = min(eig_scf.shape[2], eig_path.shape[2])
            eigs = np.concatenate([eig_scf[:, :, :nb], eig_path[:, :, :nb]], axis=1)
        except Exception as exc:  # the path is a refinement: keep the grid's gap
            message = f"band path skipped: {type(exc).__name__}: {_first_line(exc)}"
            log.warning("%s: %s", structure.composition.reduced_formula, message)
    gap, vbm, cbm = _gap_and_edges(eigs, efermi)
    return DFTResult(
        status=STATUS_OK,
        converged=True,
        band_gap=gap,
        band_gap_scf=float(gap_scf),
        vbm=vbm,
        cbm=cbm,
        energy=energy,
        energy_per_atom=energy / len(atoms),
        scf_iterations=int(calc.get_number_of_iterations()),
        kpts=kpts,
        wall_time_s=time.perf_counter() - start,
        cpu_time_s=time.process_time() - cpu_start,
        nsites_computed=len(atoms),
        message=message,
        gpaw_version=gpaw_version,
    )


def idealize(structure: Structure, symprec: float | None) -> Structure:
    """Return the standard primitive cell (spglib, ``symprec`` in Å); the structure as given if None.

    Falls back to the structure as given when spglib finds no cell (logged).
    """
    if symprec is None:
        return structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        primitive = SpacegroupAnalyzer(structure, symprec=symprec).get_primitive_standard_structure()
    except Exception as exc:  # spglib gives up on some distorted cells
        log.warning(
            "%s: no symmetrised cell (%s); computing the cell as given",
            structure.composition.reduced_formula,
            _first_line(exc),
        )
        return structure
    if not math.isclose(primitive.volume / len(primitive), structure.volume / len(structure), rel_tol=1e-3):
        log.warning(
            "%s: symmetrised cell changes the volume per atom; computing the cell as given",
            structure.composition.reduced_formula,
        )
        return structure
    return primitive


def _grid_size(atoms: Any, density: float) -> list[int]:
    """The Monkhorst-Pack grid GPAW builds for ``kpts={"density": density}``."""
    from ase.calculators.calculator import kpts2sizeandoffsets

    size, _ = kpts2sizeandoffsets(density=density, gamma=True, atoms=atoms)
    return [int(n) for n in size]


def _eigenvalues(calc: Any) -> np.ndarray:
    """Eigenvalues as an array (n_spins, n_kpts, n_bands) in eV."""
    nspins = calc.get_number_of_spins()
    nk = len(calc.get_ibz_k_points())
    return np.array([[calc.get_eigenvalues(kpt=k, spin=s) for k in range(nk)] for s in range(nspins)])


def _gap_and_edges(eigs: np.ndarray, efermi: float) -> tuple[float, float, float]:
    """Band gap, VBM and CBM (eV) from eigenvalues (n_spins, n_kpts, n_bands).

    A band crossing the Fermi level (metal) gives gap 0 and NaN edges.
    """
    occupied = eigs < efermi
    nocc = occupied.sum(axis=2)
    below = eigs[occupied]
    above = eigs[~occupied]
    if below.size == 0 or above.size == 0:
        return math.nan, math.nan, math.nan
    if np.any(nocc != nocc[:, :1]):  # a band crosses the Fermi level in some spin channel
        return 0.0, math.nan, math.nan
    vbm, cbm = float(below.max()), float(above.min())
    return max(cbm - vbm, 0.0), vbm, cbm


# ----------------------------------------------------------------------------- the per-structure task


def dft_task(
    item: StructureInput,
    settings: DFTSettings,
    *,
    log_dir: str | None = None,
    launch: Sequence[str] = (),
) -> DFTResult:
    """Compute one structure in a child process, killed past ``settings.time_budget``.

    The child is ``python -m gapforge.structure._dft_child`` behind the launch
    command (``launch``, e.g. ``["srun", "-n", "4"]`` for a GPAW built with
    MPI); it runs in its own session, so the whole process group (every MPI
    rank) is stopped on a timeout. Runs wherever the executor puts it.
    """
    import os
    import signal
    import subprocess
    import sys
    import tempfile

    txt = "" if log_dir is None else str(Path(log_dir) / f"{_safe(item.name)}.txt")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gapforge-dft-") as tmp:
        in_path, out_path, err_path = Path(tmp, "in.json"), Path(tmp, "out.json"), Path(tmp, "stderr.txt")
        in_path.write_text(json.dumps({"structure": item.structure.as_dict(), "settings": asdict(settings)}))
        cmd = [
            *launch,
            sys.executable,
            "-m",
            "gapforge.structure._dft_child",
            str(in_path),
            str(out_path),
            txt,
        ]
        log.info("DFT %s (%s, %d atoms) started: %s", item.name, item.formula, len(item.structure), cmd[0])
        with err_path.open("wb") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
            try:
                code = proc.wait(timeout=settings.time_budget)
            except subprocess.TimeoutExpired:
                _stop_group(proc, os, signal, subprocess)
                return DFTResult(
                    status=STATUS_TIMEOUT,
                    converged=False,
                    wall_time_s=time.perf_counter() - start,
                    message=f"time budget of {settings.time_budget:g} s exceeded",
                )
        elapsed = time.perf_counter() - start
        if out_path.is_file():
            try:
                return DFTResult.from_dict(json.loads(out_path.read_text()))
            except (ValueError, TypeError) as exc:
                return DFTResult(
                    status=STATUS_ERROR,
                    converged=False,
                    wall_time_s=elapsed,
                    message=f"unreadable result: {exc}",
                )
        tail = [line for line in err_path.read_text(errors="replace").splitlines() if line.strip()]
        return DFTResult(
            status=STATUS_ERROR,
            converged=False,
            wall_time_s=elapsed,
            message=f"DFT process exited with code {code}" + (f": {tail[-1].strip()}" if tail else ""),
        )


def _stop_group(proc: Any, os: Any, signal: Any, subprocess: Any) -> None:
    """Stop the task's whole process group: SIGTERM, then SIGKILL what is left after 5 s.

    The group, not only its leader: behind an MPI launcher (``srun``, ``mpirun``) the
    ranks are the launcher's children and can outlive it by a moment or for good, so
    this returns only when no live process of the group remains (zombies excepted).
    """
    import psutil

    pgid = proc.pid

    def alive() -> list[Any]:
        members = []
        for p in psutil.process_iter(["status"]):
            try:
                if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                    members.append(p)
            except (OSError, psutil.Error):
                continue
        return members

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            continue
        _, still = psutil.wait_procs(alive(), timeout=5.0)
        if not still:
            break
    proc.poll()


class _DFTCache:
    """The DFT cache as a :class:`~gapforge.executor.ResultStore` (only reusable statuses are kept)."""

    def __init__(
        self,
        directory: Path,
        settings: DFTSettings,
        by_key: dict[str, tuple[StructureInput, str]],
        read: bool,
    ) -> None:
        self.directory = directory
        self.settings = settings
        self.by_key = by_key
        self.read = read

    def get(self, key: str) -> DFTResult | None:
        return _cache_load(self.directory, key) if self.read else None

    def put(self, key: str, result: DFTResult) -> None:
        if result.status in _CACHEABLE:
            item, fingerprint = self.by_key[key]
            _cache_store(
                self.directory, key, item=item, fingerprint=fingerprint, settings=self.settings, result=result
            )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


# ----------------------------------------------------------------------------- the stage


def run_dft(
    input_path: str | Path,
    out_dir: str | Path,
    *,
    top: int | None = None,
    settings: DFTSettings = DFTSettings(),
    workers: int | None = None,
    executor: Executor | ExecutorSettings | None = None,
    overwrite: bool = False,
    cache_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Compute the PBE band gap and total energy of the first ``top`` structures.

    Args:
        input_path: directory of CIFs, a run directory with ``relaxed.csv``, or a
            table with a ``relaxed_cif_path``/``cif_path`` column (see
            :func:`collect_structures`).
        out_dir: where ``dft.csv``, ``dft_settings.json``, GPAW logs and (by
            default) the cache go.
        top: compute only the first N structures (default: all).
        settings: the DFT protocol.
        workers: without ``executor``: 1 computes one structure at a time from
            this process, N on N local workers (each structure in its own child
            process either way, killed past the time budget).
        executor: where the tasks run (settings or an open executor). Without
            it or ``workers``: the executor open in this context, else one
            structure at a time from this process. Its ``mpi`` and
            ``task_cores`` settings launch each structure on several cores.
        overwrite: recompute structures that are already in the cache.
        cache_dir: cache directory (default ``out_dir/cache``); share one between
            runs to reuse results.

    Returns:
        The result table (also written to ``out_dir/dft.csv``), one row per structure.

    Raises:
        InputError: bad input (see :func:`collect_structures`).
        DependencyError: a structure needs computing and GPAW is not installed.
    """
    if workers is not None and workers < 1:
        raise InputError("--workers must be at least 1", value=workers)
    items = collect_structures(input_path, top=top)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError("output must be a directory", path=out)
    cache = Path(cache_dir) if cache_dir is not None else out / CACHE_DIR
    fingerprints = [structure_fingerprint(item.structure) for item in items]
    keys = [cache_key(fp, settings) for fp in fingerprints]
    store = _DFTCache(
        cache, settings, {k: (items[i], fingerprints[i]) for i, k in enumerate(keys)}, read=not overwrite
    )
    cached = {i for i, key in enumerate(keys) if store.get(key) is not None}
    n_todo = len({keys[i] for i in range(len(items)) if i not in cached})
    log.info("DFT stage: %d structures, %d cached, %d to compute", len(items), len(cached), n_todo)
    log_dir = out / LOG_DIR
    if n_todo:
        require_gpaw()
        log_dir.mkdir(parents=True, exist_ok=True)
    runner = choose_executor(executor, workers, default_workers=1)
    runner_settings = runner if isinstance(runner, ExecutorSettings) else getattr(runner, "settings", None)
    launch = runner_settings.launch_prefix() if runner_settings is not None else []
    key_of = {id(item): key for item, key in zip(items, keys, strict=True)}
    run = run_tasks(
        functools.partial(dft_task, settings=settings, log_dir=str(log_dir), launch=tuple(launch)),
        items,
        executor=runner,
        key=lambda item: key_of[id(item)],
        store=store,
        desc="DFT",
        unit="structure",
    )
    results = {  # a failure of the task itself (not of GPAW) keeps its reason
        i: DFTResult(status=STATUS_ERROR, converged=False, message=r.reason)
        if isinstance(r, TaskFailure)
        else r
        for i, r in enumerate(run.results)
    }

    table = _results_table(items, fingerprints, results, cached, settings)
    write_json(
        {"settings": asdict(settings), "input": str(input_path), "top": top, "cache_dir": str(cache)},
        out / SETTINGS_FILE,
    )
    write_table(table, out / RESULTS_FILE)
    n_ok = int((table[STATUS] == STATUS_OK).sum())
    log.info("DFT stage: %d of %d structures finished; table %s", n_ok, len(table), out / RESULTS_FILE)
    return table


def _results_table(
    items: Sequence[StructureInput],
    fingerprints: Sequence[str],
    results: dict[int, DFTResult],
    cached: set[int],
    settings: DFTSettings,
) -> pd.DataFrame:
    rows = []
    settings_json = settings.to_json()
    for i, item in enumerate(items):
        res = results[i]
        rows.append(
            {
                NAME: item.name,
                C.FORMULA: item.formula,
                INPUT_ROW: item.input_row,
                CIF_PATH: str(item.cif_path),
                NSITES: len(item.structure),
                DFT_BAND_GAP: res.band_gap,
                DFT_BAND_GAP_SCF: res.band_gap_scf,
                DFT_VBM: res.vbm,
                DFT_CBM: res.cbm,
                DFT_ENERGY: res.energy_per_atom * len(item.structure),
                DFT_ENERGY_PER_ATOM: res.energy_per_atom,
                CONVERGED: bool(res.converged),
                STATUS: res.status,
                MESSAGE: res.message,
                WALL_TIME_S: round(float(res.wall_time_s), 2),
                CPU_TIME_S: round(float(res.cpu_time_s), 2),
                SCF_ITERATIONS: res.scf_iterations,
                KPTS: res.kpts,
                CACHED: i in cached,
                FINGERPRINT: fingerprints[i],
                GPAW_VERSION: res.gpaw_version,
                SETTINGS: settings_json,
            }
        )
    table = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    table[INPUT_ROW] = table[INPUT_ROW].astype("Int64")
    table[SCF_ITERATIONS] = table[SCF_ITERATIONS].astype("Int64")
    return table


def format_results(table: pd.DataFrame) -> str:
    """A short human-readable table of the main columns (for the CLI)."""
    cols = [NAME, C.FORMULA, DFT_BAND_GAP, DFT_ENERGY_PER_ATOM, CONVERGED, STATUS, WALL_TIME_S, KPTS, CACHED]
    view = table[[c for c in cols if c in table.columns]].copy()
    with pd.option_context(
        "display.max_rows", None, "display.width", 200, "display.float_format", lambda x: f"{x:.3f}"
    ):
        return view.to_string(index=False)


__all__ = [
    "DFTResult",
    "DFTSettings",
    "StructureInput",
    "cache_key",
    "collect_structures",
    "compute_band_gap",
    "dft_task",
    "format_results",
    "gpaw_available",
    "idealize",
    "require_gpaw",
    "run_dft",
    "structure_fingerprint",
]

"""Relaxation and energy with the CHGNet universal potential.

Protocol (written down, as in matbench-discovery's ``ase_relax``): ASE ``FIRE``
on a ``FrechetCellFilter`` (positions and cell together), stop when every
force (and the cell's generalised force) is below ``fmax`` = 0.05 eV/Å or after
``max_steps`` = 500 steps. CHGNet's weights ship inside the ``chgnet`` wheel;
the model version is pinned (``"0.3.0"``, trained on MPtrj) because the
default of ``CHGNet.load`` has changed between releases.

CHGNet 0.3.0 was trained on MPtrj energies *with* the Materials Project 2020
(GGA/GGA+U mixing and anion) corrections applied, so its energies are already
on the ``MaterialsProject2020Compatibility`` scale; see
:mod:`gapforge.structure.stability` for how formation energies are formed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pymatgen.core import Structure

from gapforge.errors import DependencyError, GapforgeError

if TYPE_CHECKING:
    import concurrent.futures as cf

    from gapforge.executor import ExecutorSettings, TaskFailure

log = logging.getLogger(__name__)

#: CHGNet weights used unless asked otherwise (pinned: the package default moves).
CHGNET_MODEL_VERSION = "0.3.0"


class RelaxationError(GapforgeError):
    """A relaxation that blew up (non-finite energy, exploded or collapsed cell)."""


@dataclass(frozen=True)
class RelaxSettings:
    """How a structure is relaxed.

    Attributes:
        model_version: CHGNet weights (``"0.3.0"``, ``"0.2.0"`` or ``"r2scan"``).
        optimizer: ASE optimiser class name in ``ase.optimize`` (FIRE, BFGS, LBFGS...).
        cell_filter: ASE filter class name in ``ase.filters`` for cell relaxation,
            or ``None`` to relax positions only.
        fmax: force convergence threshold (eV/Å).
        max_steps: optimiser step limit.
        device: torch device.
        num_threads: torch CPU threads for this process (``None`` leaves torch's default).
        max_volume_ratio: a final/initial volume ratio beyond this (or below its
            inverse) counts as a blow-up.
        min_distance: a final interatomic distance below this (Å) counts as a collapse.
    """

    model_version: str = CHGNET_MODEL_VERSION
    optimizer: str = "FIRE"
    cell_filter: str | None = "FrechetCellFilter"
    fmax: float = 0.05
    max_steps: int = 500
    device: str = "cpu"
    num_threads: int | None = 1
    max_volume_ratio: float = 4.0
    min_distance: float = 0.6


@dataclass(frozen=True)
class RelaxResult:
    """The outcome of one relaxation.

    Attributes:
        final_structure: relaxed structure.
        energy_per_atom: CHGNet energy of the final structure (eV/atom).
        steps: optimiser steps taken.
        converged: all forces below ``fmax`` within ``max_steps``.
        wall_time_s: wall time of the relaxation (s).
        max_force: largest atomic force at the end (eV/Å).
        trajectory: energy per atom (eV/atom) after each step, first = initial.
    """

    final_structure: Structure
    energy_per_atom: float
    steps: int
    converged: bool
    wall_time_s: float
    max_force: float
    trajectory: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Scalars only (no structure, no trajectory), with units in the names' docs."""
        return {
            "energy_per_atom": self.energy_per_atom,
            "steps": self.steps,
            "converged": self.converged,
            "wall_time_s": self.wall_time_s,
            "max_force": self.max_force,
        }


@lru_cache(maxsize=4)
def load_chgnet(model_version: str = CHGNET_MODEL_VERSION, device: str = "cpu") -> Any:
    """Load (once per process) the pretrained CHGNet shipped in the ``chgnet`` wheel.

    Raises:
        DependencyError: ``chgnet`` is not installed.
    """
    try:
        from chgnet.model import CHGNet
    except ImportError as exc:
        raise DependencyError("relaxation needs chgnet (pip install chgnet)") from exc
    with contextlib.redirect_stdout(io.StringIO()):
        model = CHGNet.load(model_name=model_version, use_device=device, verbose=False)
    log.info("loaded CHGNet %s on %s", model_version, device)
    return model


def _calculator(settings: RelaxSettings, model: Any = None) -> Any:
    from chgnet.model import CHGNetCalculator

    model = model if model is not None else load_chgnet(settings.model_version, settings.device)
    with contextlib.redirect_stdout(io.StringIO()):  # CHGNetCalculator prints its device
        return CHGNetCalculator(model=model, use_device=settings.device)


def _set_threads(settings: RelaxSettings) -> None:
    if settings.num_threads is not None:
        import torch

        if torch.get_num_threads() != settings.num_threads:
            torch.set_num_threads(settings.num_threads)


def relax_structure(
    structure: Structure, settings: RelaxSettings = RelaxSettings(), *, model: Any = None
) -> RelaxResult:
    """Relax ``structure`` with CHGNet.

    Args:
        structure: starting structure.
        settings: optimiser, filter, limits and model version.
        model: an already loaded CHGNet (default: :func:`load_chgnet`).

    Raises:
        RelaxationError: the relaxation blew up.
    """
    import ase.filters
    import ase.optimize
    from pymatgen.io.ase import AseAtomsAdaptor

    _set_threads(settings)
    atoms = AseAtomsAdaptor.get_atoms(_plain(structure))
    atoms.calc = _calculator(settings, model)
    n = len(atoms)
    v0 = atoms.get_volume()
    start = time.perf_counter()
    try:
        optimizer_cls = getattr(ase.optimize, settings.optimizer)
    except AttributeError as exc:
        raise ValueError(f"unknown ASE optimiser {settings.optimizer!r}") from exc
    target: Any = atoms
    if settings.cell_filter:
        try:
            target = getattr(ase.filters, settings.cell_filter)(atoms)
        except AttributeError as exc:
            raise ValueError(f"unknown ASE filter {settings.cell_filter!r}") from exc
    trajectory: list[float] = []

    def _record() -> None:
        trajectory.append(float(atoms.get_potential_energy()) / n)

    optimizer = optimizer_cls(target, logfile=None)
    optimizer.attach(_record, interval=1)
    try:
        with np.errstate(all="ignore"):
            converged = bool(optimizer.run(fmax=settings.fmax, steps=settings.max_steps))
        energy = float(atoms.get_potential_energy()) / n
        forces = atoms.get_forces()
    except Exception as exc:  # CHGNet / ASE failing mid-run (e.g. isolated atoms, NaN)
        raise RelaxationError(f"CHGNet relaxation failed: {type(exc).__name__}: {exc}") from exc
    wall = time.perf_counter() - start
    final = AseAtomsAdaptor.get_structure(atoms)
    _check_sane(final, energy, v0, settings)
    max_force = float(np.linalg.norm(forces, axis=1).max()) if n else 0.0
    return RelaxResult(
        final_structure=final,
        energy_per_atom=energy,
        steps=int(optimizer.nsteps),
        converged=converged,
        wall_time_s=wall,
        max_force=max_force,
        trajectory=trajectory,
    )


def static_energy_per_atom(
    structure: Structure, settings: RelaxSettings = RelaxSettings(), *, model: Any = None
) -> float:
    """CHGNet energy per atom (eV/atom) of ``structure`` without relaxing it."""
    _set_threads(settings)
    model = model if model is not None else load_chgnet(settings.model_version, settings.device)
    with contextlib.redirect_stdout(io.StringIO()):
        pred = model.predict_structure(_plain(structure), task="e")
    return float(np.asarray(pred["e"]).reshape(-1)[0])


def _plain(structure: Structure) -> Structure:
    """Copy without oxidation states or site properties (CHGNet wants bare elements)."""
    out = structure.copy()
    with contextlib.suppress(Exception):
        out.remove_oxidation_states()
    for key in list(out.site_properties):
        out.remove_site_property(key)
    return out


def _check_sane(final: Structure, energy: float, v0: float, settings: RelaxSettings) -> None:
    if not math.isfinite(energy):
        raise RelaxationError("CHGNet energy is not finite")
    ratio = final.volume / v0 if v0 > 0 else math.inf
    if not (1 / settings.max_volume_ratio <= ratio <= settings.max_volume_ratio):
        raise RelaxationError(f"cell volume changed by a factor {ratio:.2f} (blow-up)")
    if len(final) > 1:
        dmin = float(np.min(final.distance_matrix + np.eye(len(final)) * 1e9))
        if dmin < settings.min_distance:
            raise RelaxationError(f"atoms collapsed (shortest distance {dmin:.2f} Å)")


# --------------------------------------------------------------------------- per-structure tasks


class RelaxMode(StrEnum):
    """What a relaxation task does with its structure."""

    RELAX = "relax"  # FIRE + cell filter to convergence -> RelaxResult
    STATIC = "static"  # one CHGNet evaluation -> energy per atom (eV/atom)


@dataclass(frozen=True)
class RelaxItem:
    """One structure to relax (or only evaluate)."""

    structure: Structure
    mode: RelaxMode = RelaxMode.RELAX


def relax_task(item: RelaxItem, settings: RelaxSettings) -> RelaxResult | float:
    """The per-structure task: a pure function of (structure, mode, settings).

    Raises:
        RelaxationError: the relaxation blew up (recorded as the task's failure).
    """
    if item.mode == RelaxMode.STATIC:
        return static_energy_per_atom(item.structure, settings)
    return relax_structure(item.structure, settings)


def warm_up_chgnet(model_version: str = CHGNET_MODEL_VERSION, device: str = "cpu", threads: int = 1) -> None:
    """Load CHGNet in this process and evaluate one tiny cell (first-call costs paid once per worker)."""
    from pymatgen.core import Lattice

    from gapforge.executor.engine import limit_threads

    limit_threads(threads)
    model = load_chgnet(model_version, device)
    cell = Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with contextlib.redirect_stdout(io.StringIO()):
        model.predict_structure(cell, task="efs")


def relax_key(item: RelaxItem, settings: RelaxSettings) -> str:
    """Content key: structure fingerprint + mode + every setting that changes the answer + CHGNet version."""
    from importlib.metadata import PackageNotFoundError, version

    from gapforge.structure.dft import structure_fingerprint

    physics = asdict(settings)
    physics.pop("num_threads")
    try:
        chgnet_version = version("chgnet")
    except PackageNotFoundError:  # pragma: no cover - relaxing needs it anyway
        chgnet_version = "none"
    text = "|".join(
        [
            structure_fingerprint(item.structure),
            str(item.mode),
            json.dumps(physics, sort_keys=True),
            chgnet_version,
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def encode_relaxation(result: RelaxResult | float) -> dict[str, Any]:
    """JSON-ready form of a task's result (the final structure as pymatgen's dict)."""
    if isinstance(result, RelaxResult):
        return {
            "mode": RelaxMode.RELAX.value,
            **result.to_dict(),
            "trajectory": list(result.trajectory),
            "final_structure": result.final_structure.as_dict(),
        }
    return {"mode": RelaxMode.STATIC.value, "energy_per_atom": float(result)}


def decode_relaxation(data: dict[str, Any]) -> RelaxResult | float:
    """Inverse of :func:`encode_relaxation`."""
    if data["mode"] == RelaxMode.STATIC:
        return float(data["energy_per_atom"])
    return RelaxResult(
        final_structure=Structure.from_dict(data["final_structure"]),
        energy_per_atom=float(data["energy_per_atom"]),
        steps=int(data["steps"]),
        converged=bool(data["converged"]),
        wall_time_s=float(data["wall_time_s"]),
        max_force=float(data["max_force"]),
        trajectory=[float(e) for e in data.get("trajectory", [])],
    )


def _relax_cost(item: RelaxItem) -> float:
    """Relaxation cost grows with the atoms (a static evaluation is one step)."""
    return len(item.structure) * (1 if item.mode == RelaxMode.STATIC else 50)


def run_relaxations(
    structures: Sequence[Structure],
    settings: RelaxSettings = RelaxSettings(),
    *,
    workers: int | None = None,
    executor: cf.Executor | ExecutorSettings | None = None,
    modes: Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
    desc: str = "relax",
) -> list[RelaxResult | float | TaskFailure]:
    """Relax (or, where ``modes[i] == "static"``, only evaluate) every structure, one task each.

    Args:
        structures: structures to relax.
        settings: relaxation settings.
        workers: without ``executor``: 1 runs here, N on N local workers, 0 on
            every core; ``None``: the executor open in this context, else every core.
        executor: where the tasks run (an open executor or its settings).
        modes: ``"relax"`` (default) or ``"static"`` per structure.
        cache_dir: results stored by content key (structure fingerprint +
            settings) as they arrive; a rerun computes only what is missing.
        desc: progress-bar label.

    Returns:
        Per structure, in order: a :class:`RelaxResult` (relax), a float energy
        per atom in eV/atom (static) or a :class:`~gapforge.executor.TaskFailure`.
    """
    from gapforge.executor import JsonStore, choose_executor, run_tasks

    modes = list(modes) if modes is not None else [RelaxMode.RELAX] * len(structures)
    items = [RelaxItem(s, RelaxMode(m)) for s, m in zip(structures, modes, strict=True)]
    store = None if cache_dir is None else JsonStore(cache_dir, encode_relaxation, decode_relaxation)
    run = run_tasks(
        functools.partial(relax_task, settings=settings),
        items,
        executor=choose_executor(executor, workers),
        key=functools.partial(relax_key, settings=settings),
        store=store,
        worker_setup=functools.partial(
            warm_up_chgnet, settings.model_version, settings.device, settings.num_threads or 1
        ),
        cost=_relax_cost,
        desc=desc,
        unit="structure",
    )
    return run.results

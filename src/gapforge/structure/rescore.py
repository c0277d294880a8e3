"""A second universal potential that re-scores the CHGNet-relaxed templates, to choose among them.

Every template of a candidate is relaxed with CHGNet (:mod:`gapforge.structure.relax`);
which one is kept is decided by comparing energies
(:func:`~gapforge.structure.selection.pick_template`). On known materials CHGNet
often ranks a wrong polymorph below the true one, so the choice can be handed to
another potential: SevenNet-0 (Park et al., J. Chem. Theory Comput. 2024; an
equivariant NequIP-type network trained on the same MPtrj data as CHGNet; its
weights ship inside the ``sevenn`` wheel, so it runs offline) evaluates each
CHGNet-relaxed structure, either once (``steps=0``) or after at most ``steps``
FIRE steps of its own on a ``FrechetCellFilter``.

Energy scale: SevenNet-0 predicts the *uncorrected* MPtrj (PBE / PBE+U) energy;
CHGNet 0.3.0 the energy with the Materials Project 2020 corrections (NaCl rock
salt: SevenNet-0 -3.383, CHGNet -3.666 eV/atom, the difference being MP2020's
Cl correction of -0.307 eV/atom). The corrections depend on the composition only,
so they cancel between polymorphs of one formula: the choice needs none. For a
formation energy, add :func:`~gapforge.structure.stability.mp2020_correction_per_atom`.

The re-scored energy only chooses: the kept structure is still CHGNet's, with
CHGNet's energy, formation energy and energy above hull.

Measured on known materials (``benchmarks/results/selection_potential.md``): choosing with
SevenNet-0 or SevenNet-l3i5 matches as often as choosing with CHGNet (test 0.645-0.650 against
0.650), so it is
opt-in (``pip install 'gapforge[sevennet]'``). Its energy above hull of the *true* MP structures is
closer to MP's (MAE 0.012 against CHGNet's 0.020 eV/atom on test, with the MP2020 correction added),
but not on the rebuilt ones (0.036-0.038 against 0.034). Cost on one core: 0.08-0.12 s per
structure for one evaluation, 1.4-1.7 s for 30 steps (mean; <= 8 sites).
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
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pymatgen.core import Structure

from gapforge.errors import DependencyError
from gapforge.structure.relax import RelaxationError

if TYPE_CHECKING:
    import concurrent.futures as cf

    from gapforge.executor import ExecutorSettings, TaskFailure

log = logging.getLogger(__name__)


class SelectionEnergy(StrEnum):
    """Which potential's energy chooses among a candidate's relaxed templates."""

    CHGNET = "chgnet"  # the relaxation's own CHGNet 0.3.0 energy (nothing re-scored)
    SEVENNET_0 = "sevennet-0"  # SevenNet-0 (11 Jul 2024 weights, in the sevenn wheel)
    SEVENNET_L3I5 = "sevennet-l3i5"  # SevenNet-l3i5 (lmax 3, 5 layers; same MPtrj data, in the wheel)


#: The name ``sevenn`` gives each re-scoring model's pretrained weights.
_SEVENNET_NAMES = {SelectionEnergy.SEVENNET_0: "7net-0", SelectionEnergy.SEVENNET_L3I5: "7net-l3i5"}


@dataclass(frozen=True)
class RescoreSettings:
    """How the CHGNet-relaxed structures are re-scored.

    Attributes:
        model: the potential (not :attr:`SelectionEnergy.CHGNET`: that needs no re-scoring).
        steps: FIRE steps (with ``FrechetCellFilter``) of the model's own from the CHGNet-relaxed
            structure before its energy is read; 0 = one evaluation.
        fmax: force threshold (eV/Å) that ends those steps early.
        device: torch device.
        num_threads: torch CPU threads in this process (``None`` leaves torch's default).
    """

    model: SelectionEnergy = SelectionEnergy.SEVENNET_0
    steps: int = 0
    fmax: float = 0.05
    device: str = "cpu"
    num_threads: int | None = 1

    def __post_init__(self) -> None:
        if self.model == SelectionEnergy.CHGNET:
            raise ValueError("re-scoring needs another potential than chgnet")
        if self.steps < 0 or not self.fmax > 0:
            raise ValueError(f"need steps >= 0 and fmax > 0 (got steps={self.steps}, fmax={self.fmax})")


@dataclass(frozen=True)
class RescoreResult:
    """One structure re-scored.

    Attributes:
        energy_per_atom: the model's energy (eV/atom; SevenNet-0: uncorrected PBE/PBE+U scale).
        steps: optimiser steps taken (0 for a single evaluation).
        wall_time_s: seconds.
    """

    energy_per_atom: float
    steps: int
    wall_time_s: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, units in the names' docs."""
        return asdict(self)


@functools.lru_cache(maxsize=2)
def load_calculator(model: SelectionEnergy, device: str = "cpu") -> Any:
    """The model's ASE calculator, loaded once per process from the weights in its wheel.

    Raises:
        DependencyError: ``sevenn`` is not installed.
    """
    try:
        from sevenn.calculator import SevenNetCalculator
    except ImportError as exc:
        raise DependencyError(f"selection by {model} needs sevenn (pip install sevenn)") from exc
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # torch.load / e3nn deprecation chatter
        calc = SevenNetCalculator(model=_SEVENNET_NAMES[SelectionEnergy(model)], device=device)
    log.info("loaded %s on %s", model, device)
    return calc


def model_version(model: SelectionEnergy) -> str:
    """Package version behind the model's weights (part of every cache key)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"sevenn {version('sevenn')}"
    except PackageNotFoundError:
        return "sevenn none"


def rescore_structure(structure: Structure, settings: RescoreSettings = RescoreSettings()) -> RescoreResult:
    """Energy per atom of ``structure`` under ``settings.model`` (after at most ``settings.steps`` steps).

    Raises:
        RelaxationError: the energy is not finite or the model failed on the structure.
    """
    import ase.filters
    import ase.optimize
    from pymatgen.io.ase import AseAtomsAdaptor

    from gapforge.structure.relax import _plain

    if settings.num_threads is not None:
        import torch

        if torch.get_num_threads() != settings.num_threads:
            torch.set_num_threads(settings.num_threads)
    atoms = AseAtomsAdaptor.get_atoms(_plain(structure))
    atoms.calc = load_calculator(settings.model, settings.device)
    start = time.perf_counter()
    steps = 0
    try:
        with np.errstate(all="ignore"):
            if settings.steps > 0:
                opt = ase.optimize.FIRE(ase.filters.FrechetCellFilter(atoms), logfile=None)
                opt.run(fmax=settings.fmax, steps=settings.steps)
                steps = int(opt.nsteps)
            energy = float(atoms.get_potential_energy()) / len(atoms)
    except Exception as exc:  # the model failing on one structure (isolated atom, NaN)
        raise RelaxationError(f"{settings.model} failed: {type(exc).__name__}: {exc}") from exc
    if not math.isfinite(energy):
        raise RelaxationError(f"{settings.model} energy is not finite")
    return RescoreResult(energy, steps, time.perf_counter() - start)


def rescore_key(structure: Structure, settings: RescoreSettings) -> str:
    """Content key: structure fingerprint + model + its package version + steps and fmax."""
    from gapforge.structure.dft import structure_fingerprint

    physics = asdict(settings)
    physics.pop("num_threads")
    text = "|".join(
        [
            "rescore",
            structure_fingerprint(structure),
            json.dumps(physics, sort_keys=True),
            model_version(settings.model),
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _encode(result: RescoreResult) -> dict[str, Any]:
    return result.to_dict()


def _decode(data: dict[str, Any]) -> RescoreResult:
    return RescoreResult(float(data["energy_per_atom"]), int(data["steps"]), float(data["wall_time_s"]))


def _warm_up(settings: RescoreSettings) -> None:
    from pymatgen.core import Lattice

    from gapforge.executor.engine import limit_threads

    limit_threads(settings.num_threads or 1)
    cell = Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    rescore_structure(
        cell, RescoreSettings(settings.model, 0, settings.fmax, settings.device, settings.num_threads)
    )


def run_rescoring(
    structures: Sequence[Structure],
    settings: RescoreSettings = RescoreSettings(),
    *,
    workers: int | None = None,
    executor: cf.Executor | ExecutorSettings | None = None,
    cache_dir: str | Path | None = None,
    desc: str = "rescore",
) -> list[RescoreResult | TaskFailure]:
    """Re-score every structure, one task each (as :func:`~gapforge.structure.relax.run_relaxations`).

    Args:
        structures: CHGNet-relaxed structures.
        settings: model and steps.
        workers: without ``executor``: 1 runs here, N on N local workers.
        executor: where the tasks run.
        cache_dir: results stored by content key as they arrive (may be the relaxations' cache:
            the keys differ).
        desc: progress-bar label.

    Returns:
        Per structure, in order: a :class:`RescoreResult` or a :class:`~gapforge.executor.TaskFailure`.
    """
    from gapforge.executor import JsonStore, choose_executor, run_tasks

    store = None if cache_dir is None else JsonStore(cache_dir, _encode, _decode)
    run = run_tasks(
        functools.partial(rescore_structure, settings=settings),
        list(structures),
        executor=choose_executor(executor, workers),
        key=functools.partial(rescore_key, settings=settings),
        store=store,
        worker_setup=functools.partial(_warm_up, settings),
        cost=len,
        desc=desc,
        unit="structure",
    )
    return run.results


__all__ = [
    "RescoreResult",
    "RescoreSettings",
    "SelectionEnergy",
    "load_calculator",
    "rescore_key",
    "rescore_structure",
    "run_rescoring",
]

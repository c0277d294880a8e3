"""Run CHGNet relaxations on several cores, one failure never stopping the rest.

Each worker process loads CHGNet once (``spawn`` start method: torch and fork do
not mix) and runs with one torch thread, so ``workers`` processes use
``workers`` cores. A task that raises returns its reason instead of a result.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from pymatgen.core import Structure
from tqdm.auto import tqdm

from gapforge.structure.relax import (
    RelaxResult,
    RelaxSettings,
    load_chgnet,
    relax_structure,
    static_energy_per_atom,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Failure:
    """A task that did not produce a result.

    Attributes:
        reason: one line saying why.
    """

    reason: str


def default_workers() -> int:
    """Cores available to this process."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


_WORKER_SETTINGS: RelaxSettings | None = None


def _init_worker(settings: RelaxSettings) -> None:
    global _WORKER_SETTINGS  # noqa: PLW0603 - per-process state of a pool worker
    _WORKER_SETTINGS = settings
    import torch

    torch.set_num_threads(settings.num_threads or 1)
    load_chgnet(settings.model_version, settings.device)


def _run_one(structure: Structure, mode: str, settings: RelaxSettings) -> RelaxResult | float | Failure:
    try:
        if mode == "static":
            return static_energy_per_atom(structure, settings)
        return relax_structure(structure, settings)
    except Exception as exc:  # recorded as the row's reason; the run goes on
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return Failure(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)


def _worker_task(structure: Structure, mode: str) -> RelaxResult | float | Failure:
    assert _WORKER_SETTINGS is not None
    return _run_one(structure, mode, _WORKER_SETTINGS)


def run_relaxations(
    structures: Sequence[Structure],
    settings: RelaxSettings = RelaxSettings(),
    *,
    workers: int | None = None,
    modes: Sequence[str] | None = None,
    desc: str = "relax",
) -> list[Any]:
    """Relax (or, where ``modes[i] == "static"``, only evaluate) every structure.

    Args:
        structures: structures to relax.
        settings: relaxation settings.
        workers: processes (default: all cores); 1 runs in this process.
        modes: ``"relax"`` (default) or ``"static"`` per structure.
        desc: progress-bar label.

    Returns:
        Per structure, in order: a :class:`RelaxResult` (relax), a float energy
        per atom in eV/atom (static) or a :class:`Failure`.
    """
    n = len(structures)
    modes = list(modes) if modes is not None else ["relax"] * n
    workers = default_workers() if workers is None else max(1, workers)
    results: list[Any] = [None] * n
    if n == 0:
        return results
    bar = tqdm(total=n, desc=desc, disable=None, unit="structure")
    try:
        if workers == 1 or n == 1:
            for i, (s, m) in enumerate(zip(structures, modes, strict=True)):
                results[i] = _run_one(s, m, settings)
                bar.update()
            return results
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=min(workers, n), mp_context=ctx, initializer=_init_worker, initargs=(settings,)
        ) as pool:
            futures = {
                pool.submit(_worker_task, s, m): i
                for i, (s, m) in enumerate(zip(structures, modes, strict=True))
            }
            for fut in as_completed(futures):
                i = futures[fut]
                try:
                    results[i] = fut.result()
                except Exception as exc:  # e.g. a worker killed by the OS
                    results[i] = Failure(f"worker failed: {type(exc).__name__}: {exc}")
                bar.update()
    finally:
        bar.close()
    n_fail = sum(isinstance(r, Failure) for r in results)
    log.info("%s: %d structures, %d failed", desc, n, n_fail)
    return results

"""Where heavy per-item tasks run: one frozen settings object, read from one ``[executor]`` section.

The executor is *not* part of a run's scientific settings: a run directory made
on a laptop resumes on a cluster (and back) with the same results, because
results are keyed by content, never by where they were computed.

Example settings file (TOML; the same keys in JSON or YAML)::

    [executor]
    kind = "slurm"          # serial | local (default) | dask | slurm | pbs
    workers = 32            # most worker processes at once (adaptive)
    cores = 8               # cores of one batch job
    memory = "16GB"         # memory of one batch job
    queue = "normal"
    account = "mat123"
    walltime = "04:00:00"
    job_extra = ["--constraint=cpu"]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, TypeAdapter, ValidationError

from gapforge.errors import InputError


class ExecutorKind(StrEnum):
    """The engines a task can run on.

    - ``serial``: in this process, one task after the other (debugging, tiny runs);
    - ``local``: a Dask ``LocalCluster`` on this machine's cores (the default);
    - ``dask``: an existing Dask scheduler at ``address``;
    - ``slurm`` / ``pbs``: Dask workers in batch jobs (dask-jobqueue), scaled
      adaptively between 0 and ``workers``.
    """

    SERIAL = "serial"
    LOCAL = "local"
    DASK = "dask"
    SLURM = "slurm"
    PBS = "pbs"


@dataclass(frozen=True)
class ExecutorSettings:
    """How and where tasks run.

    Attributes:
        kind: the engine (:class:`ExecutorKind`).
        workers: worker processes; ``local``: ``None`` takes the cores available
            to this process; ``slurm``/``pbs``: the most workers the adaptive
            cluster grows to (``None``: one job's worth).
        threads: threads per worker (keep 1: CHGNet and GPAW tasks are single-threaded
            and BLAS/OpenMP threads are pinned to this number).
        address: scheduler address of ``kind = "dask"`` (``tcp://host:8786``).
        retries: times a task is resubmitted when the worker running it dies
            (a task that raises is not retried: it is recorded as a failure).
        memory_limit: memory per local worker (Dask's syntax, ``"auto"``: an
            equal share of the machine).
        queue: batch queue / partition (``slurm``/``pbs``).
        account: batch account / project.
        walltime: wall time of one batch job (``HH:MM:SS``).
        cores: cores of one batch job.
        memory: memory of one batch job (``"16GB"``).
        processes: worker processes per batch job (``None``: ``cores // task_cores``).
        job_extra: extra scheduler directives, one per item (``"--constraint=cpu"``).
        prologue: shell lines run before the worker starts (``"module load gpaw"``).
        interface: network interface of the workers (``"ib0"``), if the default is wrong.
        python: Python executable of the workers (default: this one).
        task_cores: cores given to one task that can use several (DFT with MPI);
            substituted for ``{cores}`` in ``mpi``.
        mpi: launch command put before a multi-core DFT task, e.g.
            ``"srun -n {cores}"`` or ``"mpirun -np {cores}"`` (needs a GPAW built
            with MPI; PyPI's GPAW is serial). ``None`` runs the task as is.
    """

    __pydantic_config__ = ConfigDict(extra="forbid")

    kind: ExecutorKind = ExecutorKind.LOCAL
    workers: int | None = None
    threads: int = 1
    address: str | None = None
    retries: int = 1
    memory_limit: str = "auto"
    queue: str | None = None
    account: str | None = None
    walltime: str = "01:00:00"
    cores: int = 1
    memory: str = "4GB"
    processes: int | None = None
    job_extra: tuple[str, ...] = ()
    prologue: tuple[str, ...] = ()
    interface: str | None = None
    python: str | None = None
    task_cores: int = 1
    mpi: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", _kind(self.kind))
        object.__setattr__(self, "job_extra", tuple(self.job_extra))
        object.__setattr__(self, "prologue", tuple(self.prologue))
        checks = {
            "workers": self.workers is None or self.workers >= 1,
            "threads": self.threads >= 1,
            "retries": self.retries >= 0,
            "cores": self.cores >= 1,
            "processes": self.processes is None or self.processes >= 1,
            "task_cores": self.task_cores >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise InputError(f"executor setting {name} out of range", value=getattr(self, name))
        if self.kind is ExecutorKind.DASK and not self.address:
            raise InputError("executor kind 'dask' needs an address (tcp://host:port)")
        if self.mpi is not None and "{cores}" not in self.mpi:
            raise InputError("executor setting mpi must contain {cores}", value=self.mpi)

    @classmethod
    def serial(cls) -> ExecutorSettings:
        """Run every task in this process."""
        return cls(kind=ExecutorKind.SERIAL)

    @classmethod
    def local(cls, workers: int | None = None) -> ExecutorSettings:
        """A ``LocalCluster`` of ``workers`` processes (``None``: every available core)."""
        return cls(kind=ExecutorKind.LOCAL, workers=workers)

    @classmethod
    def from_workers(cls, workers: int | None) -> ExecutorSettings:
        """The meaning of ``--workers``: 1 runs in this process, N on N local workers, 0/None all cores."""
        if workers is not None and workers < 0:
            raise InputError("--workers must be >= 0", value=workers)
        if workers == 1:
            return cls.serial()
        return cls.local(workers or None)

    def with_workers(self, workers: int | None) -> ExecutorSettings:
        """A copy with another worker count (``None`` keeps this one)."""
        return self if workers is None else replace(self, workers=workers)

    def n_local_workers(self) -> int:
        """Worker processes of a ``local`` cluster."""
        return self.workers if self.workers is not None else available_cores()

    def jobqueue_processes(self) -> int:
        """Worker processes per batch job."""
        return self.processes if self.processes is not None else max(1, self.cores // self.task_cores)

    def launch_prefix(self) -> list[str]:
        """The MPI launch command of a multi-core task, split into arguments (empty without ``mpi``)."""
        import shlex

        if self.mpi is None:
            return []
        return shlex.split(self.mpi.format(cores=self.task_cores))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (for logs; never part of a run's config)."""
        return TypeAdapter(ExecutorSettings).dump_python(self, mode="json")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity on Linux)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _kind(value: Any) -> ExecutorKind:
    try:
        return ExecutorKind(value)
    except ValueError:
        known = ", ".join(k.value for k in ExecutorKind)
        raise InputError(f"unknown executor kind (use {known})", value=value) from None


def executor_settings_from_dict(
    data: dict[str, Any], *, source: str | Path | None = None
) -> ExecutorSettings:
    """Check and build settings from a mapping (an ``[executor]`` section).

    Raises:
        InputError: an unknown key or a bad value, naming ``source`` and the key.
    """
    if not isinstance(data, dict):
        raise InputError("the executor section must be a table of settings", path=source, value=data)
    try:
        return TypeAdapter(ExecutorSettings).validate_python(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "executor"
        raise InputError(
            f"executor setting {key}: {err['msg']}", path=source, value=err.get("input")
        ) from None
    except InputError as exc:
        if exc.path is not None or source is None:
            raise
        raise InputError(exc.message, path=source, value=exc.value) from None


def load_executor_settings(path: str | Path) -> ExecutorSettings:
    """Read executor settings from a TOML, JSON or YAML file.

    The file holds either an ``[executor]`` section (so a ``discover`` settings
    file can carry one) or the executor keys at its top level.

    Raises:
        InputError: missing or unreadable file, unknown key or bad value.
    """
    from gapforge.discover.config import read_config_file

    data = read_config_file(path)
    section = data.get("executor", data) if isinstance(data, dict) else data
    return executor_settings_from_dict(section, source=path)


__all__ = [
    "ExecutorKind",
    "ExecutorSettings",
    "available_cores",
    "executor_settings_from_dict",
    "load_executor_settings",
]

"""One seam for heavy per-item work: serial, a local Dask cluster (default), a Dask scheduler or SLURM/PBS.

* :mod:`.settings` -- :class:`ExecutorSettings` (the ``[executor]`` section / ``--executor`` file);
* :mod:`.engine` -- :func:`open_executor` (a ``concurrent.futures.Executor``) and worker set-up;
* :mod:`.tasks` -- :func:`run_tasks`: content-keyed results, written as they arrive.

Example:
    >>> from gapforge.executor import ExecutorSettings, run_tasks
    >>> run = run_tasks(abs, [-1, 2, -3], executor=ExecutorSettings.serial())
    >>> run.results
    [1, 2, 3]
"""

from __future__ import annotations

from gapforge.executor.engine import (
    DaskExecutor,
    SerialExecutor,
    choose_executor,
    current_executor,
    job_script,
    open_executor,
    prepare_workers,
    worker_environment,
)
from gapforge.executor.settings import (
    ExecutorKind,
    ExecutorSettings,
    available_cores,
    executor_settings_from_dict,
    load_executor_settings,
)
from gapforge.executor.tasks import JsonStore, ResultStore, TaskFailure, TaskRun, run_tasks

__all__ = [
    "DaskExecutor",
    "ExecutorKind",
    "ExecutorSettings",
    "JsonStore",
    "ResultStore",
    "SerialExecutor",
    "TaskFailure",
    "TaskRun",
    "available_cores",
    "choose_executor",
    "current_executor",
    "executor_settings_from_dict",
    "job_script",
    "load_executor_settings",
    "open_executor",
    "prepare_workers",
    "run_tasks",
    "worker_environment",
]

"""The Dask worker plugin behind :func:`gapforge.executor.prepare_workers` (imports distributed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from distributed import WorkerPlugin


class CallOnWorker(WorkerPlugin):
    """Calls ``setup()`` once in each worker process.

    Runs on the workers present when it is registered and on every worker that
    joins later (a restarted worker, a new batch job).
    """

    def __init__(self, setup: Callable[[], Any]) -> None:
        self.setup_call = setup

    def setup(self, worker: Any) -> None:
        """Called by Dask in the worker."""
        self.setup_call()

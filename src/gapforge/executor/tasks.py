"""Run per-item tasks through the executor; results keyed by content, written as they arrive.

:func:`run_tasks` is the one loop every heavy stage uses (relaxations, DFT,
Table 1 repeats). For each item it

1. computes the item's content key (``key(item)``: structure fingerprint +
   the settings that change the answer) and takes the result from the store
   when it is there, so a rerun submits only what is missing;
2. submits the rest (an item whose key appeared before is computed once);
3. as each result arrives, *in this process only*, writes it to the store
   and calls ``on_result``, so a killed run loses at most the tasks in flight.

A task that raises becomes a :class:`TaskFailure` with its reason (the other
tasks go on); a task whose worker died is resubmitted by the engine
(``ExecutorSettings.retries``) and, if it dies again, recorded as a transient
failure, which is never stored: the next run tries it again.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from tqdm.auto import tqdm

from gapforge.executor.engine import open_executor, prepare_workers
from gapforge.executor.settings import ExecutorSettings
from gapforge.io import write_json

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class TaskFailure:
    """A task that gave no result.

    Attributes:
        reason: one line saying why (the exception type and message).
        transient: the engine failed (a worker died, the cluster went away), not
            the task itself: a rerun may succeed, so it is never stored.
    """

    reason: str
    transient: bool = False


@dataclass(frozen=True)
class TaskRun(Generic[R]):
    """What :func:`run_tasks` did.

    Attributes:
        results: per item, in the order given: its result or a :class:`TaskFailure`.
        submitted: tasks sent to the engine in this call.
        reused: items answered from the store (computed by an earlier run).
        seconds: wall time of the call (s).
    """

    results: list[R | TaskFailure]
    submitted: int
    reused: int
    seconds: float

    @property
    def failed(self) -> int:
        """Items without a result."""
        return sum(isinstance(r, TaskFailure) for r in self.results)


class ResultStore(Protocol[R]):
    """Where results live between runs, by content key."""

    def get(self, key: str) -> R | None:
        """The stored result of ``key``, or ``None``."""

    def put(self, key: str, result: R) -> None:
        """Store ``result`` under ``key`` (atomically)."""


class JsonStore(Generic[R]):
    """One JSON file per key in a directory, written atomically.

    Args:
        directory: where ``KEY.json`` files go (created on first write).
        encode: result -> JSON-ready value (default: the result itself).
        decode: inverse of ``encode``.
    """

    def __init__(
        self,
        directory: str | Path,
        encode: Callable[[R], Any] | None = None,
        decode: Callable[[Any], R] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self._encode = encode or (lambda r: r)
        self._decode = decode or (lambda d: d)

    def path(self, key: str) -> Path:
        """File of ``key``."""
        return self.directory / f"{key}.json"

    def get(self, key: str) -> R | None:
        """The stored result, or ``None`` if absent or unreadable (then it is recomputed)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            return self._decode(json.loads(path.read_text())["result"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable stored result %s (%s)", path, exc)
            return None

    def put(self, key: str, result: R) -> None:
        """Write ``KEY.json`` (temp file, then rename)."""
        write_json({"key": key, "result": self._encode(result)}, self.path(key))

    def keys(self) -> set[str]:
        """Keys stored so far."""
        return {p.stem for p in self.directory.glob("*.json")} if self.directory.is_dir() else set()


def run_tasks(
    task: Callable[[T], R],
    items: Iterable[T],
    *,
    executor: cf.Executor | ExecutorSettings | None = None,
    key: Callable[[T], str] | None = None,
    store: ResultStore[R] | None = None,
    on_result: Callable[[int, R | TaskFailure], None] | None = None,
    worker_setup: Callable[[], Any] | None = None,
    cost: Callable[[T], float] | None = None,
    desc: str = "tasks",
    unit: str = "task",
) -> TaskRun[R]:
    """Run ``task(item)`` for every item; reuse stored results; write new ones as they arrive.

    Args:
        task: a pure function of one item (picklable: module level, or a
            ``functools.partial`` of one carrying its settings).
        items: the work, one item per task.
        executor: an open executor, settings to open one for this call, or
            ``None``: the executor open in this context (:func:`open_executor`),
            else the default local cluster.
        key: the item's content key; items sharing a key are computed once.
            Without it nothing is reused or stored.
        store: where results are looked up and written (by key).
        on_result: ``on_result(index, result)`` called in this process as each
            new result arrives (not for reused ones), e.g. to append a row.
        worker_setup: run once per worker before the tasks (load and warm up a
            model; see :func:`prepare_workers`); skipped when nothing is computed.
        cost: an estimate of an item's cost (e.g. its number of atoms): the
            costliest are submitted first, so no big task is left for the end
            while the other workers idle.
        desc: progress-bar label.
        unit: progress-bar unit.

    Returns:
        Every item's result (or :class:`TaskFailure`) in order, with counts.
    """
    start = time.perf_counter()
    items = list(items)
    n = len(items)
    results: list[Any] = [None] * n
    keys = [key(item) for item in items] if key is not None else [None] * n
    first_of: dict[str, int] = {}
    todo: list[int] = []
    reused = 0
    for i, k in enumerate(keys):
        if k is not None:
            if k in first_of:
                continue  # the same content twice: computed (or reused) once
            first_of[k] = i
            if store is not None:
                hit = store.get(k)
                if hit is not None:
                    results[i] = hit
                    reused += 1
                    continue
        todo.append(i)

    bar = tqdm(
        total=len(first_of) if key is not None else n, initial=reused, desc=desc, unit=unit, disable=None
    )

    def arrived(i: int, result: Any) -> None:
        results[i] = result
        k = keys[i]
        if store is not None and k is not None and not isinstance(result, TaskFailure):
            store.put(k, result)
        if on_result is not None:
            on_result(i, result)
        bar.update()

    if cost is not None:
        todo.sort(key=lambda i: -cost(items[i]))
    guarded = functools.partial(_guarded, task)
    try:
        if todo:
            with _executor(executor) as ex:
                if worker_setup is not None:
                    prepare_workers(ex, setup_name(worker_setup), worker_setup)
                _submit_all(ex, guarded, items, todo, arrived)
    finally:
        bar.close()
    for i, k in enumerate(keys):
        if results[i] is None and k is not None:
            results[i] = results[first_of[k]]
    run = TaskRun(results, len(todo), reused, round(time.perf_counter() - start, 3))
    log.info("%s: %d items, %d reused, %d computed, %d failed", desc, n, reused, len(todo), run.failed)
    return run


@contextlib.contextmanager
def _executor(executor: cf.Executor | ExecutorSettings | None) -> Iterator[cf.Executor]:
    if isinstance(executor, cf.Executor):
        yield executor
        return
    with open_executor(executor) as ex:
        yield ex


def _submit_all(
    ex: cf.Executor,
    fn: Callable[[Any], Any],
    items: list[Any],
    todo: list[int],
    arrived: Callable[[int, Any], None],
) -> None:
    window = getattr(ex, "max_in_flight", None)
    if window is None or window >= len(todo):
        pending = {ex.submit(fn, items[i]): i for i in todo}
        try:
            for fut in cf.as_completed(pending):
                arrived(pending[fut], _outcome(fut))
        finally:
            for fut in pending:
                fut.cancel()
        return
    queue = iter(todo)
    running: dict[cf.Future, int] = {}
    try:
        for i in queue:
            running[ex.submit(fn, items[i])] = i
            while len(running) >= window:
                done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    arrived(running.pop(fut), _outcome(fut))
        for fut in cf.as_completed(list(running)):
            arrived(running.pop(fut), _outcome(fut))
    finally:
        for fut in running:
            fut.cancel()


def _outcome(fut: cf.Future) -> Any:
    """The task's result, or a transient failure when the engine lost it."""
    try:
        return fut.result()
    except cf.CancelledError:
        return TaskFailure("task cancelled (the cluster closed)", transient=True)
    except Exception as exc:  # KilledWorker after the retries, a lost scheduler, ...
        return TaskFailure(f"worker lost: {first_line(exc)}", transient=True)


def _guarded(task: Callable[[Any], Any], item: Any) -> Any:
    """Run one task; its exception becomes a :class:`TaskFailure` (in the worker)."""
    try:
        return task(item)
    except Exception as exc:  # recorded as the item's reason; the other tasks go on
        return TaskFailure(first_line(exc))


def setup_name(fn: Callable[[], Any]) -> str:
    """A stable name of a set-up call (the same call registers once per cluster)."""
    if isinstance(fn, functools.partial):
        args = ",".join([*map(repr, fn.args), *(f"{k}={v!r}" for k, v in sorted(fn.keywords.items()))])
        return f"gapforge-{fn.func.__module__}.{fn.func.__qualname__}({args})"
    return f"gapforge-{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}"


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` of an exception."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


__all__ = ["JsonStore", "ResultStore", "TaskFailure", "TaskRun", "first_line", "run_tasks"]

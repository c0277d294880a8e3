"""Open the engine an :class:`ExecutorSettings` names, as a ``concurrent.futures.Executor``.

Code that submits work sees only the standard interface (``submit``, futures);
the engine is chosen in one place. Dask does the scheduling, the restart of a
dead worker and the retry of its task (``distributed.scheduler.allowed-failures``);
gapforge only sets its workers up:

- BLAS/OpenMP threads at ``threads`` (1) *before* the worker process starts,
  through Dask's ``distributed.nanny.pre-spawn-environ``, and again with
  threadpoolctl inside the worker;
- ``MALLOC_TRIM_THRESHOLD_`` removed from that environment (Dask sets it to
  65536, which doubles CHGNet's CPU time: glibc then returns memory to the OS
  after every step and takes it back at the next);
- Dask's statistical profiler off (it samples every worker thread each 10 ms;
  measured +18 % CPU time on CHGNet relaxations);
- per-task state (a CHGNet model) loaded once per worker by :func:`prepare_workers`,
  a Dask worker plugin, so restarted and newly added workers get it too.

A ``LocalCluster``'s worker processes watch their parent and exit when it dies,
so killing the main process leaves no orphan (checked in the tests).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import contextvars
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

from gapforge.errors import DependencyError
from gapforge.executor.settings import ExecutorKind, ExecutorSettings

log = logging.getLogger(__name__)

#: Environment of every worker process, set before it starts (values as strings).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
#: Removed from the workers' environment (Dask's nanny sets it to 65536).
MALLOC_VARIABLE = "MALLOC_TRIM_THRESHOLD_"

_CURRENT: contextvars.ContextVar[cf.Executor | None] = contextvars.ContextVar(
    "gapforge_executor", default=None
)


class SerialExecutor(cf.Executor):
    """Runs each task in this process when it is submitted (the ``serial`` kind).

    ``max_in_flight`` = 1 tells :func:`gapforge.executor.run_tasks` to hand
    results on one by one, so they are written as they arrive here too.
    """

    max_in_flight = 1

    def __init__(self, settings: ExecutorSettings | None = None) -> None:
        self.settings = settings or ExecutorSettings.serial()
        self._prepared: set[str] = set()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        """Run ``fn(*args, **kwargs)`` now; return a finished future."""
        fut: cf.Future = cf.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            fut.set_exception(exc)
        return fut

    def prepare(self, name: str, setup: Callable[[], Any]) -> None:
        """Run ``setup()`` once in this process."""
        if name not in self._prepared:
            setup()
            self._prepared.add(name)


class DaskExecutor(cf.Executor):
    """A Dask client's ``concurrent.futures`` executor, with the client at hand.

    Attributes:
        client: the ``distributed.Client``.
        settings: what opened it.
    """

    max_in_flight: int | None = None  # submit everything: the scheduler balances

    def __init__(self, client: Any, settings: ExecutorSettings) -> None:
        self.client = client
        self.settings = settings
        self._executor = client.get_executor(pure=False)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        """Submit ``fn(*args, **kwargs)`` to the cluster."""
        return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting tasks (the cluster is closed by :func:`open_executor`)."""
        self._executor.shutdown(wait=wait)

    def prepare(self, name: str, setup: Callable[[], Any]) -> None:
        """Run ``setup()`` once on every worker, now and on any worker that starts later."""
        from gapforge.executor._plugin import CallOnWorker

        self.client.register_plugin(CallOnWorker(setup), name=name)


def current_executor() -> cf.Executor | None:
    """The executor opened by the innermost :func:`open_executor` of this context, if any."""
    return _CURRENT.get()


def choose_executor(
    executor: cf.Executor | ExecutorSettings | None = None,
    workers: int | None = None,
    *,
    default_workers: int | None = None,
) -> cf.Executor | ExecutorSettings:
    """What a stage runs on: ``executor``, else ``workers``, else the one open in this context.

    ``workers`` keeps its meaning everywhere: 1 runs in this process, N on N
    local workers, 0 on every core. With neither given and none open, the
    stage's ``default_workers`` applies (``None``: a local cluster on every core).
    """
    if executor is not None:
        return executor
    if workers is not None:
        return ExecutorSettings.from_workers(workers)
    current = _CURRENT.get()
    if current is not None:
        return current
    return ExecutorSettings.from_workers(default_workers)


def prepare_workers(executor: cf.Executor, name: str, setup: Callable[[], Any]) -> None:
    """Run ``setup()`` once per worker (e.g. load and warm up a model) before tasks use it.

    ``setup`` must be picklable (a module-level function or a ``functools.partial`` of one).
    Executors that know no workers (a plain ``ProcessPoolExecutor``) skip it: the
    task then does its own set-up on first use.
    """
    prepare = getattr(executor, "prepare", None)
    if prepare is not None:
        prepare(name, setup)


class DeferredExecutor(cf.Executor):
    """Opens its engine at the first task (or worker set-up), closes it with :func:`open_executor`.

    ``discover`` holds one for the whole run: a run whose heavy stages are all
    done (or skipped) never starts a cluster; the others share one.
    """

    def __init__(self, settings: ExecutorSettings) -> None:
        self.settings = settings
        self._stack = contextlib.ExitStack()
        self._inner: cf.Executor | None = None

    @property
    def max_in_flight(self) -> int | None:
        """As the engine's (known from the settings without opening it)."""
        return 1 if self.settings.kind is ExecutorKind.SERIAL else None

    @property
    def opened(self) -> bool:
        """Whether the engine has been started."""
        return self._inner is not None

    def _engine(self) -> cf.Executor:
        if self._inner is None:
            self._inner = self._stack.enter_context(_open(self.settings))
        return self._inner

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        """Submit to the engine (opening it on first use)."""
        return self._engine().submit(fn, *args, **kwargs)

    def prepare(self, name: str, setup: Callable[[], Any]) -> None:
        """Set the engine's workers up (opening it on first use)."""
        prepare_workers(self._engine(), name, setup)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Close the engine if it was opened."""
        self._stack.close()
        self._inner = None


@contextlib.contextmanager
def open_executor(
    settings: ExecutorSettings | cf.Executor | None = None,
    *,
    deferred: bool = False,
    make_current: bool = True,
) -> Iterator[cf.Executor]:
    """Open the engine ``settings`` names and close it (and its workers) on exit.

    Given an executor that is already open, it is made the current one for this
    context (and left open on exit). With ``settings=None`` the executor already
    open in this context is reused; without one, the default (``local``) is opened. With ``deferred=True`` the
    engine starts only when the first task is submitted (:class:`DeferredExecutor`).
    With ``make_current=False`` it is not offered to code that asks for the open
    executor (:func:`current_executor`); it is only used where passed explicitly.

    Yields:
        A ``concurrent.futures.Executor`` (:class:`SerialExecutor` or :class:`DaskExecutor`).

    Raises:
        DependencyError: ``dask-jobqueue`` missing, or the batch system's submit
            command (``sbatch``/``qsub``) not found on this machine.
    """
    if isinstance(settings, cf.Executor):
        token = _CURRENT.set(settings) if make_current else None
        try:
            yield settings
        finally:
            if token is not None:
                _CURRENT.reset(token)
        return
    if settings is None:
        current = _CURRENT.get()
        if current is not None:
            yield current
            return
        settings = ExecutorSettings()
    opener = _deferred(settings) if deferred else _open(settings)
    with opener as executor:
        if not make_current:
            yield executor
            return
        token = _CURRENT.set(executor)
        try:
            yield executor
        finally:
            _CURRENT.reset(token)


@contextlib.contextmanager
def _deferred(settings: ExecutorSettings) -> Iterator[cf.Executor]:
    executor = DeferredExecutor(settings)
    try:
        yield executor
    finally:
        executor.shutdown()


@contextlib.contextmanager
def _open(settings: ExecutorSettings) -> Iterator[cf.Executor]:
    match settings.kind:
        case ExecutorKind.SERIAL:
            yield SerialExecutor(settings)
        case ExecutorKind.LOCAL:
            with _local_cluster(settings) as client:
                yield _ready(client, settings)
        case ExecutorKind.DASK:
            from distributed import Client

            client = Client(settings.address, set_as_default=False)
            try:
                _warn_about_worker_environment(client, settings)
                yield _ready(client, settings)
            finally:
                client.close()
        case ExecutorKind.SLURM | ExecutorKind.PBS:
            _require_submit_command(settings.kind)
            with worker_config(settings):
                cluster = make_jobqueue_cluster(settings)
            from distributed import Client

            cluster.adapt(minimum=0, maximum=settings.workers or settings.jobqueue_processes())
            client = Client(cluster, set_as_default=False)
            try:
                yield _ready(client, settings)
            finally:
                client.close()
                cluster.close()


def _ready(client: Any, settings: ExecutorSettings) -> DaskExecutor:
    executor = DaskExecutor(client, settings)
    executor.prepare("gapforge-threads", _limit_threads_factory(settings.threads))
    log.info("executor %s: scheduler %s", settings.kind.value, client.scheduler.address)
    return executor


@contextlib.contextmanager
def worker_config(settings: ExecutorSettings) -> Iterator[None]:
    """Dask configuration of the workers gapforge starts: threads, malloc, retries."""
    import dask
    import distributed  # noqa: F401 - registers its defaults first, or leaving this context drops them

    threads = str(settings.threads)
    environ: dict[str, Any] = dict.fromkeys(THREAD_VARIABLES, threads)
    environ[MALLOC_VARIABLE] = None  # None removes a variable from Dask's default
    with dask.config.set(
        {
            "distributed.nanny.pre-spawn-environ": environ,
            "distributed.scheduler.allowed-failures": settings.retries,
            # the statistical profiler samples every worker thread each 10 ms: +18 % CPU on CHGNet tasks
            "distributed.worker.profile.enabled": False,
        }
    ):
        yield


@contextlib.contextmanager
def _local_cluster(settings: ExecutorSettings) -> Iterator[Any]:
    from distributed import Client, LocalCluster

    n = settings.n_local_workers()
    saved = os.environ.get(MALLOC_VARIABLE)
    if saved is not None:  # the workers inherit this process's environment
        del os.environ[MALLOC_VARIABLE]
    try:
        with worker_config(settings):
            cluster = LocalCluster(
                n_workers=n,
                threads_per_worker=settings.threads,
                processes=True,
                memory_limit=settings.memory_limit,
                dashboard_address=":0",  # a free port: never clashes with another run
                silence_logs=logging.ERROR,
            )
    finally:
        if saved is not None:
            os.environ[MALLOC_VARIABLE] = saved
    client = Client(cluster, set_as_default=False)
    log.info("local Dask cluster: %d workers x %d thread(s)", n, settings.threads)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def make_jobqueue_cluster(settings: ExecutorSettings) -> Any:
    """The dask-jobqueue cluster of a ``slurm``/``pbs`` executor (no job is submitted yet).

    Raises:
        DependencyError: dask-jobqueue is not installed.
    """
    try:
        import dask_jobqueue
    except ImportError as exc:
        raise DependencyError(
            "the slurm/pbs executors need dask-jobqueue (pip install dask-jobqueue)"
        ) from exc
    cls = dask_jobqueue.SLURMCluster if settings.kind is ExecutorKind.SLURM else dask_jobqueue.PBSCluster
    kwargs: dict[str, Any] = {
        "cores": settings.cores,
        "processes": settings.jobqueue_processes(),
        "memory": settings.memory,
        "walltime": settings.walltime,
        "queue": settings.queue,
        "account": settings.account,
        "job_extra_directives": list(settings.job_extra),
        "job_script_prologue": [*job_environment(settings), *settings.prologue],
        "scheduler_options": {"dashboard_address": None},
        "job_name": "gapforge",
    }
    if settings.interface:
        kwargs["interface"] = settings.interface
    if settings.python:
        kwargs["python"] = settings.python
    return cls(**kwargs)


def job_environment(settings: ExecutorSettings) -> list[str]:
    """Shell lines that give batch-job workers the environment local workers get."""
    threads = str(settings.threads)
    pre_spawn = dict.fromkeys(THREAD_VARIABLES, threads)
    pre_spawn[MALLOC_VARIABLE] = None
    return [
        f"unset {MALLOC_VARIABLE}",
        *(f"export {name}={threads}" for name in THREAD_VARIABLES),
        # the nanny on the node reads its own Dask config: remove the malloc setting there too
        f'export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON="{pre_spawn!r}"',
        "export DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False",
    ]  # retries are the scheduler's (allowed-failures), set where it runs: in this process


def job_script(settings: ExecutorSettings) -> str:
    """The batch script a ``slurm``/``pbs`` executor submits for each job (nothing is submitted)."""
    with worker_config(settings):
        cluster = make_jobqueue_cluster(settings)
    try:
        return str(cluster.job_script())
    finally:
        cluster.close()


def _require_submit_command(kind: ExecutorKind) -> None:
    command = "sbatch" if kind is ExecutorKind.SLURM else "qsub"
    if shutil.which(command) is None:
        raise DependencyError(
            f"executor kind {kind.value!r} submits batch jobs with {command}, which is not on this "
            "machine's PATH: run on the cluster's login node (or use kind 'local' / 'dask')"
        )


# --------------------------------------------------------------------------- on the workers


def _limit_threads_factory(threads: int) -> Callable[[], None]:
    import functools

    return functools.partial(limit_threads, threads)


def limit_threads(threads: int = 1) -> None:
    """Pin BLAS/OpenMP and torch to ``threads`` in this process (and its children)."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass
    import sys

    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def worker_environment() -> dict[str, Any]:
    """What a task sees of its process: thread variables, malloc setting, torch threads, pid."""
    import sys

    info: dict[str, Any] = {name: os.environ.get(name) for name in (*THREAD_VARIABLES, MALLOC_VARIABLE)}
    info["pid"] = os.getpid()
    info["torch_threads"] = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    try:
        from threadpoolctl import threadpool_info

        info["blas_threads"] = sorted({int(p["num_threads"]) for p in threadpool_info()})
    except ImportError:  # pragma: no cover
        info["blas_threads"] = []
    return info


def _warn_about_worker_environment(client: Any, settings: ExecutorSettings) -> None:
    """A scheduler someone else started: say if its workers will run slowly."""
    try:
        envs = client.run(worker_environment)
    except Exception as exc:  # a scheduler with no workers yet, or an old version
        log.info("could not inspect the workers' environment (%s)", exc)
        return
    for address, env in envs.items():
        if env.get(MALLOC_VARIABLE) is not None:
            log.warning(
                "worker %s runs with %s=%s, which doubles CHGNet's CPU time; start the workers with "
                "DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON=\"{'%s': None}\"",
                address,
                MALLOC_VARIABLE,
                env[MALLOC_VARIABLE],
                MALLOC_VARIABLE,
            )


__all__ = [
    "MALLOC_VARIABLE",
    "THREAD_VARIABLES",
    "DaskExecutor",
    "DeferredExecutor",
    "SerialExecutor",
    "choose_executor",
    "current_executor",
    "job_environment",
    "job_script",
    "limit_threads",
    "make_jobqueue_cluster",
    "open_executor",
    "prepare_workers",
    "worker_config",
    "worker_environment",
]

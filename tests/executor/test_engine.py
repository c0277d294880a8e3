"""The executor seam on a real Dask LocalCluster (2 workers x 1 thread): kinds, worker set-up,
results as they arrive, a worker killed mid-run, and the main process killed and resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from gapforge.executor import (
    ExecutorSettings,
    JsonStore,
    SerialExecutor,
    TaskFailure,
    open_executor,
    run_tasks,
    worker_environment,
)

SRC = Path(__file__).resolve().parents[2] / "src"


def slow_square(x: int, delay: float = 0.3) -> dict:
    time.sleep(delay)
    if x < 0:
        raise ValueError(f"negative input {x}")
    return {"x": x, "square": x * x, "pid": os.getpid()}


def die(x: int) -> int:
    os._exit(1)  # the worker process dies with the task


def inside_worker(_: int) -> dict:
    import dask
    import torch  # imported here, after the worker started: it must see one thread

    env = worker_environment()
    env["torch_threads_after_import"] = torch.get_num_threads()
    env["profiler"] = dask.config.get("distributed.worker.profile.enabled")
    return env


@pytest.mark.parametrize("kind", ["serial", "local", "dask"])
def test_each_kind_runs_the_same_tasks(kind, cluster):
    items = [3, -1, 4, 1]
    settings = {
        "serial": ExecutorSettings.serial(),
        "local": cluster,  # the session's LocalCluster (its own kind is "local")
        "dask": ExecutorSettings(kind="dask", address=cluster.client.scheduler.address),
    }[kind]
    run = run_tasks(slow_square, items, executor=settings)
    assert [r["square"] for r in run.results if not isinstance(r, TaskFailure)] == [9, 16, 1]
    failure = run.results[1]
    assert isinstance(failure, TaskFailure) and failure.reason == "ValueError: negative input -1"
    assert not failure.transient and run.submitted == 4 and run.failed == 1
    pids = {r["pid"] for r in run.results if isinstance(r, dict)}
    assert (pids == {os.getpid()}) == (kind == "serial")  # only serial runs here


def test_worker_environment_seen_from_inside_a_worker(cluster):
    run = run_tasks(inside_worker, range(4), executor=cluster)
    for env in run.results:
        assert env["pid"] != os.getpid()
        assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"
        assert env["MALLOC_TRIM_THRESHOLD_"] is None  # Dask's nanny default (65536) removed
        assert env["blas_threads"] == [1]
        assert env["torch_threads_after_import"] == 1
        assert env["profiler"] is False  # Dask's 10 ms stack sampler costs CHGNet ~18 % CPU


def test_results_stored_as_they_arrive_and_reused(tmp_path, cluster):
    store = JsonStore(tmp_path / "store")
    seen = []

    def arrived(i, result):
        seen.append(i)
        assert store.get(str(items[i])) == result  # written before on_result is called

    items = [5, 6, 7, 5]  # the same content twice: computed once
    first = run_tasks(slow_square, items, executor=cluster, key=str, store=store, on_result=arrived)
    assert first.submitted == 3 and sorted(seen) == [0, 1, 2]
    assert first.results[3] == first.results[0]
    again = run_tasks(slow_square, [*items, 8], executor=cluster, key=str, store=store)
    assert again.reused == 3 and again.submitted == 1
    assert again.results[:4] == first.results


def test_costliest_items_are_submitted_first():
    order = []
    run = run_tasks(
        lambda x: order.append(x) or x,
        [1, 5, 3, 4],
        executor=SerialExecutor(),
        cost=float,
    )
    assert order == [5, 4, 3, 1] and run.results == [1, 5, 3, 4]  # results still in item order


def test_serial_executor_hands_results_on_one_by_one(tmp_path):
    """Serial runs in this process but still writes each result before the next task starts."""
    store = JsonStore(tmp_path / "store")
    counts = []
    run_tasks(
        slow_square,
        [1, 2, 3],
        executor=SerialExecutor(),
        key=str,
        store=store,
        on_result=lambda i, r: counts.append(len(store.keys())),
    )
    assert counts == [1, 2, 3]


def test_worker_killed_mid_run_every_result_once(cluster):
    client = cluster.client
    client.wait_for_workers(2, timeout=60)
    pids = list(client.run(os.getpid).values())
    calls = []

    def arrived(i, result):
        calls.append(i)
        if len(calls) == 1:
            os.kill(pids[0], signal.SIGKILL)  # its running task is lost with it

    items = list(range(10))
    run = run_tasks(
        lambda x: slow_square(x, 0.8), items, executor=cluster, on_result=arrived
    )  # lambda: shipped by value
    assert sorted(calls) == items  # every result, each exactly once
    assert not any(isinstance(r, TaskFailure) for r in run.results)
    assert [r["square"] for r in run.results] == [x * x for x in items]
    client.wait_for_workers(2, timeout=60)  # the nanny restarted the dead worker
    assert pids[0] not in client.run(os.getpid).values()


def test_a_task_that_keeps_killing_its_worker_becomes_a_transient_failure(cluster):
    run = run_tasks(die, [1], executor=cluster)  # retries = 1: two deaths, then recorded
    failure = run.results[0]
    assert isinstance(failure, TaskFailure) and failure.transient
    assert "KilledWorker" in failure.reason
    cluster.client.wait_for_workers(2, timeout=60)


def test_main_process_killed_leaves_no_orphans_and_rerun_submits_only_the_missing(tmp_path):
    store_dir, pid_file = tmp_path / "store", tmp_path / "workers.txt"
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, time
            from gapforge.executor import ExecutorSettings, JsonStore, open_executor, run_tasks

            def square(x):
                time.sleep(0.4)
                return x * x

            if __name__ == "__main__":
                with open_executor(ExecutorSettings.local(2)) as ex:
                    pids = ex.client.run(os.getpid).values()
                    open({str(pid_file)!r}, "w").write(" ".join(map(str, pids)))
                    run_tasks(square, range(16), executor=ex, key=str, store=JsonStore({str(store_dir)!r}))
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, cwd=tmp_path)
    store = JsonStore(store_dir)
    deadline = time.time() + 90
    while len(store.keys()) < 4 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    k = len(store.keys())
    assert 4 <= k < 16, k
    workers = [int(p) for p in pid_file.read_text().split()]
    deadline = time.time() + 30
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in workers):
        assert time.time() < deadline, "worker processes outlived their killed parent"
        time.sleep(0.2)

    calls = []
    rerun = run_tasks(
        lambda x: calls.append(x) or x * x,
        range(16),
        executor=ExecutorSettings.serial(),
        key=str,
        store=store,
    )
    assert rerun.reused == k and rerun.submitted == 16 - k == len(calls)
    assert rerun.results == [x * x for x in range(16)]  # equal to an uninterrupted run


def test_open_executor_reuses_the_open_one_and_deferred_starts_nothing_unused():
    with open_executor(ExecutorSettings.serial()) as outer, open_executor() as inner:
        assert inner is outer
    with open_executor(ExecutorSettings.local(2), deferred=True) as lazy:
        run = run_tasks(abs, [], executor=lazy)
        assert run.submitted == 0 and not lazy.opened  # no cluster for no work

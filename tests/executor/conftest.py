from __future__ import annotations

import sys
from pathlib import Path

import cloudpickle
import pytest

FILES = Path(__file__).resolve().parents[1] / "files" / "executor"


@pytest.fixture(scope="session")
def cluster():
    """A real LocalCluster, 2 workers x 1 thread, set up as gapforge sets up its own."""
    from gapforge.executor import ExecutorSettings, open_executor

    # not made current: tests elsewhere that pass no executor must not land on it
    with open_executor(ExecutorSettings.local(2), make_current=False) as executor:
        executor.client.wait_for_workers(2, timeout=60)
        yield executor


@pytest.fixture(autouse=True)
def _tasks_by_value():
    """Test modules are imported by path (importlib mode): ship their task functions by value."""
    for name, module in list(sys.modules.items()):
        if name.startswith(("test_", "tests.")) and "executor" in str(getattr(module, "__file__", "")):
            cloudpickle.register_pickle_by_value(module)
    yield


@pytest.fixture
def executor_files() -> Path:
    return FILES

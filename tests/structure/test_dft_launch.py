"""The DFT task on the executor: its time budget and an MPI launch command (a stand-in for srun)."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import psutil
import pytest

from gapforge.executor import ExecutorSettings
from gapforge.structure import dft
from gapforge.structure.dft import DFTSettings, collect_structures, dft_task, run_dft

FILES = Path(__file__).resolve().parents[1] / "files"
SI_CIF = FILES / "dft" / "Si.cif"
FAKE_MPIRUN = FILES / "executor" / "fake_mpirun.py"


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def test_time_budget_stops_every_rank(tmp_path, monkeypatch):
    """A launch whose rank hangs: the task returns 'timeout' on budget and no rank survives."""
    record = tmp_path / "launch.jsonl"
    monkeypatch.setenv("FAKE_MPIRUN_RECORD", str(record))
    item = collect_structures(SI_CIF)[0]
    launch = [sys.executable, str(FAKE_MPIRUN), "-n", "2", "--hang"]
    start = time.perf_counter()
    # long enough for the launcher to start its rank and say so on a loaded machine
    result = dft_task(item, DFTSettings(time_budget=6.0), launch=launch)
    assert result.status == dft.STATUS_TIMEOUT and not result.converged
    assert "time budget of 6 s exceeded" in result.message
    assert 6.0 <= time.perf_counter() - start < 30
    (rec,) = _records(record)
    assert rec["ranks"] == 2
    for pid in (rec["pid"], rec["rank_pid"]):  # the whole process group was stopped
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_rank_that_ignores_sigterm_is_killed(tmp_path, monkeypatch):
    """The launcher exits on SIGTERM but its rank ignores it: the group still ends (SIGKILL)."""
    record = tmp_path / "launch.jsonl"
    monkeypatch.setenv("FAKE_MPIRUN_RECORD", str(record))
    item = collect_structures(SI_CIF)[0]
    launch = [sys.executable, str(FAKE_MPIRUN), "-n", "2", "--hang", "--stubborn"]
    result = dft_task(item, DFTSettings(time_budget=4.0), launch=launch)
    assert result.status == dft.STATUS_TIMEOUT
    (rec,) = _records(record)
    rank = rec["rank_pid"]
    assert not psutil.pid_exists(rank) or psutil.Process(rank).status() == psutil.STATUS_ZOMBIE


def test_a_child_that_dies_is_an_error_with_its_reason(tmp_path):
    item = collect_structures(SI_CIF)[0]
    launch = [sys.executable, "-c", "import sys; sys.stderr.write('rank 0: out of memory\\n'); sys.exit(3)"]
    result = dft_task(item, DFTSettings(time_budget=60), launch=[*launch, "--"])
    assert result.status == dft.STATUS_ERROR
    assert "exited with code 3" in result.message and "out of memory" in result.message


@pytest.mark.slow
def test_mpi_launch_command_runs_gpaw_behind_the_launcher(tmp_path, monkeypatch):
    """``mpi = "... -n {cores}"`` with task_cores = 2: the stand-in launcher starts the real GPAW task."""
    pytest.importorskip("gpaw")
    record = tmp_path / "launch.jsonl"
    monkeypatch.setenv("FAKE_MPIRUN_RECORD", str(record))
    cifs = tmp_path / "cifs"
    cifs.mkdir()
    shutil.copy(SI_CIF, cifs / "Si.cif")
    executor = ExecutorSettings(
        kind="serial", mpi=f"{sys.executable} {FAKE_MPIRUN} -n {{cores}}", task_cores=2
    )
    cheap = DFTSettings(ecut=200.0, kpt_density=1.5, band_path_points=0, time_budget=600.0)
    table = run_dft(cifs, tmp_path / "out", settings=cheap, executor=executor)
    row = table.iloc[0]
    assert row[dft.STATUS] == "ok", row[dft.MESSAGE]
    assert 0.0 < row[dft.DFT_BAND_GAP] < 2.0  # silicon is a semiconductor at any cheap setting
    (rec,) = _records(record)
    assert rec["ranks"] == 2
    assert rec["command"][1:3] == ["-m", "gapforge.structure._dft_child"]
    assert (tmp_path / "out" / dft.LOG_DIR / "Si.txt").is_file()
    # cached by content: the rerun launches nothing
    again = run_dft(cifs, tmp_path / "out", settings=cheap, executor=executor)
    assert bool(again.iloc[0][dft.CACHED]) and len(_records(record)) == 1

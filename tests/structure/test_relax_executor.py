"""CHGNet relaxations as tasks: a local Dask cluster gives exactly the serial results."""

from __future__ import annotations

from pathlib import Path

import pytest
from pymatgen.core import Structure

from gapforge.executor import ExecutorSettings, TaskFailure
from gapforge.structure.relax import RelaxResult, RelaxSettings, run_relaxations

CIFS = sorted((Path(__file__).resolve().parents[1] / "files" / "executor").glob("*.cif"))


@pytest.mark.slow
def test_serial_and_local_cluster_relaxations_are_identical(tmp_path):
    structures = [Structure.from_file(p) for p in CIFS]
    settings = RelaxSettings(max_steps=15)
    serial = run_relaxations(structures, settings, executor=ExecutorSettings.serial())
    cache = tmp_path / "cache"
    local = run_relaxations(structures, settings, executor=ExecutorSettings.local(2), cache_dir=cache)
    assert len(serial) == len(local) == len(CIFS) == 4
    for a, b in zip(serial, local, strict=True):
        assert isinstance(a, RelaxResult) and isinstance(b, RelaxResult)
        assert a.energy_per_atom == b.energy_per_atom  # bit for bit: same threads, same model
        assert a.steps == b.steps and a.trajectory == b.trajectory
        assert a.final_structure == b.final_structure
    # the stored results come back unchanged, and nothing is recomputed
    again = run_relaxations(structures, settings, executor=ExecutorSettings.serial(), cache_dir=cache)
    assert [r.energy_per_atom for r in again] == [r.energy_per_atom for r in serial]
    assert [r.final_structure for r in again] == [r.final_structure for r in serial]
    assert not any(isinstance(r, TaskFailure) for r in again)

"""Executor settings: files, errors, the --workers rule, and the SLURM/PBS job scripts (offline)."""

from __future__ import annotations

import pytest

from gapforge.errors import DependencyError, InputError
from gapforge.executor import ExecutorKind, ExecutorSettings, job_script, load_executor_settings
from gapforge.executor.settings import available_cores


def test_workers_rule_and_defaults():
    assert ExecutorSettings().kind is ExecutorKind.LOCAL
    assert ExecutorSettings.from_workers(1).kind is ExecutorKind.SERIAL
    assert ExecutorSettings.from_workers(3) == ExecutorSettings.local(3)
    assert ExecutorSettings.from_workers(0).n_local_workers() == available_cores()
    assert ExecutorSettings(kind="pbs").kind is ExecutorKind.PBS
    with pytest.raises(InputError, match="unknown executor kind"):
        ExecutorSettings(kind="condor")
    with pytest.raises(InputError, match="needs an address"):
        ExecutorSettings(kind="dask")
    with pytest.raises(InputError, match=r"\{cores\}"):
        ExecutorSettings(mpi="srun -n 4")
    assert ExecutorSettings(mpi="srun -n {cores}", task_cores=4).launch_prefix() == ["srun", "-n", "4"]


@pytest.mark.parametrize("suffix", [".toml", ".json", ".yaml"])
def test_settings_file_section_or_top_level(tmp_path, suffix):
    body = {
        ".toml": '[executor]\nkind = "slurm"\nworkers = 8\ncores = 4\njob_extra = ["--exclusive"]\n',
        ".json": '{"kind": "slurm", "workers": 8, "cores": 4, "job_extra": ["--exclusive"]}',
        ".yaml": "executor:\n  kind: slurm\n  workers: 8\n  cores: 4\n  job_extra: [--exclusive]\n",
    }[suffix]
    path = tmp_path / f"ex{suffix}"
    path.write_text(body)
    got = load_executor_settings(path)
    assert got == ExecutorSettings(kind="slurm", workers=8, cores=4, job_extra=("--exclusive",))


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ('[executor]\nkind = "local"\nwokers = 2\n', "wokers"),
        ('[executor]\nkind = "condor"\n', "kind"),
        ("[executor]\nworkers = 0\n", "workers"),
        ('[executor]\nthreads = "two"\n', "threads"),
    ],
)
def test_bad_settings_file_is_one_line_naming_file_and_key(tmp_path, body, match):
    path = tmp_path / "ex.toml"
    path.write_text(body)
    with pytest.raises(InputError, match=match) as err:
        load_executor_settings(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_slurm_job_script_generated_offline():
    settings = ExecutorSettings(
        kind="slurm",
        workers=16,
        cores=8,
        memory="16GB",
        queue="normal",
        account="mat123",
        walltime="04:00:00",
        job_extra=("--constraint=cpu",),
        prologue=("module load gpaw",),
    )
    script = job_script(settings)
    for line in (
        "#SBATCH -p normal",
        "#SBATCH -A mat123",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH -t 04:00:00",
        "#SBATCH --constraint=cpu",
        "unset MALLOC_TRIM_THRESHOLD_",
        "export OMP_NUM_THREADS=1",
        "export OPENBLAS_NUM_THREADS=1",
        "module load gpaw",
    ):
        assert line in script, line
    assert "--nworkers 8" in script and "--nthreads 1" in script  # 8 one-thread workers per job
    assert "'MALLOC_TRIM_THRESHOLD_': None" in script  # the node's nanny drops Dask's 65536 too
    assert "export DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False" in script
    assert "distributed.cli.dask_worker" in script


def test_pbs_job_script_and_dft_cores_per_worker():
    script = job_script(ExecutorSettings(kind="pbs", cores=8, task_cores=4, queue="workq", memory="8GB"))
    assert "#PBS -q workq" in script and "ncpus=8" in script
    assert "--nworkers 2" in script  # 8 cores / 4 cores per DFT task


def test_batch_executor_needs_the_submit_command(monkeypatch):
    from gapforge.executor import open_executor

    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(DependencyError, match="sbatch"), open_executor(ExecutorSettings(kind="slurm")):
        pass

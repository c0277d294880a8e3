"""The [executor] section is read beside, never into, a run's scientific settings."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gapforge.discover.config import resolve_config, resolve_executor
from gapforge.errors import InputError
from gapforge.executor import ExecutorKind, ExecutorSettings


def test_executor_section_is_not_part_of_the_run_config(tmp_path):
    laptop = tmp_path / "laptop.toml"
    cluster = tmp_path / "cluster.toml"
    laptop.write_text('gap_min = 3.0\n[campaign]\niterations = 2\n[executor]\nkind = "local"\nworkers = 2\n')
    cluster.write_text(
        'gap_min = 3.0\n[campaign]\niterations = 2\n[executor]\nkind = "slurm"\ncores = 8\nqueue = "cpu"\n'
    )
    a, b = resolve_config(config_file=laptop), resolve_config(config_file=cluster)
    assert a.to_dict() == b.to_dict() and "executor" not in a.to_dict()  # same config.json: resumable
    assert resolve_executor(config_file=laptop) == ExecutorSettings.local(2)
    assert resolve_executor(config_file=cluster).kind is ExecutorKind.SLURM
    assert resolve_executor(config_file=cluster, executor_file=laptop).workers == 2  # --executor wins
    assert resolve_executor() == ExecutorSettings()  # the default: local, every core


def test_old_structure_workers_setting_points_to_the_executor(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text("gap_min = 3.0\n[structure]\nworkers = 2\n")
    with pytest.raises(InputError, match=r"\[executor\] section") as err:
        resolve_config(config_file=path)
    assert str(path) in str(err.value)


def test_bad_executor_section_names_the_file(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text('gap_min = 3.0\n[executor]\nkind = "kubernetes"\n')
    with pytest.raises(InputError, match="kind") as err:
        resolve_executor(config_file=path)
    assert str(path) in str(err.value)


def test_discover_dry_run_shows_the_executor_apart(tmp_path):
    from gapforge.cli import app

    ex = tmp_path / "ex.toml"
    ex.write_text('kind = "serial"\n')
    res = CliRunner().invoke(
        app,
        ["discover", "--out", str(tmp_path / "run"), "--gap-min", "3", "--dry-run", "--executor", str(ex)],
    )
    assert res.exit_code == 0, res.output
    assert "executor (not part of the run's settings): kind=serial" in res.output
    assert not (tmp_path / "run").exists()

"""Table 1's (experiment, repeat) pairs as tasks: rows independent of the worker count and of
interruptions; a rerun (here on another executor) runs only the missing pairs."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from gapforge.executor import ExecutorSettings
from gapforge.experiments import table1
from gapforge.experiments.table1 import Table1Settings

SMALL = Table1Settings(repeats=2, budget=20, q=20, experiments=("exp3",), pool_size=3000, n_estimators=10)
METRICS = ["experiment", "variant", "repeat", "samples", "r2_holdout", "r2_test", "mae", "candidates"]


@pytest.mark.data
@pytest.mark.slow
def test_repeats_as_tasks_resume_on_another_executor_with_equal_rows(real_data_env, tmp_path, caplog):
    out = tmp_path / "t1"
    full = table1.reproduce_table1(SMALL, out, executor=ExecutorSettings.local(2))
    assert len(full.runs) == 8  # 2 repeats x (BS, AL, RND-latent, RND-known)
    runs_path = out / "runs.csv"
    runs = pd.read_csv(runs_path)
    runs[runs["repeat"] == 0].to_csv(runs_path, index=False)  # as if killed during repeat 1
    with caplog.at_level(logging.INFO, logger="gapforge.experiments.table1"):
        again = table1.reproduce_table1(SMALL, out, executor=ExecutorSettings.local(1))
    assert "table 1: 1 (experiment, repeat) tasks to run" in caplog.text
    # the workers start with one BLAS/OpenMP thread whatever their number: same numbers
    pd.testing.assert_frame_equal(again.runs[METRICS], full.runs[METRICS])

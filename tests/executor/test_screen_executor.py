"""Prediction batches of the screen as tasks: the same table as in this process."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from gapforge.screening.screen import ScreenSettings, screen_file
from gapforge.window import GapWindow

FILES = Path(__file__).resolve().parents[1] / "files"
FORMULAS = ["RbF", "CsF", "LiF", "KMgF3", "GaAs", "Xx2", "NaCl2", "SrYF5", "MgO", "AlN", "BN", "ZnS"]


@pytest.mark.slow  # 20-100 s on the shared 2 cores (a forest fitted, loaded by both workers)
def test_screen_batches_on_workers_match_in_process(tmp_path, cluster):
    from gapforge.models.forest import ForestModel

    df = pd.read_csv(FILES / "gaps_small.csv", keep_default_na=False, na_values=[])
    model = ForestModel(n_estimators=10, n_jobs=1, random_state=0).fit(df["composition"].tolist(), df["Eg"])
    model_dir = model.save(tmp_path / "forest")
    src = tmp_path / "gen.csv"
    pd.DataFrame({"formula": FORMULAS}).to_csv(src, index=False)
    settings = ScreenSettings(window=GapWindow(3.0), batch_size=3)  # 4 batches
    here = screen_file(src, tmp_path / "a.csv", model=str(model_dir), settings=settings, known={"LiF"})
    there = screen_file(
        src, tmp_path / "b.csv", model=str(model_dir), settings=settings, known={"LiF"}, executor=cluster
    )
    pd.testing.assert_frame_equal(here.table, there.table)
    assert here.n_candidates == there.n_candidates > 0


@pytest.mark.slow  # a forest loaded by both workers of the shared cluster
def test_discover_screen_stage_predicts_on_the_open_executor(tmp_path, cluster, monkeypatch, caplog):
    import logging

    from gapforge.discover import layout as L
    from gapforge.discover import stages
    from gapforge.discover.config import DiscoverConfig, resolve_config
    from gapforge.executor import open_executor
    from gapforge.models.forest import ForestModel

    monkeypatch.setattr(stages, "SCREEN_MIN_BATCH", 3)  # 12 formulas -> 4 batches
    df = pd.read_csv(FILES / "gaps_small.csv", keep_default_na=False, na_values=[])
    model = ForestModel(n_estimators=10, n_jobs=1, random_state=0).fit(df["composition"].tolist(), df["Eg"])
    known = tmp_path / "known.csv"
    pd.DataFrame({"formula": ["LiF"]}).to_csv(known, index=False)
    base = resolve_config(gap_min=3.0, quick=True).to_dict()
    base["data"].update({"dataset": str(FILES / "gaps_small.csv"), "known": str(known)})
    base["screening_model"]["kind"] = "forest"
    cfg = DiscoverConfig.from_dict(base)
    tables = []
    for name, where in (("here", None), ("workers", cluster)):
        run = tmp_path / name
        model.save(run / L.SCREENING_MODEL_DIR)
        (run / "generate").mkdir(parents=True)
        pd.DataFrame({"formula": FORMULAS}).to_parquet(run / L.GENERATED)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="gapforge.executor.tasks"):
            if where is None:
                stages.stage_screen(run, cfg)
            else:
                with open_executor(where):  # as discover() makes its executor the current one
                    stages.stage_screen(run, cfg)
        ran_as_tasks = "predict: 4 items, 0 reused, 4 computed" in caplog.text
        assert ran_as_tasks == (where is not None)
        tables.append(pd.read_parquet(run / L.SCREENED))
    pd.testing.assert_frame_equal(tables[0], tables[1])
    assert tables[1]["candidate"].sum() > 0


@pytest.mark.parametrize(("flag", "level"), [("", "WARNING"), ("--verbose", "DEBUG")])
def test_cli_keeps_dask_routine_messages_off_the_console(flag, level):
    """distributed sets its loggers from dask's config when first imported: after the CLI's callback
    (the executor imports it lazily), which used to put 'INFO distributed.scheduler: ...' lines
    into every discover run's console."""
    import subprocess
    import sys

    code = (
        "import logging; from gapforge.cli._app import _root; "
        f"_root(verbose={flag == '--verbose'}, quiet=False); import distributed; "
        "print(logging.getLevelName(logging.getLogger('distributed.scheduler').getEffectiveLevel()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [level]

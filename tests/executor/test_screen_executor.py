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

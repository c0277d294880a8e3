"""The rediscovery benchmark as executor tasks: the same table in this process and on a real
LocalCluster (2 workers x 1 thread), and a resumed run submits only what is missing."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

from gapforge import columns as C
from gapforge.errors import InputError
from gapforge.executor import ExecutorSettings
from gapforge.experiments.rediscovery import (
    CHEMSYS,
    RediscoverySettings,
    chemical_system,
    collect_runs,
    run_rediscovery,
)

#: One draw of two targets with tiny budgets (about 10 s in one process).
TINY = RediscoverySettings(
    draws=1,
    holdout_fraction=0.2,
    targets=((4.0, None), (2.0, 3.0)),
    generator_epochs=1,
    oracle_estimators=5,
    n_samples=300,
    campaign_iterations=1,
    campaign_batch=2,
    screening_estimators=5,
)


def _known() -> pd.DataFrame:
    from gapforge.data import load_dataset

    mp = load_dataset("mp-bandgap")[[C.FORMULA, C.BAND_GAP]]
    known = mp.sample(n=3000, random_state=0).sort_values(C.FORMULA).reset_index(drop=True)
    known[CHEMSYS] = [chemical_system(f) for f in known[C.FORMULA]]
    return known


def _table(out) -> pd.DataFrame:
    rows = collect_runs(out)
    rows = rows.drop(columns=[c for c in rows.columns if c.endswith("seconds")])
    rows["top10"] = rows["top10"].map(tuple)
    rows["top10_hits"] = rows["top10_hits"].map(tuple)
    return rows.sort_values(["draw", "target", "variant"]).reset_index(drop=True)


def _oracle_scores(out, draw: int) -> dict:
    info = json.loads((out / "runs" / f"draw{draw}_info.json").read_text())
    return {k: v for k, v in info["oracle"].items() if k != "fit_seconds"}


@pytest.mark.data
@pytest.mark.slow
def test_rediscovery_serial_and_cluster_equal_and_resume_submits_only_missing(
    real_data_env, cluster, tmp_path, caplog
):
    known = _known()
    serial = run_rediscovery(TINY, tmp_path / "serial", executor=ExecutorSettings.serial(), known=known)
    assert len(serial) == 2 * 5  # 1 draw x 2 targets x 5 variants
    assert (serial["n_pool"] > 0).all()
    on_cluster = run_rediscovery(TINY, tmp_path / "cluster", executor=cluster, known=known)
    pd.testing.assert_frame_equal(_table(tmp_path / "cluster"), _table(tmp_path / "serial"))
    assert _oracle_scores(tmp_path / "cluster", 0) == _oracle_scores(tmp_path / "serial", 0)
    assert len(on_cluster) == len(serial)

    # as if the main process had been killed before the 2-3 eV task reported back
    out = tmp_path / "cluster"
    for path in (out / "work" / "tasks").glob("window-*.json"):
        if json.loads(path.read_text())["result"]["rows"][0]["window"] == "2-3":
            path.unlink()
    for path in (out / "runs").glob("draw0_2-3_*.json"):
        path.unlink()
    with caplog.at_level(logging.INFO, logger="gapforge.executor.tasks"):
        run_rediscovery(TINY, out, executor=ExecutorSettings.serial(), known=known)
    assert "rediscovery models: 2 items, 2 reused, 0 computed" in caplog.text
    assert "rediscovery draws x targets: 2 items, 1 reused, 1 computed" in caplog.text
    pd.testing.assert_frame_equal(_table(out), _table(tmp_path / "serial"))

    # one output directory, one set of settings
    other = RediscoverySettings(**{**TINY.__dict__, "n_samples": 400})
    with pytest.raises(InputError, match="other settings"):
        run_rediscovery(other, out, executor=ExecutorSettings.serial(), known=known)

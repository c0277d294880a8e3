"""The campaign loop: a few iterations on tiny data, kill + resume, ask/tell, state files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.active.conftest import GAPS, campaign_config, write_config
from typer.testing import CliRunner

from gapforge.active import Campaign, TableOracle, parse_config
from gapforge.active.state import CampaignState
from gapforge.cli import app

CLI = [sys.executable, "-c", "from gapforge.cli import main; main()"]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture
def model_cfg(forest_dir) -> dict:
    return campaign_config({"kind": "model", "model": str(forest_dir)})


def test_campaign_runs_a_few_iterations(model_cfg, tmp_path):
    camp = Campaign.create(parse_config(model_cfg), tmp_path / "run")
    result = camp.run(progress=False)
    it = result.iterations
    assert it["iteration"].tolist() == [1, 2, 3, 4]
    assert (it["n_proposed"] == 2).all()
    # every slot is accounted for exactly once
    assert (it["n_invalid"] + it["n_duplicate"] + it["n_new"] == it["n_proposed"]).all()
    assert (it["n_labelled"] + it["n_unlabelled"] == it["n_new"]).all()
    lab = result.labelled
    assert (lab["source"] == "initial").sum() == 20
    assert len(lab) == 20 + it["n_labelled"].sum()
    assert lab["formula"].is_unique
    new = lab[lab["source"] != "initial"]
    assert len(new) > 0 and np.isfinite(new["band_gap"]).all()
    # best-so-far never decreases and is the labelled maximum
    assert (np.diff(it["best_gap"]) >= 0).all()
    assert it["best_gap"].iloc[-1] == pytest.approx(lab["band_gap"].max())
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["iteration"] == 4 and state["status"] == "done"
    for name in (
        "config.json",
        "labelled.parquet",
        "proposals.parquet",
        "iterations.json",
        "codec/codec.npz",
    ):
        assert (tmp_path / "run" / name).is_file()
    summary = result.summary()
    assert summary["proposed"] == 8 and 0 <= summary["valid_decode_rate"] <= 1


def test_same_seed_same_campaign_and_resume_in_process(model_cfg, tmp_path):
    cfg = parse_config(model_cfg)
    full = Campaign.create(cfg, tmp_path / "a").run(progress=False)
    part = Campaign.create(cfg, tmp_path / "b")
    part.run(iterations=2, progress=False)
    again = Campaign.open(tmp_path / "b").run(progress=False)
    pd.testing.assert_frame_equal(full.labelled, again.labelled)
    assert full.proposals["formula"].tolist() == again.proposals["formula"].tolist()


def test_uncommitted_iteration_is_dropped_on_load(model_cfg, tmp_path):
    camp = Campaign.create(parse_config(model_cfg), tmp_path / "run")
    camp.run(iterations=2, progress=False)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    # simulate a crash after the tables of iteration 3 were written but before state.json
    lab = pd.read_parquet(tmp_path / "run" / "labelled.parquet")
    ghost = pd.DataFrame(
        {"formula": ["Zz"], "band_gap": [1.0], "objective": [1.0], "source": ["x"], "iteration": [3]}
    )
    pd.concat([lab, ghost]).to_parquet(tmp_path / "run" / "labelled.parquet")
    loaded = CampaignState.load(tmp_path / "run")
    assert loaded.iteration == state["iteration"] == 2
    assert "Zz" not in set(loaded.labelled["formula"])
    assert len(loaded.labelled) == len(lab)


def _wait_for_iteration(run: Path, n: int, proc: subprocess.Popen, timeout: float = 400) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            if json.loads((run / "state.json").read_text())["iteration"] >= n:
                return
        except (OSError, ValueError):
            pass
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "campaign exited early"
        time.sleep(0.05)
    raise TimeoutError(f"iteration {n} not reached")


@pytest.mark.slow
def test_sigkill_mid_campaign_then_resume_gives_the_same_labelled_set(model_cfg, tmp_path):
    # enough iterations that the kill lands mid-campaign: an iteration on this tiny problem takes
    # well under a second since warm GP refits became cheap (5 iterations could all finish
    # between two polls)
    n_iter = 30
    cfg = write_config(tmp_path / "c.json", {**model_cfg, "iterations": n_iter})
    ref = subprocess.run(  # noqa: PLW1510 (return code asserted)
        [*CLI, "campaign", "run", "--config", str(cfg), "--out", str(tmp_path / "ref")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ref.returncode == 0, ref.stderr
    run = tmp_path / "killed"
    proc = subprocess.Popen(
        [*CLI, "campaign", "run", "--config", str(cfg), "--out", str(run)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_iteration(run, 2, proc)
        proc.send_signal(signal.SIGKILL)  # inside iteration 3 or a little later
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    done = json.loads((run / "state.json").read_text())["iteration"]
    assert 2 <= done < n_iter
    res = subprocess.run(  # noqa: PLW1510 (return code asserted)
        [*CLI, "campaign", "resume", str(run)], env=_env(), capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr
    a = pd.read_parquet(tmp_path / "ref" / "labelled.parquet")
    b = pd.read_parquet(run / "labelled.parquet")
    pd.testing.assert_frame_equal(a, b)
    pa = pd.read_parquet(tmp_path / "ref" / "proposals.parquet")
    pb = pd.read_parquet(run / "proposals.parquet")
    assert pa["formula"].tolist() == pb["formula"].tolist()
    assert json.loads((run / "iterations.json").read_text())[-1]["iteration"] == n_iter


def test_ask_tell_with_an_external_oracle(tmp_path, gap_table):
    cfg = write_config(tmp_path / "c.json", campaign_config({"kind": "external"}, iterations=2))
    run = tmp_path / "run"
    runner = CliRunner()
    res = runner.invoke(app, ["campaign", "run", "--config", str(cfg), "--out", str(run)])
    assert res.exit_code == 0, res.output
    pending = pd.read_csv(run / "pending.csv", keep_default_na=False, na_values=[""])
    assert len(pending) >= 1 and pending["band_gap"].isna().all()
    again = runner.invoke(app, ["campaign", "ask", str(run)])
    assert again.exit_code == 0
    assert [line for line in again.stdout.splitlines() if line] == pending["formula"].tolist()
    # the lab measures the first formula only, plus one formula nobody asked for
    measured = pd.DataFrame({"composition": [pending["formula"][0], "GaN"], "Eg": [3.25, 3.4]})
    measured.to_csv(tmp_path / "labels.csv", index=False)
    res = runner.invoke(app, ["campaign", "tell", str(run), "--input", str(tmp_path / "labels.csv")])
    assert res.exit_code == 0, res.output
    lab = pd.read_parquet(run / "labelled.parquet")
    got = dict(zip(lab["formula"], lab["band_gap"], strict=True))
    assert got[pending["formula"][0]] == 3.25
    assert not (run / "pending.csv").exists()
    assert json.loads((run / "state.json").read_text())["iteration"] == 1
    # telling without pending proposals is a clear error
    res = runner.invoke(app, ["campaign", "tell", str(run), "--input", str(tmp_path / "labels.csv")])
    assert res.exit_code != 0 and "no pending proposals" in str(res.exception)


def test_tell_rejects_a_bad_gap_and_keeps_the_pending_batch(tmp_path):
    cfg = parse_config(campaign_config({"kind": "external"}))
    camp = Campaign.create(cfg, tmp_path / "run")
    asked = camp.ask()
    bad = pd.DataFrame({"formula": [asked["formula"][0]], "band_gap": ["-1"]})
    with pytest.raises(Exception, match="non-negative"):
        Campaign.open(tmp_path / "run").tell(bad, path="labels.csv")
    reopened = Campaign.open(tmp_path / "run")
    assert reopened.state.pending is not None
    assert reopened.ask()["formula"].tolist() == asked["formula"].tolist()


def test_window_goal_with_a_table_oracle(tmp_path, gap_table):
    cfg = parse_config(
        campaign_config({"kind": "table", "path": str(GAPS)}, goal={"kind": "window", "window": [2.0, 3.0]})
    )
    result = Campaign.create(cfg, None).run(progress=False)
    lab = result.labelled
    assert np.allclose(
        lab["objective"], -np.clip(2.0 - lab["band_gap"], 0, None) - np.clip(lab["band_gap"] - 3.0, 0, None)
    )
    it = result.iterations
    assert it["n_hits"].iloc[-1] == int(((lab["band_gap"] >= 2) & (lab["band_gap"] <= 3)).sum())
    # the table oracle labels only formulas it knows; others are unlabelled and never proposed twice
    props = result.proposals
    unl = props[props["status"] == "unlabelled"]["formula"]
    assert unl.is_unique
    assert set(lab["formula"]) <= set(gap_table["formula"])


def test_random_acquisition_control_and_existing_run(model_cfg, tmp_path):
    cfg = parse_config({**model_cfg, "acquisition": {"kind": "random", "q": 3}, "iterations": 2})
    result = Campaign.create(cfg, tmp_path / "r").run(progress=False)
    assert result.iterations["fit_seconds"].max() < 0.5  # no GP is fitted for the random control
    with pytest.raises(Exception, match="already exists"):
        Campaign.create(cfg, tmp_path / "r")
    Campaign.create(cfg, tmp_path / "r", overwrite=True)


def test_table_oracle_labels_known_formulas_only(gap_table):
    oracle = TableOracle(gap_table)
    got = oracle.label(["LiF", "Unobtainium", "NaCl"])
    assert got[0] == 8.72 and np.isnan(got[1]) and got[2] == 5.0


def test_smact_validity_counts_charge_imbalanced_decodes_as_invalid(model_cfg, tmp_path):
    from gapforge.encoding import FormulaEncoder
    from gapforge.screening.validity import SmactChecker

    base = {
        **model_cfg,
        "acquisition": {"kind": "random", "q": 8},
        "iterations": 3,
        "validity": "decodable",  # the paper's rule
        "compounds": "any",
        "exclude_elements": [],
    }
    plain = Campaign.create(parse_config(base), tmp_path / "plain").run(progress=False)
    strict = Campaign.create(parse_config({**base, "validity": "smact"}), tmp_path / "smact").run(
        progress=False
    )
    check = SmactChecker(FormulaEncoder().elements).check_formulas
    # the same random latent points: what the plain run labels SMACT-invalid, the strict run refuses
    plain_new = plain.labelled[plain.labelled["source"] != "initial"]["formula"].tolist()
    assert not check(plain_new).all()  # the linear codec decodes some charge-imbalanced formulas
    strict_new = strict.labelled[strict.labelled["source"] != "initial"]["formula"].tolist()
    assert check(strict_new).all()
    assert strict.iterations["n_invalid"].sum() > plain.iterations["n_invalid"].sum()
    with pytest.raises(Exception, match="validity"):
        parse_config({**base, "validity": "pauling"})

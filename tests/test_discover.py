"""`gapforge discover`: settings (presets, files, checks), the CLI, and the real data stage."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gapforge.cli import app
from gapforge.cli.cmd_discover import STAGE_NAMES as CLI_STAGE_NAMES
from gapforge.discover.config import (
    QUICK_PRESET,
    DiscoverConfig,
    config_differences,
    read_config_file,
    resolve_config,
)
from gapforge.discover.stages import DISCOVER_STAGES
from gapforge.errors import InputError
from gapforge.window import GapWindow

runner = CliRunner()

# the stage names --until and --redo accept, as the command line declares them
STAGE_NAMES = list(CLI_STAGE_NAMES)


# -- settings -------------------------------------------------------------------------------
def test_default_and_quick_presets():
    real = resolve_config(gap_min=6.0)
    quick = resolve_config(gap_min=6.0, quick=True)
    assert real.preset == "default" and quick.preset == "quick"
    assert real.window == GapWindow(6.0) and real.window.open and real.window.upper == float("inf")
    assert real.campaign.iterations == 100 and real.campaign.batch_size == 10  # the paper's 1000 BO samples
    assert real.generate.n_samples == 1_000_000
    for section, values in QUICK_PRESET.items():
        for key, value in values.items():
            assert getattr(getattr(quick, section), key) == value
    assert quick.campaign.iterations < real.campaign.iterations
    assert quick.generate.n_samples < real.generate.n_samples
    assert str(quick.window) == "≥ 6.00 eV"
    assert str(resolve_config(gap_min=2.0, gap_max=3.5).window) == "2.00–3.50 eV"


@pytest.mark.parametrize("suffix", [".toml", ".json", ".yaml"])
def test_settings_file_overrides_preset_and_flags_override_file(tmp_path, suffix):
    text = {
        ".toml": "gap_min = 2.5\ngap_max = 3.5\nseed = 4\n"
        "[campaign]\niterations = 7\n[screen]\nmax_std = 0.8\n",
        ".json": json.dumps(
            {
                "gap_min": 2.5,
                "gap_max": 3.5,
                "seed": 4,
                "campaign": {"iterations": 7},
                "screen": {"max_std": 0.8},
            }
        ),
        ".yaml": "gap_min: 2.5\ngap_max: 3.5\nseed: 4\ncampaign:\n  iterations: 7\nscreen:\n  max_std: 0.8\n",
    }[suffix]
    path = tmp_path / f"settings{suffix}"
    path.write_text(text)
    cfg = resolve_config(config_file=path, quick=True)
    assert (cfg.window, cfg.seed) == (GapWindow(2.5, 3.5), 4)
    assert cfg.campaign.iterations == 7  # file beats the preset
    assert cfg.campaign.batch_size == QUICK_PRESET["campaign"]["batch_size"]  # preset kept elsewhere
    assert cfg.screen.max_std == 0.8
    cfg2 = resolve_config(config_file=path, gap_min=3.0, seed=9)
    assert (cfg2.window, cfg2.seed, cfg2.preset) == (GapWindow(3.0, 3.5), 9, "default")


def test_round_trip_through_dict():
    cfg = resolve_config(gap_min=1.5, gap_max=2.0, quick=True, seed=3)
    again = DiscoverConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert config_differences(cfg.to_dict(), again.to_dict()) == []
    other = resolve_config(gap_min=1.5, gap_max=2.0, quick=True, seed=4)
    assert config_differences(cfg.to_dict(), other.to_dict()) == ["seed"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gap_min = 3\n[campaign]\niteratons = 3\n", "unknown setting.*campaign.iteratons"),
        ("gap_min = 3\n[campaign]\niterations = 'many'\n", "campaign.iterations must be int"),
        ("gap_min = 3\n[campaign]\niterations = 2.5\n", "campaign.iterations must be int"),
        ("gap_min = 3\n[screen]\nrequire_smact = 1\n", "screen.require_smact must be bool"),
        ("gap_min = 3\ngap_max = 2\n", "gap_max must be above gap_min"),
        ("gap_min = -1\n", "gap_min must be a band gap"),
        ("gap_min = 3\n[campaign]\nbatch_size = 0\n", "campaign.batch_size must be > 0"),
        ("gap_min = 3\n[screening_model]\nkind = 'svm'\n", "screening_model.kind"),
        (
            "gap_min = 3\n[campaign]\nvalidity = 'pauling'\n",
            "campaign.validity must be 'smact' or 'decodable'",
        ),
        (
            "gap_min = 3\n[structure]\nselection_energy = 'mace'\n",
            "structure.selection_energy must be chgnet or sevennet-0 or sevennet-l3i5",
        ),
        (
            "gap_min = 3\n[structure]\nvolume_method = 'dls'\n",
            "structure.volume_method must be rls, increments, none",
        ),
        ("gap_min = 3\npreset = 'fast'\n", "unknown preset"),
        ("gap_min = 3\ncampaign = 5\n", "must be a table of settings"),
        ("gap_min = [", "cannot parse settings file"),
    ],
)
def test_bad_settings_give_one_line_errors_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as info:
        resolve_config(config_file=path)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(f"{path}: ")


def test_missing_gap_and_missing_or_odd_files(tmp_path):
    with pytest.raises(InputError, match="no target band gap"):
        resolve_config()
    with pytest.raises(InputError, match="settings file not found"):
        read_config_file(tmp_path / "none.toml")
    odd = tmp_path / "settings.ini"
    odd.write_text("[x]\n")
    with pytest.raises(InputError, match="unsupported settings file"):
        read_config_file(odd)
    listy = tmp_path / "list.json"
    listy.write_text("[1, 2]")
    with pytest.raises(InputError, match="must hold a mapping"):
        read_config_file(listy)


# -- the stage list -------------------------------------------------------------------------
def test_the_pipeline_has_every_stage_in_order():
    # the command line's list (--until, --redo) is the pipeline's, in its order
    assert [s.name for s in DISCOVER_STAGES] == STAGE_NAMES
    assert STAGE_NAMES[0] == "data" and STAGE_NAMES[-1] == "report" and len(set(STAGE_NAMES)) == 12
    assert all(s.description for s in DISCOVER_STAGES)
    assert [s.name for s in DISCOVER_STAGES if s.resumable] == ["campaign"]


def test_dft_stage_is_skipped_with_a_reason_when_disabled(tmp_path):
    from gapforge.discover.engine import run_pipeline

    dft = next(s for s in DISCOVER_STAGES if s.name == "dft")
    cfg = resolve_config(gap_min=6.0, quick=True)  # quick: dft disabled
    result = run_pipeline(tmp_path / "run", cfg, [dft], progress=False)
    assert result.record("dft").status == "skipped"
    assert "dft.enabled = false" in result.record("dft").reason


def test_dft_stage_without_gpaw_or_structures_is_skipped(tmp_path):
    from gapforge.discover.engine import run_pipeline
    from gapforge.structure.dft import gpaw_available

    dft = next(s for s in DISCOVER_STAGES if s.name == "dft")
    cfg = resolve_config(gap_min=6.0)  # default: dft enabled
    result = run_pipeline(tmp_path / "run", cfg, [dft], progress=False)
    rec = result.record("dft")
    assert rec.status == "skipped"
    expected = "no relaxed structures" if gpaw_available() else "GPAW is not installed"
    assert expected in rec.reason


# -- the command line -----------------------------------------------------------------------
def test_cli_dry_run_prints_resolved_settings_and_stages(tmp_path):
    result = runner.invoke(
        app,
        [
            "discover",
            "--gap-min",
            "3",
            "--gap-max",
            "4",
            "--quick",
            "--dry-run",
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code == 0, result.output
    text = result.output
    settings = json.loads(text[: text.rindex("}") + 1])
    assert settings["gap_min"] == 3.0 and settings["gap_max"] == 4.0 and settings["preset"] == "quick"
    for name in STAGE_NAMES:
        assert f"\n{name} " in text
    assert not (tmp_path / "run").exists()


def _gapforge(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "gapforge", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
        check=False,
    )


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("gap_min = 3\n[screen]\ntop = -4\n")
    res = _gapforge("discover", "--config", str(bad), "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0
    assert res.stderr.startswith("error: ") and "screen.top must be > 0" in res.stderr
    res = _gapforge("report", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert res.returncode == 2
    assert "run directory not found" in res.stderr and res.stderr.strip().count("\n") == 0


@pytest.mark.data
def test_cli_runs_the_real_data_stage_then_resumes(tmp_path, real_data_env):
    out = tmp_path / "run"
    args = ["discover", "--gap-min", "6", "--quick", "--until", "data", "--out", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "data             done" in res.output
    initial = json.loads((out / "stages" / "data.json").read_text())["summary"]
    assert initial["n_dataset"] == 42669
    assert initial["n_initial"] == QUICK_PRESET["data"]["n_initial"]
    assert initial["n_holdout"] == QUICK_PRESET["data"]["n_holdout"]
    from gapforge.io import read_table

    init = read_table(out / "data" / "initial.csv")
    hold = read_table(out / "data" / "holdout.csv")
    assert len(init) == 300 and len(hold) == 500
    assert not set(init["formula"]) & set(hold["formula"])
    assert set(init.columns) >= {"formula", "band_gap", "source", "iteration"}
    res = runner.invoke(app, args)
    assert "data             cached" in res.output
    # another seed into the same directory is refused
    res = _gapforge(*args, "--seed", "5", cwd=tmp_path)
    assert res.returncode == 2 and "different configuration (differs in seed)" in res.stderr


# -- the real stages ------------------------------------------------------------------------
def _shipped_models_or_skip() -> None:
    from gapforge.errors import ModelError
    from gapforge.models.base import resolve_model_dir

    for name in ("oracle", "autoencoder", "gan"):
        try:
            resolve_model_dir("default", name)
        except ModelError as exc:
            pytest.skip(f"shipped model missing: {exc}")


@pytest.mark.slow
@pytest.mark.data
def test_real_stages_up_to_the_screen_then_resume(tmp_path, real_data_env):
    """Data, oracle, autoencoder, campaign, screening model, generate and screen, with tiny budgets."""
    _shipped_models_or_skip()
    from gapforge.discover import discover
    from gapforge.io import read_table

    settings = tmp_path / "tiny.toml"
    settings.write_text(
        "[data]\nn_initial = 40\nn_holdout = 60\n"
        "[campaign]\niterations = 2\nbatch_size = 2\nn_pool = 50\n"
        "[screening_model]\nkind = 'forest'\nn_estimators = 20\n"  # the paper's route
        "[generate]\nn_samples = 3000\n"
        "[screen]\nrequire_smact = false\nrequire_novel = false\ntop = 5\n"
    )
    cfg = resolve_config(gap_min=1.0, quick=True, config_file=settings)
    out = tmp_path / "run"
    result = discover(out, cfg, until="screen", progress=False)
    statuses = {r.name: r.status for r in result.stages}
    assert [statuses[n] for n in STAGE_NAMES[:7]] == ["done"] * 7
    assert [statuses[n] for n in STAGE_NAMES[7:]] == ["pending"] * 5

    it = read_table(out / "campaign" / "iterations.csv")
    assert it["iteration"].tolist() == [1, 2]
    assert (it["n_proposed"] == 2).all()
    assert ((it["valid_rate"] >= 0) & (it["valid_rate"] <= 1)).all()
    assert it["best_so_far"].is_monotonic_increasing
    labelled = read_table(out / "campaign" / "labelled.csv")
    assert (labelled["source"] == "initial").sum() == 40
    from gapforge.encoding import FormulaEncoder
    from gapforge.screening.validity import SmactChecker

    proposed = labelled.loc[labelled["source"] != "initial", "formula"].tolist()
    assert SmactChecker(FormulaEncoder().elements).check_formulas(proposed).all()  # validity: smact
    assert len(labelled) == (labelled["source"] == "initial").sum() + it["n_new"].sum()
    lm = read_table(out / "campaign" / "latent_map.csv")
    assert set(lm["kind"]) <= {"labelled", "proposal"} and {"x", "y"} <= set(lm.columns)
    parity = read_table(out / "screening_model" / "parity.csv")
    assert len(parity) == 60
    metrics = json.loads((out / "screening_model" / "metrics.json").read_text())
    assert metrics["n_train"] == len(labelled)
    stats = json.loads((out / "generate" / "stats.json").read_text())
    assert stats["n_samples"] == 3000 and 0 < stats["n_unique"] <= stats["n_decodable"] <= 3000
    assert stats["kind"] == "rnn-generator" and stats["decode_rule"] == "sample"  # the default generator
    funnel = json.loads((out / "screen" / "funnel.json").read_text())["steps"]
    for a, b in itertools.pairwise(funnel):
        assert b["n_in"] == a["n_out"]
    cand = read_table(out / "screen" / "candidates.csv")
    assert len(cand) <= 5 and (cand["band_gap_mean"] >= 1.0).all()
    assert cand["rank"].tolist() == list(range(1, len(cand) + 1))

    again = discover(out, cfg, until="screen", progress=False)
    assert [r.status for r in again.stages[:7]] == ["cached"] * 7


# -- stage functions on hand-made tables -----------------------------------------------------
def test_iteration_table_from_campaign_records():
    import numpy as np
    import pandas as pd

    from gapforge.discover.stages import _iteration_table

    records = pd.DataFrame(
        {
            "iteration": [1, 2],
            "n_proposed": [4, 4],
            "n_valid_first": [2, 3],
            "n_valid": [3, 4],
            "n_duplicate": [1, 0],
            "n_labelled": [2, 3],
            "best_gap": [5.0, 6.5],
            "best_formula": ["AlN", "LiF"],
            "n_hits": [0, 1],
            "fit_seconds": [0.5, 0.6],
            "acquisition_seconds": [1.0, 1.1],
        }
    )
    proposals = pd.DataFrame(
        {
            "iteration": [1, 1, 1, 2, 2],
            "formula": ["AlN", "GaN", "", "LiF", "NaF"],
            "status": ["labelled", "labelled", "invalid", "labelled", "labelled"],
            "band_gap": [5.0, 3.1, np.nan, 6.5, 6.0],
        }
    )
    it = _iteration_table(records, proposals)
    assert it["valid_rate"].tolist() == [0.75, 1.0]
    assert it["valid_first_rate"].tolist() == [0.5, 0.75]
    assert it["best_gap"].tolist() == [5.0, 6.5]  # best new label of each iteration
    assert it["best_so_far"].tolist() == [5.0, 6.5]
    assert it["n_new"].tolist() == [2, 3] and it["n_new_cumulative"].tolist() == [2, 5]


def test_stability_and_report_stages_on_a_hand_made_run(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "report_fixtures", Path(__file__).parent / "report" / "conftest.py"
    )
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    from gapforge.discover.engine import StageSkipped
    from gapforge.discover.stages import stage_report, stage_stability, stage_structure
    from gapforge.io import read_table

    run = fixtures.write_run(tmp_path / "run")
    cfg = resolve_config(gap_min=6.0, quick=True)
    summary = stage_stability(run, cfg)
    assert summary == {
        "n_candidates": 4,
        "n_negative_formation": 1,
        "n_within_0.1": 1,
        "n_below_known_hull": 0,
        "top": "LiF",
    }
    table = read_table(run / "stability" / "discoveries.csv")
    assert table["formula"].tolist() == ["LiF", "SrYF5", "MgF2", "KAlF4"]
    summary = stage_report(run, cfg)
    assert summary["report"] == "report.html" and summary["bytes"] > 10_000
    # no candidates: the structure stage skips with the reason
    read_table(run / "screen" / "candidates.csv").head(0).to_csv(
        run / "screen" / "candidates.csv", index=False
    )
    with pytest.raises(StageSkipped, match="no candidate passed the screen"):
        stage_structure(run, cfg)


def test_discoveries_rank_by_probability_in_window_and_stable():
    import numpy as np
    import pandas as pd

    from gapforge import columns as C
    from gapforge.discover.layout import rank_discoveries
    from gapforge.structure.stability import p_stable

    table = pd.DataFrame(
        {
            C.FORMULA: ["A2O", "B2O", "C2O", "D2O", "E2O", "F2O"],
            C.P_IN_WINDOW: [0.50, 0.99, 0.50, 0.99, 0.30, 0.999],
            C.E_ABOVE_HULL: [0.00, 0.20, 0.01, np.nan, 0.00, 0.96],
            "rank": [1, 2, 3, 4, 5, 6],
        }
    )
    ranked = rank_discoveries(table)
    ps = p_stable(np.array([0.00, 0.20, 0.01, 0.96]))
    # P(stable) falls with the energy above hull and is NaN where it is unknown
    assert ps[0] > ps[2] > ps[1] > 0.5
    assert ps[3] < 0.05
    joint = dict(
        zip(
            ["A2O", "B2O", "C2O", "F2O"], [0.5 * ps[0], 0.99 * ps[1], 0.5 * ps[2], 0.999 * ps[3]], strict=True
        )
    )
    assert joint["B2O"] > joint["A2O"] > joint["C2O"] > 0.30 * ps[0] > joint["F2O"]
    # in the window and stable first; F2O, almost surely in the window but 0.96 eV/atom above the
    # hull, falls below E2O; D2O, never relaxed, comes after every candidate with a hull energy
    assert ranked[C.FORMULA].tolist() == ["B2O", "A2O", "C2O", "E2O", "F2O", "D2O"]
    assert ranked["rank"].tolist() == [1, 2, 3, 4, 5, 6]
    got = ranked.set_index(C.FORMULA)[C.P_STABLE]
    assert np.isnan(got["D2O"]) and got["A2O"] == ps[0]
    # without probabilities (an older screen) stability decides, then the screen's order
    old = rank_discoveries(table.drop(columns=[C.P_IN_WINDOW]))
    assert old[C.FORMULA].tolist() == ["A2O", "E2O", "C2O", "B2O", "F2O", "D2O"]


def test_an_empty_screen_says_why_and_what_to_change(tmp_path):
    from gapforge.cli.cmd_discover import _empty_result_message
    from gapforge.discover.stages import empty_screen_advice

    cfg = resolve_config(gap_min=9.0, quick=True)
    steps = [
        {"filter": "readable", "n_in": 100, "n_out": 100, "removed": 0},
        {"filter": "in_window", "n_in": 100, "n_out": 0, "removed": 100},
    ]
    advice = empty_screen_advice(steps, cfg)
    assert "in_window" in advice and "≥ 9.00 eV" in advice and "--gap-min" in advice
    run = tmp_path / "run"
    (run / "screen").mkdir(parents=True)
    (run / "screen" / "funnel.json").write_text(json.dumps({"steps": steps, "n_kept": 0}))
    message = _empty_result_message(run, cfg)
    assert message.startswith("NO DISCOVERIES") and "lower --gap-min" in message
    (run / "screen" / "funnel.json").write_text(json.dumps({"steps": steps, "n_kept": 3}))
    assert _empty_result_message(run, cfg) == ""

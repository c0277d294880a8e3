"""Campaign config files: formats and clear errors for bad values."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gapforge.active.config import load_config, parse_config
from gapforge.active.surrogate import SurrogateSettings
from gapforge.cli import app
from gapforge.errors import InputError


def test_formats(tmp_path):
    (tmp_path / "c.yaml").write_text(
        "iterations: 3\ngoal: {kind: window, window: [2, 3]}\nacquisition: {q: 4}\n"
    )
    (tmp_path / "c.toml").write_text(
        'iterations = 3\n[goal]\nkind = "window"\nwindow = [2, 3]\n[acquisition]\nq = 4\n'
    )
    (tmp_path / "c.json").write_text(
        json.dumps({"iterations": 3, "goal": {"kind": "window", "window": [2, 3]}, "acquisition": {"q": 4}})
    )
    configs = [load_config(tmp_path / f"c.{ext}") for ext in ("yaml", "toml", "json")]
    assert configs[0] == configs[1] == configs[2]
    cfg = configs[0]
    assert cfg.goal.to_goal().window.gap_min == 2.0 and cfg.acquisition.to_settings().beta == 100.0
    assert parse_config({}).acquisition.kappa == 10.0
    # the file's surrogate defaults are the library's, and every field reaches the settings
    assert parse_config({}).surrogate.to_settings() == SurrogateSettings()
    custom = parse_config({"surrogate": {"fit_subset": 50, "warm_maxiter": 7, "refit_every": 3}}).surrogate
    assert (
        custom.to_settings() == SurrogateSettings(fit_subset=50, warm_maxiter=7) and custom.refit_every == 3
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"iterations": 0}, "iterations: Input should be greater than or equal to 1"),
        ({"goal": {"kind": "window"}}, "goal: a window goal needs window"),
        ({"goal": {"kind": "window", "window": [3, 2]}}, "0 <= lo < hi"),
        ({"goal": {"kind": "minimize"}}, "goal.kind: Input should be 'maximize' or 'window'"),
        ({"acquisition": {"kind": "pi"}}, "acquisition.kind"),
        ({"acquisition": {"kappa": -1}}, "acquisition.kappa: Input should be greater than 0"),
        ({"acquisition": {"q": "many"}}, "acquisition.q"),
        ({"oracle": {"kind": "table"}}, "a table oracle needs path"),
        ({"iteratons": 5}, "iteratons: Extra inputs are not permitted"),
        (
            {"surrogate": {"warm_maxiter": 0}},
            "surrogate.warm_maxiter: Input should be greater than or equal to 1",
        ),
    ],
)
def test_bad_values_name_the_field(data, message, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError) as err:
        load_config(path)
    text = str(err.value)
    assert message in text and str(path) in text and "\n" not in text


def test_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "c.ini").write_text("x=1")
    with pytest.raises(InputError, match="unsupported config format"):
        load_config(tmp_path / "c.ini")
    (tmp_path / "c.yaml").write_text("goal: [unclosed")
    with pytest.raises(InputError, match="cannot parse config"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="mapping"):
        load_config(tmp_path / "list.json")


def test_cli_bad_config_is_one_line_and_writes_nothing(tmp_path):
    from gapforge.cli import main

    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"acquisition": {"kappa": 0}}))
    import subprocess
    import sys

    out = tmp_path / "run"
    proc = subprocess.run(  # noqa: PLW1510 (return code asserted)
        [
            sys.executable,
            "-c",
            "from gapforge.cli import main; main()",
            "campaign",
            "run",
            "--config",
            str(path),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "acquisition.kappa" in lines[0]
    assert not out.exists()
    assert callable(main)
    assert CliRunner().invoke(app, ["campaign", "status", str(tmp_path)]).exit_code != 0

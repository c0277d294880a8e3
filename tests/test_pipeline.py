"""The resumable stage engine: markers, resume, skipped stages, failures, config checks, SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from gapforge.discover.engine import (
    Stage,
    StageError,
    StageSkipped,
    read_marker,
    run_pipeline,
    stage_dir,
    stage_status,
)
from gapforge.errors import InputError
from gapforge.io import read_table, write_table

CONFIG = {"gap_min": 3.0, "seed": 1}


def _calls(run: Path) -> list[str]:
    path = run / "calls.txt"
    return path.read_text().split() if path.exists() else []


def _make_stages(fail_at: str | None = None, skip: str | None = None, boom: str | None = None) -> list[Stage]:
    """Three real stages: each appends its name to RUN/calls.txt and writes a table from the previous one."""

    def make(name: str, prev: str | None):
        def func(run_dir: Path, config):
            with (run_dir / "calls.txt").open("a") as fh:
                fh.write(name + "\n")
            if name == skip:
                raise StageSkipped(f"{name} needs something missing")
            if name == fail_at:
                raise InputError("bad input for the stage", path="x.csv", row=3, value="Xx2")
            if name == boom:
                raise ZeroDivisionError("division by zero")
            base = read_table(run_dir / prev / "out.csv")["n"].tolist() if prev else [config["seed"]]
            table = pd.DataFrame({"n": [v + 1 for v in base] + [len(base)]})
            write_table(table, stage_dir(run_dir, name) / "out.csv")
            return {"rows": len(table)}

        return func

    return [Stage("a", make("a", None)), Stage("b", make("b", "a")), Stage("c", make("c", "b"))]


def test_runs_stages_in_order_and_writes_markers(tmp_path):
    run = tmp_path / "run"
    result = run_pipeline(run, CONFIG, _make_stages(), progress=False)
    assert [r.name for r in result.stages] == ["a", "b", "c"]
    assert [r.status for r in result.stages] == ["done"] * 3
    assert _calls(run) == ["a", "b", "c"]
    # each stage read the previous stage's table
    assert read_table(run / "c" / "out.csv")["n"].tolist() == [4, 3, 3, 3]
    assert result.record("c").summary == {"rows": 4}
    assert json.loads((run / "config.json").read_text()) == CONFIG
    for name in "abc":
        marker = read_marker(run, name)
        assert marker["status"] == "done"
        assert marker["seconds"] >= 0
        assert marker["started_at"] <= marker["finished_at"]
    pipeline = json.loads((run / "pipeline.json").read_text())
    assert [s["status"] for s in pipeline["stages"]] == ["done"] * 3
    log = (run / "log.txt").read_text()
    assert "stage 1/3 a: started" in log
    assert "stage 3/3 c: done" in log


def test_rerun_does_not_redo_completed_stages(tmp_path):
    run = tmp_path / "run"
    run_pipeline(run, CONFIG, _make_stages(), progress=False)
    before = (run / "c" / "out.csv").stat().st_mtime_ns
    result = run_pipeline(run, CONFIG, _make_stages(), progress=False)
    assert [r.status for r in result.stages] == ["cached"] * 3
    assert _calls(run) == ["a", "b", "c"]
    assert (run / "c" / "out.csv").stat().st_mtime_ns == before
    assert result.record("b").seconds is not None
    assert "already done, not redone" in (run / "log.txt").read_text()


def test_failed_stage_leaves_no_marker_and_rerun_starts_there(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(InputError, match=r"x.csv, row 3: bad input"):
        run_pipeline(run, CONFIG, _make_stages(fail_at="b"), progress=False)
    assert read_marker(run, "a") is not None
    assert read_marker(run, "b") is None
    pipeline = json.loads((run / "pipeline.json").read_text())
    assert [s["status"] for s in pipeline["stages"]] == ["done", "failed", "pending"]
    result = run_pipeline(run, CONFIG, _make_stages(), progress=False)
    assert [r.status for r in result.stages] == ["cached", "done", "done"]
    assert _calls(run) == ["a", "b", "b", "c"]


def test_unexpected_exception_becomes_one_line_stage_error(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(StageError) as info:
        run_pipeline(run, CONFIG, _make_stages(boom="c"), progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert "stage c failed: ZeroDivisionError" in message
    assert "log.txt" in message
    assert "Traceback" in (run / "log.txt").read_text()


def test_skipped_stage_is_recorded_with_reason_and_not_retried(tmp_path):
    run = tmp_path / "run"
    stages = _make_stages(skip="b")[:2]
    result = run_pipeline(run, CONFIG, stages, progress=False)
    rec = result.record("b")
    assert rec.status == "skipped"
    assert rec.reason == "b needs something missing"
    assert read_marker(run, "b")["reason"] == "b needs something missing"
    assert "stage 2/2 b: skipped (b needs something missing)" in (run / "log.txt").read_text()
    result2 = run_pipeline(run, CONFIG, stages, progress=False)
    assert result2.record("b").status == "skipped"
    assert _calls(run) == ["a", "b"]


def test_skip_then_dependants(tmp_path):
    """A later stage that needs a skipped stage's output can skip in turn."""

    def needs_b(run_dir, config):
        if not (run_dir / "b" / "out.csv").exists():
            raise StageSkipped("b was skipped")
        return {}

    stages = [*_make_stages(skip="b")[:2], Stage("c", needs_b)]
    result = run_pipeline(tmp_path / "run", CONFIG, stages, progress=False)
    assert [r.status for r in result.stages] == ["done", "skipped", "skipped"]
    assert result.record("c").reason == "b was skipped"


def test_different_config_is_refused_and_overwrite_starts_afresh(tmp_path):
    run = tmp_path / "run"
    run_pipeline(run, CONFIG, _make_stages(), progress=False)
    with pytest.raises(InputError, match=r"different configuration.*seed"):
        run_pipeline(run, {**CONFIG, "seed": 2}, _make_stages(), progress=False)
    result = run_pipeline(run, {**CONFIG, "seed": 2}, _make_stages(), overwrite=True, progress=False)
    assert [r.status for r in result.stages] == ["done"] * 3
    assert _calls(run) == ["a", "b", "c"]  # calls.txt was removed with the old run
    assert read_table(run / "a" / "out.csv")["n"].tolist() == [3, 1]


def test_refuses_to_use_or_overwrite_a_directory_that_is_not_a_run(tmp_path):
    other = tmp_path / "thesis"
    other.mkdir()
    (other / "chapter1.tex").write_text("precious")
    for overwrite in (False, True):
        with pytest.raises(InputError, match="not a gapforge run directory"):
            run_pipeline(other, CONFIG, _make_stages(), overwrite=overwrite, progress=False)
    assert (other / "chapter1.tex").read_text() == "precious"


def test_until_and_redo(tmp_path):
    run = tmp_path / "run"
    result = run_pipeline(run, CONFIG, _make_stages(), until="a", progress=False)
    assert [r.status for r in result.stages] == ["done", "pending", "pending"]
    assert [r.status for r in stage_status(run, _make_stages())] == ["done", "pending", "pending"]
    run_pipeline(run, CONFIG, _make_stages(), progress=False)
    result = run_pipeline(run, CONFIG, _make_stages(), redo=["b"], progress=False)
    assert [r.status for r in result.stages] == ["cached", "done", "done"]
    assert _calls(run) == ["a", "b", "c", "b", "c"]
    with pytest.raises(InputError, match="unknown stage"):
        run_pipeline(run, CONFIG, _make_stages(), until="zz", progress=False)


def test_partial_outputs_cleared_unless_resumable(tmp_path):
    run = tmp_path / "run"
    seen = {}

    def plain(run_dir, config):
        seen["plain"] = (
            sorted(p.name for p in (run_dir / "plain").glob("*")) if (run_dir / "plain").exists() else []
        )
        stage_dir(run_dir, "plain")
        return {}

    def resumable(run_dir, config):
        seen["resumable"] = sorted(p.name for p in (run_dir / "resumable").glob("*"))
        return {}

    for name in ("plain", "resumable"):
        (run / name).mkdir(parents=True)
        (run / name / "half-written.csv").write_text("n\n1\n")
    (run / "config.json").write_text(json.dumps(CONFIG))
    run_pipeline(
        run, CONFIG, [Stage("plain", plain), Stage("resumable", resumable, resumable=True)], progress=False
    )
    assert seen == {"plain": [], "resumable": ["half-written.csv"]}


def test_a_run_directory_in_use_is_refused(tmp_path):
    from gapforge.discover.engine import _run_lock

    run = tmp_path / "run"
    with _run_lock(run), pytest.raises(InputError, match="in use by another gapforge process"):
        run_pipeline(run, CONFIG, _make_stages(), progress=False)


SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import pandas as pd
    from gapforge.discover.engine import Stage, run_pipeline, stage_dir
    from gapforge.io import write_table

    run = Path(sys.argv[1])
    slow = float(os.environ["SLOW_STAGE_SECONDS"])

    def make(name, seconds):
        def func(run_dir, config):
            with (run_dir / "calls.txt").open("a") as fh:
                fh.write(name + "\\n")
            (run_dir / f"{name}.started").touch()
            out = stage_dir(run_dir, name)
            write_table(pd.DataFrame({"part": [1]}), out / "part1.csv")
            time.sleep(seconds)
            write_table(pd.DataFrame({"part": [2]}), out / "part2.csv")
            return {"seconds_slept": seconds}
        return func

    stages = [Stage("load", make("load", 0.1)), Stage("fit", make("fit", 0.1)),
              Stage("screen", make("screen", slow)), Stage("report", make("report", 0.1))]
    result = run_pipeline(run, {"gap_min": 6.0}, stages, progress=False)
    print(" ".join(f"{r.name}={r.status}" for r in result.stages))
    """
)


def test_sigkill_mid_pipeline_then_rerun_resumes(tmp_path):
    script = tmp_path / "pipeline_script.py"
    script.write_text(SCRIPT)
    run = tmp_path / "run"
    env = {**os.environ, "SLOW_STAGE_SECONDS": "120", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(run)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while not (run / "screen.started").exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the pipeline never reached the slow stage"
            time.sleep(0.05)
        time.sleep(0.2)
        # while it runs, a second process cannot use the same run directory
        with pytest.raises(InputError, match="in use"):
            run_pipeline(run, {"gap_min": 6.0}, [Stage("load", lambda r, c: {})], progress=False)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert read_marker(run, "load")["status"] == "done"
    assert read_marker(run, "fit")["status"] == "done"
    assert read_marker(run, "screen") is None  # killed mid-stage: not complete
    assert (run / "screen" / "part1.csv").exists() and not (run / "screen" / "part2.csv").exists()
    fit_marker = (run / "stages" / "fit.json").read_text()

    env["SLOW_STAGE_SECONDS"] = "0.1"
    rerun = subprocess.run(
        [sys.executable, str(script), str(run)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.split() == ["load=cached", "fit=cached", "screen=done", "report=done"]
    assert _calls(run) == ["load", "fit", "screen", "screen", "report"]
    assert (run / "stages" / "fit.json").read_text() == fit_marker  # untouched
    assert (run / "screen" / "part2.csv").exists()
    assert read_marker(run, "screen")["summary"] == {"seconds_slept": 0.1}

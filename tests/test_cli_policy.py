"""Issue 19, "the first hour of a new user": each row of its table, run as the user ran it.

One parametrised test runs every row (and the README's Python example on a run with no
discoveries) through the real console entry point in this process and asserts what the
row does now. The policy itself is written once in ``gapforge.cli._policy`` and in the
README ("One policy for every command").
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _report_fixtures():
    spec = importlib.util.spec_from_file_location(
        "report_fixtures", ROOT / "tests" / "report" / "conftest.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Cli:
    """``gapforge ARGS`` through the console entry point (``gapforge.cli.main``), in this process."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        self.monkeypatch = monkeypatch
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        from gapforge.cli import main

        self.capsys.readouterr()
        self.monkeypatch.setattr(sys, "argv", ["gapforge", *args])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out = self.capsys.readouterr()
        return code, out.out, out.err


def _one_error_line(code: int, err: str) -> str:
    """The run failed with exit code 2 and exactly one line on stderr, 'error: ...'."""
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


ROWS: dict[str, Callable[[Cli, Path], None]] = {}


def row(name: str) -> Callable:
    def register(func: Callable[[Cli, Path], None]) -> Callable[[Cli, Path], None]:
        ROWS[name] = func
        return func

    return register


# -- `gapforge predict "Xx2O"`, `"LiF)"`, `""` gave exit 0 and a NaN row with a reason
for _formula, _why in (("Xx2O", "unknown element"), ("LiF)", "cannot parse formula"), ("", "empty formula")):

    def _unusable_formula(gf: Cli, tmp: Path, formula: str = _formula, why: str = _why) -> None:
        code, out, err = gf("predict", formula)
        line = _one_error_line(code, err)
        assert f"argument 1: {why}" in line and "--skip-bad" in line
        assert "nan" not in out
        # asked to skip bad rows: the row stays, with NaN and the reason, and the count is printed
        code, out, err = gf("predict", "LiF", formula, "--skip-bad")
        assert code == 0, err
        lines = out.strip().splitlines()
        assert len(lines) == 3 and "nan" in lines[2] and why in lines[2]
        assert "1 of 2 formulas could not be predicted" in err

    row(f"predict {_formula!r}: exit 2 naming the argument")(_unusable_formula)


@row("train experiment-head --target foo: a traceback; now exit 2 naming the flag and its choices")
def _bad_head_option(gf: Cli, tmp: Path) -> None:
    for flag, value, choices in (
        ("--target", "foo", "gap, log1p"),
        ("--features", "x", "magpie, magpie+pbe"),
    ):
        out = tmp / f"head{flag}"
        line = _one_error_line(*gf("train", "experiment-head", flag, value, "--out", str(out))[::2])
        assert flag in line and choices in line and value in line
        assert not out.exists()  # refused before anything is fitted or written
    out = tmp / "head-lr"
    line = _one_error_line(
        *gf("train", "experiment-head", "--regressor-learning-rate", "-0.1", "--out", str(out))[::2]
    )
    assert "--regressor-learning-rate" in line and "-0.1" in line and not out.exists()
    for flags, words in (
        (("--regressor-max-features", "1.5"), ("--regressor-max-features", "max_features", "1.5")),
        (("--n-bags", "0", "--bag-fraction", "1"), ("--n-bags", "0")),
    ):
        line = _one_error_line(*gf("train", "experiment-head", *flags, "--out", str(out))[::2])
        assert all(w in line for w in words) and not out.exists(), line
    args = ("structure", "--input", str(tmp / "c.csv"), "--out", str(tmp / "s"), "--ranking", "best")
    line = _one_error_line(*gf(*args)[::2])
    assert "--ranking" in line and "learned, rule" in line and "best" in line
    line = _one_error_line(*gf(*args[:-2], "--slots", "types")[::2])
    assert "--slots" in line and "prototype, structure_type" in line and "types" in line


@row("predict Li0.31416F: refused like the datasets refuse it")
def _fractional(gf: Cli, tmp: Path) -> None:
    line = _one_error_line(*gf("predict", "Li0.31416F")[::2])
    assert "fractional amounts" in line and "Li0.31416F" in line
    code, out, _ = gf("predict", "Li0.5F0.5", "LiF")  # fractions that scale to integers are LiF
    assert code == 0
    means = [ln.split()[1] for ln in out.strip().splitlines()[1:]]
    assert means[0] == means[1]


@row("predict LiF --output p.csv: the file is written")
def _output_honoured(gf: Cli, tmp: Path) -> None:
    out_path = tmp / "p.csv"
    code, _, err = gf("predict", "LiF", "--output", str(out_path))
    assert code == 0, err
    table = pd.read_csv(out_path, keep_default_na=False, na_values=[""])
    assert list(table.columns) == [
        "formula",
        "band_gap_mean",
        "band_gap_std",
        "p_metal",
        "fidelity",
        "reason",
    ]
    assert table["formula"].tolist() == ["LiF"] and 5 < table["band_gap_mean"].iloc[0] < 10
    assert f"wrote 1 predictions to {out_path}" in err
    assert not [p for p in tmp.iterdir() if p.name.startswith(".")]  # no temporary file left behind


@row("predict --input f.csv --output existing.csv: refused without --overwrite")
def _existing_output(gf: Cli, tmp: Path) -> None:
    src, existing = tmp / "f.csv", tmp / "existing.csv"
    pd.DataFrame({"composition": ["LiF", "NaCl"]}).to_csv(src, index=False)
    existing.write_text("keep me\n")
    line = _one_error_line(*gf("predict", "--input", str(src), "--output", str(existing))[::2])
    assert f"{existing}: output exists (use --overwrite" in line
    assert existing.read_text() == "keep me\n"
    code, _, err = gf("predict", "--input", str(src), "--output", str(existing), "--overwrite")
    assert code == 0, err
    assert pd.read_csv(existing)["formula"].tolist() == ["LiF", "NaCl"]
    # a bad row of a table: one line naming the file, the row and the value; nothing written
    bad = tmp / "bad.csv"
    pd.DataFrame({"formula": ["LiF", "NaCl", "Xx2O"]}).to_csv(bad, index=False)
    line = _one_error_line(*gf("predict", "--input", str(bad), "--output", str(tmp / "o.csv"))[::2])
    assert f"{bad}, row 3: unknown element: 'Xx in Xx2O'" in line
    assert not (tmp / "o.csv").exists()


@row("one byte flipped in pretrained/oracle/roost_weights.pt: refused, naming the file")
def _flipped_byte(gf: Cli, tmp: Path) -> None:
    from gapforge.models.base import pretrained_dir

    oracle = tmp / "oracle"
    shutil.copytree(pretrained_dir("oracle"), oracle)
    weights = oracle / "roost_weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    code, out, err = gf("predict", "LiF", "--model", str(oracle))
    line = _one_error_line(code, err)
    assert f"{weights}: sha256" in line and "does not match" in line and "model.json" in line
    assert out == ""


@row("generate -n 0: refused; and JSON is never NaN")
def _generate_zero(gf: Cli, tmp: Path) -> None:
    from gapforge.io import write_json

    out_path = tmp / "g.parquet"
    line = _one_error_line(*gf("generate", "-n", "0", "--out", str(out_path))[::2])
    assert "number of samples (-n) must be at least 1" in line
    assert list(tmp.iterdir()) == []
    path = write_json({"rate": float("nan"), "inf": math.inf, "nested": [1.0, float("nan")]}, tmp / "s.json")

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    assert json.loads(path.read_text(), parse_constant=refuse) == {
        "rate": None,
        "inf": None,
        "nested": [1.0, None],
    }


@row("a discover run with no discoveries: the README's Python example works")
def _readme_example_on_an_empty_run(gf: Cli, tmp: Path) -> None:
    from gapforge import discover as discover_pkg
    from gapforge.discover.engine import run_pipeline
    from gapforge.discover.stages import DISCOVER_STAGES

    text = README.read_text()
    block = text.split("### From Python", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    assert 'read_table("runs/wide-gap/stability/discoveries.csv")' in block

    def discover_with_no_discoveries(run_dir, config, **kwargs):
        """The real pipeline from `structure` on, after a screen that kept no formula."""
        run_dir = Path(run_dir)
        (run_dir / "stages").mkdir(parents=True)
        (run_dir / "screen").mkdir()
        columns = ["formula", "band_gap_mean", "band_gap_std", "n_atoms", "n_elements", "rank"]
        pd.DataFrame(columns=columns).to_csv(run_dir / "screen" / "candidates.csv", index=False)
        names = [s.name for s in DISCOVER_STAGES]
        return run_pipeline(run_dir, config, DISCOVER_STAGES[names.index("structure") :], progress=False)

    gf.monkeypatch.setattr(discover_pkg, "discover", discover_with_no_discoveries)
    gf.monkeypatch.chdir(tmp)
    exec(compile(block, str(README), "exec"), {"__name__": "readme"})  # raised KeyError before
    best = pd.read_csv(tmp / "runs/wide-gap/stability/discoveries.csv")
    assert len(best) == 0
    assert {"formula", "band_gap_mean", "band_gap_std", "e_above_hull", "cif", "dft_band_gap"} <= set(
        best.columns
    )
    assert (tmp / "runs/wide-gap/report.html").stat().st_size > 1000


@row("resume refused because the settings differ: the old report.html is left alone")
def _refused_resume(gf: Cli, tmp: Path) -> None:
    run = _report_fixtures().write_run(tmp / "run")
    report = run / "report.html"
    report.write_text("the old run's report\n")
    before = report.stat().st_mtime_ns
    line = _one_error_line(*gf("discover", "--gap-min", "3", "--quick", "--out", str(run))[::2])
    assert "different configuration" in line
    assert report.read_text() == "the old run's report\n" and report.stat().st_mtime_ns == before
    # a stage that fails in this call still leaves a report of the stages done so far
    from gapforge.discover import stages
    from gapforge.discover.config import resolve_config
    from gapforge.errors import InputError
    from gapforge.io import write_json

    def a_stage_fails(run_dir, *args, **kwargs):
        write_json({"stages": [{"name": "data", "status": "failed"}]}, Path(run_dir) / "pipeline.json")
        raise InputError("bad labelled table", path="gaps.csv", row=3)

    gf.monkeypatch.setattr(stages, "run_pipeline", a_stage_fails)
    with pytest.raises(InputError, match="row 3"):
        stages.discover(run, resolve_config(gap_min=6.0, quick=True))
    assert "gapforge discovery report" in report.read_text()


@row("--help: every flag described, no <bool>, stage names, train rnn, relax --workers, units")
def _help(gf: Cli, tmp: Path) -> None:
    import click
    import typer

    from gapforge.cli import app
    from gapforge.discover.stages import DISCOVER_STAGES

    def commands(cmd: click.Command, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], click.Command]]:
        subs = getattr(cmd, "commands", None)
        if not subs:
            return [(path, cmd)]
        return [c for name, sub in subs.items() for c in commands(sub, (*path, name))]

    every = commands(typer.main.get_command(app), ())
    assert len(every) > 25
    for path, cmd in every:
        code, out, _ = gf(*path, "--help")
        assert code == 0 and "<bool>" not in out, path
        for param in cmd.params:
            if isinstance(param, click.Option):
                assert param.help, f"gapforge {' '.join(path)} {param.opts[0]} has no help"
    _, train, _ = gf("train", "--help")
    assert re.search(r"^\s+rnn\s", train, re.MULTILINE) and "gan or rnn" in train
    _, relax, _ = gf("relax", "--help")
    assert "[default: 0]" not in relax and "all cores" not in relax
    assert "one per core this process may use" in " ".join(relax.split())
    _, disc, _ = gf("discover", "--help")
    flat = " ".join(disc.split())
    for flag in ("--until", "--redo"):
        listed = flat.split(flag, 1)[1].split("--", 1)[0]
        assert all(s.name in listed for s in DISCOVER_STAGES), flag
    code, out, _ = gf("predict", "LiF")
    assert code == 0
    assert out.splitlines()[0].split() == [
        "formula",
        "band_gap_mean",
        "(eV)",
        "band_gap_std",
        "(eV)",
        "p_metal",
        "fidelity",
        "reason",
    ]


@pytest.mark.parametrize("name", list(ROWS))
def test_issue_19_row(name, tmp_path, monkeypatch, capsys):
    """Each row of issue 19's table, as a new user ran it, and what it does now."""
    ROWS[name](Cli(monkeypatch, capsys), tmp_path)


# -- every model load checks its weights --------------------------------------------------------------------
def _load_roost(d: Path):
    from gapforge.models.registry import load_model

    return load_model(d)


def _load_forest(d: Path):
    from gapforge.models.registry import load_model

    return load_model(d, kind="forest")


def _load_autoencoder(d: Path):
    from gapforge.models.autoencoder import CompositionAutoencoder

    return CompositionAutoencoder.load(d)


def _load_generator(d: Path):
    from gapforge.screening.generate import load_generator

    return load_generator(d)


@pytest.mark.parametrize(
    ("name", "load"),
    [
        ("oracle", _load_roost),
        ("forest", _load_forest),
        ("autoencoder", _load_autoencoder),
        ("gan", _load_generator),
        ("rnn", _load_generator),
    ],
)
def test_every_shipped_model_refuses_a_changed_weights_file(name, load, tmp_path):
    from gapforge.errors import ModelError
    from gapforge.models.base import FILES_SHA256_KEY, file_sha256, pretrained_dir

    model = tmp_path / name
    shutil.copytree(pretrained_dir(name), model)
    recorded = json.loads((model / "model.json").read_text())["metadata"][FILES_SHA256_KEY]
    assert recorded and all(file_sha256(model / f) == digest for f, digest in recorded.items())
    load(model)  # the shipped files load
    for file in recorded:
        if file == "heldout_formulas.txt.gz":
            continue  # evaluation data, not read by load
        path = model / file
        original = path.read_bytes()
        changed = bytearray(original)
        changed[len(changed) // 3] ^= 0x10
        path.write_bytes(bytes(changed))
        with pytest.raises(ModelError, match=re.escape(f"{path}: sha256")) as info:
            load(model)
        assert "\n" not in str(info.value)
        path.write_bytes(original)


def test_cli_stage_names_are_the_pipeline_stages():
    from gapforge.cli.cmd_discover import STAGE_NAMES
    from gapforge.discover.stages import DISCOVER_STAGES

    assert list(STAGE_NAMES) == [s.name for s in DISCOVER_STAGES]

"""A resumable pipeline of named stages writing into one run directory.

A stage is a function ``(run_dir, config) -> summary`` that writes its own
table(s) under ``run_dir`` (by convention into ``run_dir/NAME/``) and returns a
small JSON-ready dict. :func:`run_pipeline` runs the stages in order and keeps::

    RUN/config.json          the resolved configuration (a rerun must match it)
    RUN/stages/NAME.json     completion marker: status, wall time, summary
                             (written atomically *after* the stage's outputs)
    RUN/pipeline.json        every stage's status and wall time so far
    RUN/log.txt              the log of every run in this directory

A stage whose marker exists is not redone, so a killed run resumes at the
stage it was in. A stage that raises :class:`StageSkipped` (an optional stage
whose dependency is missing) is recorded as skipped with the reason. Once a
stage has to run, every later stage runs too (its inputs may have changed).
A non-resumable stage's directory is cleared before it runs, so partial
outputs of a killed attempt never mix with new ones.

Example:
    >>> def count(run_dir, config):  # doctest: +SKIP
    ...     write_table(pd.DataFrame({"n": [1, 2]}), stage_dir(run_dir, "count") / "n.csv")
    ...     return {"rows": 2}
    >>> run_pipeline("RUN", config, [Stage("count", count)])  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gapforge.errors import GapforgeError, InputError
from gapforge.io import write_json

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
STAGES_DIR = "stages"
PIPELINE_FILE = "pipeline.json"
LOG_FILE = "log.txt"
LOCK_FILE = ".lock"

StageFunc = Callable[[Path, Any], Mapping[str, Any] | None]


class StageSkipped(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by an optional stage that cannot run here (e.g. GPAW not installed).

    Args:
        reason: one line saying why, shown in the log, the marker and the report.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class StageError(GapforgeError):
    """A stage failed with an unexpected exception (the traceback is in RUN/log.txt)."""


@dataclass(frozen=True)
class Stage:
    """One named step of a pipeline.

    Attributes:
        name: short name; also the marker file name and the stage directory.
        func: ``(run_dir, config) -> summary dict`` (or ``None``).
        description: one line for the log and the report.
        resumable: the stage resumes from its own partial outputs (e.g. a
            campaign saving every iteration), so its directory is kept when
            it is re-entered after an interruption.
    """

    name: str
    func: StageFunc
    description: str = ""
    resumable: bool = False


@dataclass(frozen=True)
class StageRecord:
    """What happened to one stage in one call of :func:`run_pipeline`.

    Attributes:
        name: stage name.
        status: ``"done"`` (ran now), ``"cached"`` (done in an earlier run),
            ``"skipped"`` (optional stage that could not run; see ``reason``),
            ``"failed"`` or ``"pending"`` (not reached).
        seconds: wall time of the stage's (first successful) run, in s.
        summary: the dict the stage returned.
        reason: why a stage was skipped or failed.
    """

    name: str
    status: str
    seconds: float | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class PipelineResult:
    """The outcome of :func:`run_pipeline`.

    Attributes:
        run_dir: the run directory.
        stages: one record per stage, in pipeline order.
        seconds: wall time of this call, in s.
    """

    run_dir: Path
    stages: tuple[StageRecord, ...]
    seconds: float

    def record(self, name: str) -> StageRecord:
        """The record of the stage called ``name``."""
        for rec in self.stages:
            if rec.name == name:
                return rec
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "run_dir": str(self.run_dir),
            "seconds": self.seconds,
            "stages": [s.to_dict() for s in self.stages],
        }


def stage_dir(run_dir: str | Path, name: str) -> Path:
    """``RUN/NAME``, created if needed: where stage ``name`` writes its tables."""
    path = Path(run_dir) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def marker_path(run_dir: str | Path, name: str) -> Path:
    """``RUN/stages/NAME.json``: the completion marker of stage ``name``."""
    return Path(run_dir) / STAGES_DIR / f"{name}.json"


def read_marker(run_dir: str | Path, name: str) -> dict[str, Any] | None:
    """The completion marker of a stage, or ``None`` if it has not completed."""
    path = marker_path(run_dir, name)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # an unreadable marker counts as not completed
    return data if isinstance(data, dict) and data.get("status") in ("done", "skipped") else None


def stage_status(run_dir: str | Path, stages: Sequence[Stage | str]) -> list[StageRecord]:
    """Status of each stage in a run directory, from its markers (no stage is run)."""
    out = []
    for stage in stages:
        name = stage if isinstance(stage, str) else stage.name
        marker = read_marker(run_dir, name)
        if marker is None:
            out.append(StageRecord(name, "pending"))
        else:
            out.append(_record_from_marker(marker, name))
    return out


def run_pipeline(
    run_dir: str | Path,
    config: Any,
    stages: Sequence[Stage],
    *,
    overwrite: bool = False,
    until: str | None = None,
    redo: Sequence[str] = (),
    progress: bool | None = None,
) -> PipelineResult:
    """Run ``stages`` in order into ``run_dir``, skipping the ones already complete.

    Args:
        run_dir: the run directory (created; an existing one is resumed).
        config: the resolved configuration: a dataclass with ``to_dict()`` or a
            JSON-ready mapping. It is saved as ``RUN/config.json``; resuming a
            run directory with a different configuration is refused.
        stages: the pipeline.
        overwrite: delete an existing run directory's contents first (only if it
            is a gapforge run directory).
        until: stop after this stage.
        redo: run these stages (and therefore every later one) again even if complete.
        progress: show a progress bar (``None``: only on a terminal).

    Returns:
        A record per stage, in order.

    Raises:
        InputError: bad stage names, a non-run directory in the way, or a
            configuration differing from the one the run directory was made with.
        StageError: a stage failed unexpectedly (the traceback is in ``RUN/log.txt``).
        GapforgeError: a stage failed on bad input (re-raised as is).
    """
    run_dir = Path(run_dir)
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise InputError("duplicate stage names", value=names)
    for name in [*((until and [until]) or []), *redo]:
        if name not in names:
            raise InputError(f"unknown stage (stages: {', '.join(names)})", value=name)
    cfg_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    cfg_dict = json.loads(json.dumps(cfg_dict, default=str))  # what config.json will hold

    _check_run_dir(run_dir)
    start = time.perf_counter()
    with _run_lock(run_dir):
        if overwrite:
            _clear_run_dir(run_dir)
        (run_dir / STAGES_DIR).mkdir(exist_ok=True)
        with _log_to_file(run_dir / LOG_FILE):
            result = _run_locked(run_dir, cfg_dict, config, stages, names, until, redo, progress, start)
    return result


def _run_locked(
    run_dir: Path,
    cfg_dict: dict[str, Any],
    config: Any,
    stages: Sequence[Stage],
    names: list[str],
    until: str | None,
    redo: Sequence[str],
    progress: bool | None,
    start: float,
) -> PipelineResult:
    from tqdm.auto import tqdm

    from gapforge.discover.config import config_differences

    cfg_path = run_dir / CONFIG_FILE
    if cfg_path.is_file():
        try:
            old = json.loads(cfg_path.read_text())
        except ValueError as exc:
            raise InputError(
                "unreadable config.json (use --overwrite to start afresh)", path=cfg_path
            ) from exc
        diff = config_differences(old, cfg_dict)
        if diff:
            raise InputError(
                "run directory was made with a different configuration "
                f"(differs in {', '.join(diff[:5])}); use the same settings to resume, "
                "or --overwrite / a new --out",
                path=run_dir,
            )
        log.info("resuming run in %s", run_dir)
    else:
        write_json(cfg_dict, cfg_path)
        log.info("new run in %s", run_dir)

    last = names.index(until) if until else len(stages) - 1
    records: list[StageRecord] = []
    must_run = False
    bar = tqdm(
        total=last + 1, desc="discover", unit="stage", disable=None if progress is None else not progress
    )
    try:
        for i, stage in enumerate(stages):
            if i > last:
                records.append(_status_only(run_dir, stage.name))
                continue
            bar.set_postfix_str(stage.name)
            marker = read_marker(run_dir, stage.name)
            if stage.name in redo:
                must_run = True
            if marker is not None and not must_run:
                rec = _record_from_marker(marker, stage.name, cached=True)
                log.info(
                    "stage %d/%d %s: already %s, not redone",
                    i + 1,
                    len(stages),
                    stage.name,
                    marker["status"],
                )
                records.append(rec)
                bar.update(1)
                continue
            must_run = True
            _invalidate_from(run_dir, names[i:])
            rec = _run_stage(run_dir, stage, config, i, len(stages), records, names)
            records.append(rec)
            bar.update(1)
    finally:
        bar.close()
    result = PipelineResult(run_dir, tuple(records), round(time.perf_counter() - start, 3))
    _write_pipeline_file(run_dir, records, names)
    log.info("pipeline finished in %.1f s", result.seconds)
    return result


# ---------------------------------------------------------------------------------------------
def _run_stage(
    run_dir: Path, stage: Stage, config: Any, i: int, n: int, records: list[StageRecord], names: list[str]
) -> StageRecord:
    sdir = run_dir / stage.name
    if sdir.exists() and not stage.resumable:
        shutil.rmtree(sdir)  # partial outputs of an interrupted attempt
    log.info(
        "stage %d/%d %s: started%s",
        i + 1,
        n,
        stage.name,
        f" ({stage.description})" if stage.description else "",
    )
    started = time.time()
    t0 = time.perf_counter()
    try:
        summary = stage.func(run_dir, config) or {}
        status, reason = "done", ""
    except StageSkipped as exc:
        summary, status, reason = {}, "skipped", exc.reason
    except GapforgeError as exc:
        log.error("stage %s failed: %s", stage.name, exc)
        _write_pipeline_file(run_dir, [*records, StageRecord(stage.name, "failed", reason=str(exc))], names)
        raise
    except Exception as exc:
        log.error("stage %s failed:\n%s", stage.name, traceback.format_exc())
        message = f"stage {stage.name} failed: {type(exc).__name__}: {exc}".splitlines()[0]
        _write_pipeline_file(run_dir, [*records, StageRecord(stage.name, "failed", reason=message)], names)
        raise StageError(f"{message} (traceback in {run_dir / LOG_FILE})") from exc
    seconds = round(time.perf_counter() - t0, 3)
    summary = json.loads(json.dumps(dict(summary), default=_json_default))
    marker = {
        "stage": stage.name,
        "status": status,
        "seconds": seconds,
        "started_at": _iso(started),
        "finished_at": _iso(time.time()),
        "summary": summary,
        "reason": reason,
    }
    write_json(marker, marker_path(run_dir, stage.name))  # only now is the stage complete
    if status == "skipped":
        log.info("stage %d/%d %s: skipped (%s)", i + 1, n, stage.name, reason)
    else:
        log.info("stage %d/%d %s: done in %.1f s %s", i + 1, n, stage.name, seconds, _short(summary))
    rec = StageRecord(stage.name, status, seconds, summary, reason)
    _write_pipeline_file(run_dir, [*records, rec], names)
    return rec


def _check_run_dir(run_dir: Path) -> None:
    """Refuse a file, or a non-empty directory that is not a gapforge run directory."""
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError("run directory path is a file", path=run_dir)
    if run_dir.is_dir() and any(p.name != LOCK_FILE for p in run_dir.iterdir()):
        is_run = (run_dir / CONFIG_FILE).is_file() or (run_dir / STAGES_DIR).is_dir()
        if not is_run:
            raise InputError(
                "directory exists and is not a gapforge run directory (choose a new --out)", path=run_dir
            )


def _clear_run_dir(run_dir: Path) -> None:
    """Delete everything of a (checked) run directory but its lock file."""
    for child in run_dir.iterdir():
        if child.name == LOCK_FILE:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


@contextlib.contextmanager
def _run_lock(run_dir: Path) -> Iterator[None]:
    """Exclusive lock on ``RUN/.lock`` (released by the kernel even on SIGKILL)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError("run directory is in use by another gapforge process", path=run_dir) from None
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def _log_to_file(path: Path) -> Iterator[None]:
    logger = logging.getLogger("gapforge")
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    )
    old_level = logger.level
    root = logging.getLogger()
    old_handler_levels = [(h, h.level) for h in root.handlers]
    if logger.getEffectiveLevel() > logging.INFO:
        # the file gets INFO; the console stays as quiet as it was asked to be
        for h, level in old_handler_levels:
            h.setLevel(max(level, root.getEffectiveLevel()))
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(old_level)
        for h, level in old_handler_levels:
            h.setLevel(level)


def _invalidate_from(run_dir: Path, names: Sequence[str]) -> None:
    for name in names:
        path = marker_path(run_dir, name)
        if path.exists():
            path.unlink()


def _record_from_marker(marker: Mapping[str, Any], name: str, cached: bool = False) -> StageRecord:
    status = marker.get("status", "done")
    if cached and status == "done":
        status = "cached"
    return StageRecord(
        name,
        status,
        marker.get("seconds"),
        dict(marker.get("summary") or {}),
        str(marker.get("reason") or ""),
    )


def _status_only(run_dir: Path, name: str) -> StageRecord:
    marker = read_marker(run_dir, name)
    return StageRecord(name, "pending") if marker is None else _record_from_marker(marker, name, cached=True)


def _write_pipeline_file(run_dir: Path, records: Sequence[StageRecord], names: Sequence[str]) -> None:
    done = {r.name: r for r in records}
    rows = []
    for name in names:
        rec = done.get(name) or _status_only(run_dir, name)
        rows.append(rec.to_dict())
    write_json({"stages": rows, "updated_at": _iso(time.time())}, run_dir / PIPELINE_FILE)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _short(summary: Mapping[str, Any]) -> str:
    items = [f"{k}={v}" for k, v in summary.items() if isinstance(v, int | float | str | bool)]
    return f"({', '.join(items[:6])})" if items else ""


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.integer):
            return int(obj)
        if isinstance(obj, np.floating):
            return float(obj)
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(obj)


__all__ = [
    "CONFIG_FILE",
    "LOG_FILE",
    "PIPELINE_FILE",
    "STAGES_DIR",
    "PipelineResult",
    "Stage",
    "StageError",
    "StageRecord",
    "StageSkipped",
    "marker_path",
    "read_marker",
    "run_pipeline",
    "stage_dir",
    "stage_status",
]

"""``gapforge discover``: every stage, from labelled data to a report, in one resumable run.

* :mod:`.config` -- the settings (:class:`DiscoverConfig`, presets, settings files);
* :mod:`.engine` -- the resumable stage runner (:func:`run_pipeline`);
* :mod:`.layout` -- the file each stage writes in the run directory;
* :mod:`.stages` -- the stage functions and :func:`discover`.

Example:
    >>> from gapforge.discover import discover, resolve_config
    >>> cfg = resolve_config(gap_min=6.0, quick=True)
    >>> result = discover("runs/wide-gap", cfg)  # doctest: +SKIP
    >>> result.record("screen").summary  # doctest: +SKIP
"""

from __future__ import annotations

from gapforge.discover.config import DiscoverConfig, resolve_config
from gapforge.discover.engine import PipelineResult, Stage, StageRecord, StageSkipped, run_pipeline

__all__ = [
    "DiscoverConfig",
    "PipelineResult",
    "Stage",
    "StageRecord",
    "StageSkipped",
    "discover",
    "resolve_config",
    "run_pipeline",
]


def __getattr__(name: str):  # stages import the heavy stage modules lazily
    if name in ("discover", "DISCOVER_STAGES"):
        from gapforge.discover import stages

        return getattr(stages, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Helpers shared by the benchmark scripts: machine facts and result files."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """Facts about the machine a benchmark ran on."""
    import numpy as np

    return {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def command_line() -> str:
    """The command that ran this benchmark, as its results quote it (``python <script> <args>``)."""
    return " ".join(["python", *sys.argv])


def quoted_command(command: str) -> str:
    """``command`` as a markdown code span, run from the repository root with the shared data."""
    return f"`GAPFORGE_DATA_PATH=../shared/data {command}`"


def run_facts(start: float) -> dict:
    """``load_average`` (1, 5, 15 min, read now) and ``seconds`` since ``start`` (a ``time.time()``)."""
    return {"load_average": os.getloadavg(), "seconds": time.time() - start}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_results(name: str, payload: dict, table_md: str) -> tuple[Path, Path]:
    """Write ``results/NAME.json`` and ``results/NAME.md``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "machine": machine(), **payload}
    js = RESULTS / f"{name}.json"
    md = RESULTS / f"{name}.md"
    js.write_text(json.dumps(payload, indent=2) + "\n")
    md.write_text(table_md.rstrip() + "\n")
    return js, md


def publish(name: str, payload: dict, lines: list[str]) -> tuple[Path, Path]:
    """:func:`write_results` with the markdown ``lines``, then print the table and both paths."""
    table_md = "\n".join(lines)
    js, md = write_results(name, payload, table_md)
    print(table_md)
    print(js, md)
    return js, md

"""Reading and writing tables and files safely.

Tables are CSV or Parquet (chosen by the file extension; JSON is read too).
Every write goes to a temporary file in the target directory and is renamed
into place, so a crash never leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from gapforge.errors import InputError

TABLE_SUFFIXES = (".csv", ".parquet", ".pq", ".json", ".csv.gz")


def table_format(path: str | Path) -> str:
    """Return ``"csv"``, ``"parquet"`` or ``"json"`` from a file name."""
    name = str(path).lower()
    if name.endswith((".csv", ".csv.gz", ".tsv")):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".json", ".jsonl")):
        return "json"
    raise InputError("unsupported table format (use .csv, .parquet or .json)", path=path)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV, Parquet or JSON table.

    Strings such as ``"NaN"`` or ``"NA"`` stay strings (``NaN`` is sodium
    nitride), so no value is silently turned into a missing one.

    Raises:
        InputError: the file is missing, empty or not a table.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path=path)
    fmt = table_format(path)
    try:
        if fmt == "csv":
            sep = "\t" if str(path).lower().endswith(".tsv") else ","
            df = pd.read_csv(path, keep_default_na=False, na_values=[], sep=sep)
        elif fmt == "parquet":
            df = pd.read_parquet(path)
        else:
            lines = str(path).lower().endswith(".jsonl")
            df = pd.read_json(path, lines=lines, dtype=False)
    except pd.errors.EmptyDataError as exc:
        raise InputError("file is empty", path=path) from exc
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read table ({first})", path=path) from exc
    except Exception as exc:  # pyarrow raises its own error types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read table ({first})", path=path) from exc
    return df


@contextlib.contextmanager
def atomic_path(path: str | Path, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix is not None else "".join(path.suffixes)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f"{suffix}.tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():  # mkstemp makes 0600 files; give the result the usual umask-based mode
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o666 & ~umask)
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` atomically as CSV or Parquet (chosen by the extension)."""
    path = Path(path)
    fmt = table_format(path)
    with atomic_path(path) as tmp:
        if fmt == "csv":
            df.to_csv(tmp, index=False)
        elif fmt == "parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_json(tmp, orient="records", indent=1)
    return path


def write_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as pretty JSON atomically; NaN and infinities become ``null`` (valid JSON)."""
    path = Path(path)
    text = json.dumps(json_ready(obj), indent=2, sort_keys=False, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")
    return path


def json_ready(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays and paths converted, and NaN/inf floats as ``None``.

    ``json.dumps`` writes NaN as the bare word ``NaN``, which is not JSON; every JSON
    file gapforge writes goes through this so a strict parser can read it.
    """
    import math

    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    converted = _json_default(obj)
    return json_ready(converted)


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (dataset checksums, model weights)."""
    import hashlib

    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_text(text: str, path: str | Path) -> Path:
    """Write a text file atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_formula_column(path: str | Path) -> list[str]:
    """The formula column of a CSV/Parquet table (``formula``, ``composition`` or ``pretty_formula``).

    Empty cells become ``""``; every other value its string, so callers can report the row.

    Raises:
        InputError: unreadable or empty table, or no formula column.
    """
    from gapforge import columns as C

    df = read_table(path)
    if len(df) == 0:
        raise InputError("no data rows", path=path)
    col = find_column(df, C.FORMULA_ALIASES, what="formula", path=path)
    return ["" if pd.isna(v) else str(v) for v in df[col].tolist()]


def find_column(
    df: pd.DataFrame, aliases: Sequence[str], *, what: str, path: str | Path | None = None
) -> str:
    """Return the first column of ``df`` whose name matches one of ``aliases``.

    Matching is exact first, then case-insensitive.

    Raises:
        InputError: no column matches.
    """
    for name in aliases:
        if name in df.columns:
            return name
    lowered = {str(c).lower(): c for c in df.columns}
    for name in aliases:
        if name.lower() in lowered:
            return lowered[name.lower()]
    found = ", ".join(map(str, df.columns)) or "none"
    raise InputError(f"no {what} column (looked for {', '.join(aliases)}; found {found})", path=path)

"""Exceptions raised by gapforge.

Every error a user can cause (bad file, bad formula, missing model) is a
:class:`GapforgeError`; the command line turns it into one line on stderr and a
non-zero exit code. Programming errors stay ordinary Python exceptions.
"""

from __future__ import annotations

from pathlib import Path


class GapforgeError(Exception):
    """Base class of every error gapforge reports to a user."""


class InputError(GapforgeError, ValueError):
    """Bad input data: names the file, the row (1-based data row) and the value.

    Args:
        message: what is wrong, in a few words.
        path: the file the bad value came from, if any.
        row: 1-based data row (header excluded), if any.
        value: the offending value, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        row: int | None = None,
        value: object = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.row = row
        self.value = value
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.path is not None:
            where.append(self.path)
        if self.row is not None:
            where.append(f"row {self.row}")
        prefix = ", ".join(where)
        text = f"{prefix}: {self.message}" if prefix else self.message
        if self.value is not None:
            text += f": {self.value!r}"
        return text


class FormulaError(InputError):
    """A formula that cannot be parsed, has unknown elements or cannot be encoded."""


class DatasetNotFoundError(GapforgeError, FileNotFoundError):
    """A named dataset is neither local nor downloadable."""


class ChecksumError(GapforgeError):
    """A downloaded or cached file does not match its pinned sha256."""


class ModelError(GapforgeError):
    """A model directory that is missing, partial or from an incompatible version."""


class DependencyError(GapforgeError, ImportError):
    """An optional dependency (for example GPAW or mp-api) is not installed."""

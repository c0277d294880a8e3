"""The input/output policy every ``gapforge`` command follows (written once, used everywhere).

* A formula that cannot be used stops the command with one line naming the file,
  row and value (or the argument), exit code 2 -- unless ``--skip-bad`` is given:
  then the row stays, with NaN values and the reason in the ``reason`` column,
  and the count is printed in the summary.
* ``--output`` is honoured wherever a command accepts it.
* An existing output file is refused without ``--overwrite`` (checked before any
  work is done). Run directories are work areas instead: a rerun with the same
  settings resumes and never rewrites finished results.
* Every file is written to a temporary file and renamed into place
  (:func:`gapforge.io.atomic_path`), so nothing is ever half-written.
* JSON is always valid: NaN and infinities are written as ``null``
  (:func:`gapforge.io.write_json`).
* An empty result keeps its full schema: every column, zero rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from gapforge.errors import FormulaError, InputError

SkipBadOpt = Annotated[
    bool,
    typer.Option(
        "--skip-bad",
        help="Keep going past formulas that cannot be used: their row gets NaN and the reason in the "
        "'reason' column, and the count is printed. Default: stop at the first one (exit code 2).",
    ),
]


_E = TypeVar("_E", bound=StrEnum)


def choice(flag: str, value: str, kinds: type[_E]) -> _E:
    """``value`` as a member of ``kinds``, or a one-line error naming the flag and its choices."""
    try:
        return kinds(value)
    except ValueError:
        choices = ", ".join(m.value for m in kinds)
        raise InputError(f"{flag} must be one of {choices}", value=value) from None


def refuse_existing(*paths: str | Path | None, overwrite: bool) -> None:
    """Refuse outputs that already exist unless ``overwrite`` (call before any work is done).

    Raises:
        InputError: one of ``paths`` exists and ``overwrite`` is false.
    """
    if overwrite:
        return
    for path in paths:
        if path is not None and Path(path).exists():
            raise InputError("output exists (use --overwrite to replace it)", path=path)


def check_table_output(path: str | Path | None, *, overwrite: bool) -> None:
    """A table output name: known extension (``.csv``/``.parquet``/``.json``) and not in the way."""
    from gapforge.io import table_format

    if path is None:
        return
    table_format(path)
    refuse_existing(path, overwrite=overwrite)


@dataclass(frozen=True)
class CheckedFormulas:
    """Formulas checked against the policy.

    Attributes:
        given: the formulas as given, in order.
        reduced: pymatgen's reduced formula of each (``""`` where it cannot be used).
        reasons: why a formula cannot be used (``""`` where it can).
    """

    given: tuple[str, ...]
    reduced: tuple[str, ...]
    reasons: tuple[str, ...]

    @property
    def n_bad(self) -> int:
        """How many formulas cannot be used."""
        return sum(1 for r in self.reasons if r)


def _where(path: str | Path | None, index: int) -> dict:
    """``InputError`` keywords naming row ``index`` (0-based) of a file, or argument ``index + 1``."""
    if path is None:
        return {"path": f"argument {index + 1}"}
    return {"path": path, "row": index + 1}


def check_formulas(
    values: Sequence[str], *, path: str | Path | None = None, skip_bad: bool = False
) -> CheckedFormulas:
    """Check every formula with :func:`gapforge.formula.normalize_formula` (each distinct one once).

    A formula is usable when pymatgen reads it, every element is known, and its
    amounts are integers or fractions that scale to integers (``Li0.5F0.5`` is
    ``LiF``; ``Li0.31416F`` is not a formula gapforge can key, so it is refused).

    Args:
        values: the formulas, as given.
        path: the table they came from (``None``: command-line arguments).
        skip_bad: keep going; the reasons are returned instead of raised.

    Raises:
        InputError: the first unusable formula, naming the file and row (or the argument).
    """
    from gapforge.formula import normalize_formula

    seen: dict[str, tuple[str, str]] = {}
    reduced, reasons = [], []
    for i, value in enumerate(values):
        text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
        if text not in seen:
            try:
                seen[text] = (normalize_formula(text), "")
            except FormulaError as exc:
                seen[text] = ("", str(exc))
        red, why = seen[text]
        if why and not skip_bad:
            raise InputError(f"{why} (use --skip-bad to keep going)", **_where(path, i))
        reduced.append(red)
        reasons.append(why)
    return CheckedFormulas(tuple(str(v) for v in values), tuple(reduced), tuple(reasons))


def refuse_model_reasons(
    reasons: Iterable[str], values: Sequence[str], *, path: str | Path | None, skip_bad: bool
) -> int:
    """Apply the policy to the reasons a model gave (e.g. an element the model has no embedding for).

    Returns:
        The number of rows with a reason.

    Raises:
        InputError: the first row with a reason, unless ``skip_bad``.
    """
    n_bad = 0
    for i, why in enumerate(reasons):
        if why:
            n_bad += 1
            if not skip_bad:
                raise InputError(f"{why} (use --skip-bad to keep going)", **_where(path, i))
    return n_bad


def usable_formulas(path: Path, *, skip_bad: bool) -> list[str]:
    """The usable formulas of a table's formula column, for a command that trains on them.

    Raises:
        InputError: unreadable/empty table, no formula column, or (without ``skip_bad``) the
            first formula that cannot be used, naming the file and row.
    """
    from gapforge.io import read_formula_column

    values = read_formula_column(path)
    checked = check_formulas(values, path=path, skip_bad=skip_bad)
    if checked.n_bad:
        typer.echo(f"{path}: skipped {checked.n_bad} of {len(values)} formulas that cannot be used", err=True)
    return [v for v, why in zip(values, checked.reasons, strict=True) if not why]


__all__ = [
    "CheckedFormulas",
    "SkipBadOpt",
    "check_formulas",
    "check_table_output",
    "refuse_existing",
    "refuse_model_reasons",
    "usable_formulas",
]

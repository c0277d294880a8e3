"""Column names of every table gapforge reads and writes (one place, never literals)."""

from __future__ import annotations

FORMULA = "formula"
BAND_GAP = "band_gap"  # eV
ID = "id"
SOURCE = "source"

BAND_GAP_MEAN = "band_gap_mean"  # eV
BAND_GAP_STD = "band_gap_std"  # eV
REASON = "reason"

#: Column names recognised as the formula column, in order of preference.
FORMULA_ALIASES: tuple[str, ...] = (
    "formula",
    "composition",
    "pretty_formula",
    "reduced_formula",
    "formula_pretty",
)
#: Column names recognised as the band-gap column (eV), in order of preference.
BAND_GAP_ALIASES: tuple[str, ...] = ("band_gap", "Eg", "eg", "gap", "bandgap")
#: Column names recognised as an identifier column.
ID_ALIASES: tuple[str, ...] = ("id", "material_id", "mpid", "task_id")

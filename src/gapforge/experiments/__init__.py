"""The paper's experiments (Table 1) with controls the paper lacks."""

from __future__ import annotations

from gapforge.experiments.table1 import (
    PAPER_TABLE1,
    Table1Result,
    Table1Settings,
    merge_table1,
    reproduce_table1,
)

__all__ = ["PAPER_TABLE1", "Table1Result", "Table1Settings", "merge_table1", "reproduce_table1"]

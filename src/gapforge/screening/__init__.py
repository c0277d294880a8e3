"""Screening generated formulas: filters (gap window, simplicity, SMACT validity, novelty) and the screen."""

from __future__ import annotations

from gapforge.screening.filters import in_window, is_novel, is_simple, known_formulas, smact_valid
from gapforge.screening.screen import ScreenResult, ScreenSettings, screen, screen_file
from gapforge.screening.validity import SmactChecker, SmactConfig

__all__ = [
    "ScreenResult",
    "ScreenSettings",
    "SmactChecker",
    "SmactConfig",
    "in_window",
    "is_novel",
    "is_simple",
    "known_formulas",
    "screen",
    "screen_file",
    "smact_valid",
]

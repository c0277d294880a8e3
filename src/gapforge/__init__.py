"""gapforge: active-learning-based generative design of materials with a target band gap."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]

"""The ``gapforge`` command line: one sub-command per pipeline stage.

Every module ``gapforge.cli.cmd_*`` is imported and registers its commands on
the shared application in :mod:`gapforge.cli._app`.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

from gapforge.cli._app import app
from gapforge.errors import GapforgeError

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name.startswith("cmd_"):
        importlib.import_module(f"{__name__}.{_info.name}")


def main() -> None:
    """Entry point of the ``gapforge`` console script."""
    try:
        app()
    except GapforgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


__all__ = ["app", "main"]

"""``python -m gapforge`` runs the command line."""

from gapforge.cli import main

main()

"""``python -m nnspec`` runs the CLI."""

from nnspec.cli import run

run()

"""``python -m nnspec`` runs the CLI."""

from nnspec.entry import run

run()

"""The ``nnspec`` console script: a plain ``nnspec validate FILES`` runs without importing typer
or rich (the command pre-commit runs on every commit; see ``benchmarks/cli_time.py``); every
other command line goes to the typer application in :mod:`nnspec.cli`."""

from __future__ import annotations

import os
import sys


def run() -> None:
    """Entry point of the ``nnspec`` command and of ``python -m nnspec``."""
    from nnspec.validate_command import fast_args

    kwargs = fast_args(sys.argv[1:])
    if kwargs is None:
        from nnspec.cli import run as run_cli

        run_cli()
        return
    from nnspec.validate_command import UsageError, say, validate_paths

    # nnspec's own pydantic models need no pydantic plugin; looking for them reads the metadata
    # of every installed distribution.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        code = validate_paths(**kwargs)
    except UsageError as exc:
        say(f"error: {exc}", stderr=True)
        code = 2
    except KeyboardInterrupt:
        say("interrupted", stderr=True)
        code = 130
    sys.exit(code)

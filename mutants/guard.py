"""A pytest plugin the mutation runner loads (``-p mutants.guard``) in every mutant's run.

It stops the run before any test when ``nnspec`` would be imported from anywhere but the mutant's
scratch copy (``NNSPEC_MUTANT_TREE``): the project's virtual environment has nnspec installed in
editable mode from the original checkout, and tests passing against that unmutated copy would
make every mutant look like a survivor.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Fail with a usage error (exit code 4) when ``nnspec`` is not the scratch copy's."""
    tree = os.environ.get("NNSPEC_MUTANT_TREE")
    if not tree:
        return
    import nnspec

    where = Path(nnspec.__file__).resolve()
    if not where.is_relative_to(Path(tree).resolve()):
        raise pytest.UsageError(
            f"mutants.guard: nnspec was imported from {where}, not from the mutant's copy {tree}"
        )

"""The built-in examples (``nnspec demo --example NAME``), wherever nnspec is installed from.

A wheel carries each example's spec as ``nnspec/examples/<name>/spec.yaml`` (copied from the
repository's ``examples/`` at build time by ``setup.py``); a source checkout or an editable
install reads ``examples/`` at the repository root, the one source of truth.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def examples_dir() -> Path:
    """The folder holding ``<name>/spec.yaml`` for every built-in example."""
    packaged = _PACKAGE / "examples"
    if packaged.is_dir():
        return packaged
    return _PACKAGE.parent / "examples"


def example_names() -> list[str]:
    """The built-in examples' names, sorted."""
    return sorted(p.parent.name for p in examples_dir().glob("*/spec.yaml"))


def example_spec(name: str) -> Path:
    """The spec file of the built-in example ``name`` (it may not exist: check ``name`` against
    :func:`example_names`)."""
    return examples_dir() / name / "spec.yaml"

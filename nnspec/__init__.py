"""nnspec: a declarative model-spec compiler for Keras and PyTorch.

The Python API (:mod:`nnspec.api`): :func:`load`, :func:`compile`, :func:`build`,
:func:`summary`, :class:`LoadedSpec`, :class:`Summary` and :class:`SpecError`. They are imported
on first use, so ``import nnspec`` (and the ``nnspec`` command) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "LoadedSpec",
    "SpecError",
    "Summary",
    "SummaryRow",
    "__version__",
    "build",
    "compile",
    "load",
    "summary",
]

if TYPE_CHECKING:
    from nnspec.api import LoadedSpec, Summary, SummaryRow, build, compile, load, summary
    from nnspec.spec.errors import SpecError

_API = {"LoadedSpec", "Summary", "SummaryRow", "build", "compile", "load", "summary"}


def __getattr__(name: str) -> Any:
    """The API names, imported from :mod:`nnspec.api` on first use."""
    if name in _API:
        from nnspec import api

        return getattr(api, name)
    if name == "SpecError":
        from nnspec.spec.errors import SpecError

        return SpecError
    raise AttributeError(f"module 'nnspec' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names, the lazily imported API included."""
    return sorted({*globals(), *__all__})

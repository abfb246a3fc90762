"""The oracle's array primitives in PyTorch (float64), and its forward and gradient runs.

See :mod:`tests.oracles.models` for the primitives' contract. Gradients come from autograd on
the canonical weights themselves, so they are in canonical layout by construction.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from tests.oracles.models import Model

DTYPE = torch.float64


def const(array: Any) -> torch.Tensor:
    """A float64 constant."""
    return torch.as_tensor(np.asarray(array, dtype=np.float64))


def take(table: torch.Tensor, ids: np.ndarray) -> torch.Tensor:
    """``table[ids]``: rows of a ``(N, D)`` table for integer ids of any shape."""
    return table[torch.as_tensor(np.asarray(ids, dtype=np.int64))]


def zeros(shape: tuple[int, ...]) -> torch.Tensor:
    """A float64 array of zeros."""
    return torch.zeros(tuple(shape), dtype=DTYPE)


def where(condition: np.ndarray, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a`` where ``condition`` (a numpy boolean array, broadcast), else ``b``."""
    return torch.where(torch.as_tensor(np.asarray(condition, dtype=bool)), a, b)


def reshape(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``x`` in ``shape`` (row-major)."""
    return x.reshape(shape)


def transpose(x: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
    """``x`` with its axes permuted."""
    return x.permute(axes)


def concat(xs: list[torch.Tensor], axis: int) -> torch.Tensor:
    """Join along an existing axis."""
    return torch.cat(xs, dim=axis)


def stack(xs: list[torch.Tensor], axis: int) -> torch.Tensor:
    """Join along a new axis."""
    return torch.stack(xs, dim=axis)


def split(x: torch.Tensor, parts: int, axis: int) -> list[torch.Tensor]:
    """``parts`` equal slices along ``axis``."""
    return list(torch.chunk(x, parts, dim=axis))


def sum(x: torch.Tensor, axis: int) -> torch.Tensor:
    """Sum over an axis."""
    return x.sum(dim=axis)


def mean(x: torch.Tensor, axis: int, keepdims: bool = False) -> torch.Tensor:
    """Mean over an axis."""
    return x.mean(dim=axis, keepdim=keepdims)


def max(x: torch.Tensor, axis: int) -> torch.Tensor:
    """Maximum over an axis."""
    return x.amax(dim=axis)


def softmax(x: torch.Tensor, axis: int) -> torch.Tensor:
    """Softmax over an axis."""
    return torch.softmax(x, dim=axis)


def clip(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``x`` clipped to ``[low, high]``."""
    return x.clamp(low, high)


matmul = torch.matmul
sigmoid = torch.sigmoid
tanh = torch.tanh
relu = torch.relu
erf = torch.erf
log = torch.log
sqrt = torch.sqrt

# This module is the ``ops`` namespace the models are written against.
OPS = sys.modules[__name__]


def forward(
    model: Model, state: dict[str, np.ndarray], inputs: dict[str, np.ndarray]
) -> np.ndarray:
    """The model's output for ``inputs`` under canonical weights ``state``."""
    with torch.no_grad():
        weights = {name: const(value) for name, value in state.items()}
        return model.forward(OPS, weights, inputs).numpy()


def value_and_gradients(
    model: Model,
    state: dict[str, np.ndarray],
    inputs: dict[str, np.ndarray],
    objective: Callable[[Any, Any], Any],
) -> tuple[float, dict[str, np.ndarray]]:
    """``objective(ops, output)`` and its gradients with respect to every weight with trainable
    entries, 0.0 at the entries that do not train."""
    weights = {
        name: const(value).requires_grad_(name in model.masks) for name, value in state.items()
    }
    value = objective(OPS, model.forward(OPS, weights, inputs))
    value.backward()
    grads = {}
    for name, mask in model.masks.items():
        grad = weights[name].grad
        grad = np.zeros(state[name].shape) if grad is None else grad.numpy()
        grads[name] = np.where(mask, grad, 0.0)
    return float(value.detach()), grads

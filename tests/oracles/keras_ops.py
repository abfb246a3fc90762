"""The oracle's array primitives in Keras 3 on TensorFlow (float64), and its forward and
gradient runs.

See :mod:`tests.oracles.models` for the primitives' contract. Gradients come from a
``tf.GradientTape`` watching the canonical weights themselves, so they are in canonical layout by
construction (a gathered table's sparse gradient is densified, repeated ids summed).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops as K

from tests.oracles.models import Model

DTYPE = "float64"


def const(array: Any) -> Any:
    """A float64 constant."""
    return K.convert_to_tensor(np.asarray(array, dtype=np.float64), dtype=DTYPE)


def take(table: Any, ids: np.ndarray) -> Any:
    """``table[ids]``: rows of a ``(N, D)`` table for integer ids of any shape."""
    return K.take(table, K.convert_to_tensor(np.asarray(ids, dtype=np.int64)), axis=0)


def zeros(shape: tuple[int, ...]) -> Any:
    """A float64 array of zeros."""
    return K.zeros(tuple(shape), dtype=DTYPE)


def where(condition: np.ndarray, a: Any, b: Any) -> Any:
    """``a`` where ``condition`` (a numpy boolean array, broadcast), else ``b``."""
    return K.where(K.convert_to_tensor(np.asarray(condition, dtype=bool)), a, b)


def reshape(x: Any, shape: tuple[int, ...]) -> Any:
    """``x`` in ``shape`` (row-major)."""
    return K.reshape(x, shape)


def transpose(x: Any, axes: tuple[int, ...]) -> Any:
    """``x`` with its axes permuted."""
    return K.transpose(x, axes)


def concat(xs: list[Any], axis: int) -> Any:
    """Join along an existing axis."""
    return K.concatenate(xs, axis=axis)


def stack(xs: list[Any], axis: int) -> Any:
    """Join along a new axis."""
    return K.stack(xs, axis=axis)


def split(x: Any, parts: int, axis: int) -> list[Any]:
    """``parts`` equal slices along ``axis``."""
    return K.split(x, parts, axis=axis)


def sum(x: Any, axis: int) -> Any:
    """Sum over an axis."""
    return K.sum(x, axis=axis)


def mean(x: Any, axis: int, keepdims: bool = False) -> Any:
    """Mean over an axis."""
    return K.mean(x, axis=axis, keepdims=keepdims)


def max(x: Any, axis: int) -> Any:
    """Maximum over an axis."""
    return K.max(x, axis=axis)


def softmax(x: Any, axis: int) -> Any:
    """Softmax over an axis."""
    return K.softmax(x, axis=axis)


def clip(x: Any, low: float, high: float) -> Any:
    """``x`` clipped to ``[low, high]``."""
    return K.clip(x, low, high)


matmul = K.matmul
sigmoid = K.sigmoid
tanh = K.tanh
relu = K.relu
erf = K.erf
log = K.log
sqrt = K.sqrt

# This module is the ``ops`` namespace the models are written against.
OPS = sys.modules[__name__]


def forward(
    model: Model, state: dict[str, np.ndarray], inputs: dict[str, np.ndarray]
) -> np.ndarray:
    """The model's output for ``inputs`` under canonical weights ``state``."""
    weights = {name: const(value) for name, value in state.items()}
    return keras.ops.convert_to_numpy(model.forward(OPS, weights, inputs))


def value_and_gradients(
    model: Model,
    state: dict[str, np.ndarray],
    inputs: dict[str, np.ndarray],
    objective: Callable[[Any, Any], Any],
) -> tuple[float, dict[str, np.ndarray]]:
    """``objective(ops, output)`` and its gradients with respect to every weight with trainable
    entries, 0.0 at the entries that do not train."""
    weights = {name: const(value) for name, value in state.items()}
    trained = list(model.masks)
    with tf.GradientTape() as tape:
        tape.watch([weights[name] for name in trained])
        value = objective(OPS, model.forward(OPS, weights, inputs))
    raw = tape.gradient(value, [weights[name] for name in trained])
    grads = {}
    for name, grad in zip(trained, raw, strict=True):
        grad = np.zeros(state[name].shape) if grad is None else tf.convert_to_tensor(grad).numpy()
        grads[name] = np.where(model.masks[name], grad, 0.0)
    return float(value), grads

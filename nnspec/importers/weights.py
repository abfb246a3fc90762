"""A Keras model's weights in canonical form (see :mod:`nnspec.compiler.ir`): names
``<owner>.<param>``, Keras' own layouts (dense kernels ``[in, out]``, conv kernels
``[kernel_size, in, filters]``, recurrent gates in Keras' order), Keras' single LSTM bias as the
input bias with a zero recurrent bias, the GRU's ``[2, 3 * units]`` bias split in two, and
multi-head attention's per-head kernels reshaped to ``[E, E]``."""

from __future__ import annotations

from typing import Any

import numpy as np

from nnspec.importers.common import WeightPlan


def _np(variable: Any) -> np.ndarray:
    return np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable)


def _recurrent_direction(layer: Any, prefix: str) -> dict[str, np.ndarray]:
    cell = layer.cell
    kernel = _np(cell.kernel)
    bias = _np(cell.bias)
    if bias.ndim == 2:  # GRU reset_after: rows are the input and recurrent biases
        input_bias, recurrent_bias = bias[0], bias[1]
    else:  # LSTM: one bias, on the input side
        input_bias, recurrent_bias = bias, np.zeros_like(bias)
    return {
        f"{prefix}.kernel": kernel,
        f"{prefix}.recurrent_kernel": _np(cell.recurrent_kernel),
        f"{prefix}.input_bias": input_bias,
        f"{prefix}.recurrent_bias": recurrent_bias,
    }


def _dense_pair(dense: Any, prefix: str, width: int) -> dict[str, np.ndarray]:
    kernel = _np(dense.kernel)
    if prefix.endswith(".output"):
        kernel = kernel.reshape(-1, kernel.shape[-1])  # (heads, head_dim, E) -> (E, E)
    else:
        kernel = kernel.reshape(width, -1)  # (E, heads, head_dim) -> (E, E)
    return {f"{prefix}.kernel": kernel, f"{prefix}.bias": _np(dense.bias).reshape(-1)}


def layer_weights(plan: WeightPlan, layer: Any) -> dict[str, np.ndarray]:
    """The canonical weights of one planned spec layer (or table) from its Keras layer."""
    owner = plan.owner
    if plan.kind == "embedding":
        return {f"{owner}.embeddings": _np(layer.embeddings)}
    if plan.kind in ("dense", "conv1d"):
        if not hasattr(layer, "kernel") and hasattr(layer, "layer"):  # TimeDistributed(Dense)
            layer = layer.layer
        out = {f"{owner}.kernel": _np(layer.kernel)}
        if getattr(layer, "use_bias", True) and layer.bias is not None:
            out[f"{owner}.bias"] = _np(layer.bias)
        return out
    if plan.kind == "layer_norm":
        return {f"{owner}.gamma": _np(layer.gamma), f"{owner}.beta": _np(layer.beta)}
    if plan.kind == "batch_norm":
        return {
            f"{owner}.gamma": _np(layer.gamma),
            f"{owner}.beta": _np(layer.beta),
            f"{owner}.moving_mean": _np(layer.moving_mean),
            f"{owner}.moving_variance": _np(layer.moving_variance),
        }
    if plan.kind == "recurrent":
        if hasattr(layer, "forward_layer"):
            out = _recurrent_direction(layer.forward_layer, f"{owner}.forward")
            out.update(_recurrent_direction(layer.backward_layer, f"{owner}.backward"))
            return out
        return _recurrent_direction(layer, f"{owner}.forward")
    if plan.kind == "self_attention":
        width = int(_np(layer._query_dense.kernel).shape[0])
        out = {}
        for part, dense in (
            ("query", layer._query_dense),
            ("key", layer._key_dense),
            ("value", layer._value_dense),
            ("output", layer._output_dense),
        ):
            out.update(_dense_pair(dense, f"{owner}.{part}", width))
        return out
    raise ValueError(f"no weight conversion for {plan.kind!r}")


def canonical_weights(model: Any, plans: list[WeightPlan]) -> dict[str, np.ndarray]:
    """Every planned weight of the live Keras ``model``, by canonical name (float32 or the
    model's own float dtype)."""
    state: dict[str, np.ndarray] = {}
    for plan in plans:
        state.update(layer_weights(plan, model.get_layer(plan.keras_layer)))
    return {name: np.ascontiguousarray(value) for name, value in state.items()}

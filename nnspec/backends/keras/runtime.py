"""Adapts generated Keras code to the parity harness: numpy in, numpy out (see
:mod:`nnspec.backends.base`). This module imports Keras on the engine ``KERAS_BACKEND`` names
(TensorFlow without its C++ start-up log lines, :mod:`nnspec.backends.keras.startup`); gradients
come from ``tf.GradientTape`` on TensorFlow, ``jax.grad`` on JAX and ``torch.autograd`` on torch."""

from __future__ import annotations

import importlib.util
import inspect
import itertools
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from nnspec.backends.keras.startup import tensorflow_start_up_held_back

with tensorflow_start_up_held_back():
    import keras

    ENGINE = keras.backend.backend()
    if ENGINE == "tensorflow":
        import tensorflow as tf

_counter = itertools.count()


def load_module(model_py: Path) -> ModuleType:
    """Import a generated ``model.py`` under a fresh module name."""
    spec = importlib.util.spec_from_file_location(f"nnspec_keras_model_{next(_counter)}", model_py)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {model_py}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(module: ModuleType, dtype: str) -> Any:
    """A built model whose every layer computes in ``dtype``."""
    if dtype == "float64":
        keep_float64()
    return module.build_model(dtype)


def keep_float64() -> None:
    """Let float64 computations stay float64 on the JAX and torch engines.

    JAX computes in float32 unless ``jax_enable_x64`` is set. And Keras' type promotion (up to
    at least 3.15.1) maps every 64-bit result type to its 32-bit one on engines other than
    TensorFlow, so ``keras.ops.matmul`` (hence ``Dense``), ``ops.tanh`` and others compute float64
    inputs in float32 (keras-team/keras issue 23223, fixed upstream by pull request 23225). When
    this Keras demotes, the harness applies that fix: float64 promotes to float64.
    """
    if ENGINE == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
    if keras.backend.result_type("float64", "float64") != "float64":
        from keras.src.backend.common import dtypes

        dtypes.BIT64_TO_BIT32_DTYPE["float64"] = "float64"


def set_state(model: Any, state: dict[str, np.ndarray]) -> None:
    """Load canonical weights."""
    model.load_canonical_state(state)


def get_state(model: Any) -> dict[str, np.ndarray]:
    """The canonical weights."""
    return model.canonical_state()


def forward(model: Any, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """The output in inference mode."""
    return keras.ops.convert_to_numpy(model(inputs, training=False))


def gradients(
    model: Any, inputs: dict[str, np.ndarray], cotangent: np.ndarray
) -> dict[str, np.ndarray]:
    """Canonical gradients of ``sum(output * cotangent)`` in inference mode (0.0 at frozen rows)."""
    if ENGINE == "tensorflow":
        with tf.GradientTape() as tape:
            output = model(inputs, training=False)
            total = tf.reduce_sum(output * tf.cast(cotangent, output.dtype))
        return model.canonical_gradients(tape.gradient(total, model.trainable_variables))

    def total_of(trainable, non_trainable):
        output, non_trainable = model.stateless_call(trainable, non_trainable, inputs)
        total = keras.ops.sum(output * keras.ops.cast(cotangent, output.dtype))
        return total, non_trainable

    grads, _ = _engine_gradients(model, total_of)
    return model.canonical_gradients(grads)


def _engine_gradients(model: Any, loss_of: Any) -> tuple[list[Any], Any]:
    """JAX and torch: the gradients of the loss ``loss_of(trainable, non_trainable)`` returns
    first, with respect to the model's trainable values, and what it returns second."""
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    if ENGINE == "jax":
        import jax

        return jax.grad(loss_of, has_aux=True)(trainable, non_trainable)
    import torch

    loss, aux = loss_of(trainable, non_trainable)
    return list(torch.autograd.grad(loss, trainable, allow_unused=True)), aux


def logits_flag(model: Any) -> dict[str, bool]:
    """The keyword asking a model trained from its logits for them (what its ``loss_fn``
    takes): ``{"logits": True}``; none for other models."""
    return {"logits": True} if "logits" in inspect.signature(model.call).parameters else {}


def train(
    module: ModuleType,
    model: Any,
    batches: Iterable[tuple[dict[str, np.ndarray], np.ndarray]],
) -> list[float]:
    """One step of the generated optimizer on the generated loss per batch.

    The model runs in training mode with every dropout rate set to 0.0 for the steps: batch
    normalization normalizes with batch statistics and updates its moving ones, as the IR's
    training semantics say, and nothing is random. The optimizer is made with ``floatx`` set to
    the model's dtype, as a float64 Keras user would have it, so that its learning rate is
    stored exactly (Keras keeps it in ``floatx``).
    """
    floatx = keras.config.floatx()
    keras.config.set_floatx(model.dtype)
    try:
        optimizer = module.make_optimizer(model)
    finally:
        keras.config.set_floatx(floatx)
    dropouts = [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.Dropout)
    ]
    rates = [layer.rate for layer in dropouts]
    logits = logits_flag(model)
    losses = []
    try:
        for layer in dropouts:
            layer.rate = 0.0
        for inputs, labels in batches:
            if ENGINE == "tensorflow":
                with tf.GradientTape() as tape:
                    outputs = model(inputs, training=True, **logits)
                    loss = module.loss_fn(tf.convert_to_tensor(labels), outputs)
                grads = tape.gradient(loss, model.trainable_variables)
            else:

                def loss_of(trainable, non_trainable, inputs=inputs, labels=labels):
                    outputs, non_trainable = model.stateless_call(
                        trainable, non_trainable, inputs, training=True, **logits
                    )
                    loss = module.loss_fn(keras.ops.convert_to_tensor(labels), outputs)
                    return loss, (loss, non_trainable)

                grads, (loss, updated) = _engine_gradients(model, loss_of)
                for variable, value in zip(model.non_trainable_variables, updated, strict=True):
                    variable.assign(value)  # batch normalization's moving statistics
            optimizer.apply(list(grads), model.trainable_variables)
            losses.append(float(keras.ops.convert_to_numpy(loss)))
    finally:
        for layer, rate in zip(dropouts, rates, strict=True):
            layer.rate = rate
    return losses

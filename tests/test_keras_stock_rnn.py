"""The generated Keras LSTM and GRU are the stock layers (``keras.layers.LSTM`` and ``GRU``), so
that on a GPU they run cuDNN, and they compute exactly the IR's function there too.

The LSTM is ``keras.layers.LSTM`` over a cell with PyTorch's two trained biases whose ``bias``
(what every stock implementation reads) is their sum; the GRU is stock ``keras.layers.GRU``
(``reset_after``: PyTorch's two biases as its ``(2, 3H)`` bias). No GPU here, so the fused
kernels are replaced by a stand-in with cuDNN's contract, as Keras calls it with TensorFlow on a
GPU (``backend.lstm`` / ``backend.gru``: kernels, the one ``bias`` argument, a mask turned into
sequence lengths, which must be post-padding with no empty row, and outputs 0.0 after each
row's length): the whole model must then give the numpy reference's outputs and the generic
step loop's gradients, in float64 to 1e-10, on a batch with padded tails and an all-padding row.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from nnspec.backends.base import write_tree
from nnspec.backends.keras import BACKEND
from nnspec.parity import random_batch, random_state, scaled_diff
from nnspec.reference import forward as reference
from tests import ir_examples_arch

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
runtime = BACKEND.runtime()
ops = keras.ops
TOLERANCE = 1e-10  # float64, scaled as nnspec.parity.scaled_diff


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """The recurrent program, its float64 Keras model loaded with random canonical weights, the
    weights, and the generated source."""
    program = ir_examples_arch.recurrent()
    out = tmp_path_factory.mktemp("stock_rnn")
    files = BACKEND.generate(program)
    write_tree(files, out)
    model = runtime.build(runtime.load_module(Path(out) / "model.py"), "float64")
    state = random_state(program, np.random.default_rng(0))
    runtime.set_state(model, state)
    return program, model, state, files["model.py"]


def test_recurrent_layers_are_the_stock_layers(loaded):
    _, model, state, source = loaded
    assert "keras.layers.RNN(" not in source
    lstms = [model.lstm.forward_layer, model.lstm.backward_layer, model.lstm_last]
    grus = [model.gru.forward_layer, model.gru.backward_layer, model.gru_seq]
    assert all(isinstance(layer, keras.layers.LSTM) for layer in lstms)
    assert all(type(layer) is keras.layers.GRU for layer in grus)
    assert all(layer.cell.reset_after and layer.use_cudnn == "auto" for layer in grus)
    assert all(layer.use_cudnn == "auto" for layer in lstms)
    # Each LSTM cell holds the two canonical biases, and hands the stock code their sum.
    prefixes = ("lstm.forward", "lstm.backward", "lstm_last.forward")
    for layer, prefix in zip(lstms, prefixes, strict=True):
        cell = layer.cell
        assert [v.name for v in cell.weights] == [
            "kernel",
            "recurrent_kernel",
            "input_bias",
            "recurrent_bias",
        ]
        want = state[f"{prefix}.input_bias"] + state[f"{prefix}.recurrent_bias"]
        np.testing.assert_array_equal(ops.convert_to_numpy(cell.bias), want)
        assert len(layer._layers) == 1  # the stock cell it replaced is gone


def _lengths(mask):
    """cuDNN's view of a mask: each row's length, after checking what cuDNN accepts (Keras'
    ``_assert_valid_mask``): post-padding, and no row without a valid step."""
    mask = np.asarray(ops.convert_to_numpy(mask), dtype=bool)
    lengths = mask.sum(axis=1)
    assert np.array_equal(mask, np.arange(mask.shape[1])[None, :] < lengths[:, None])
    assert lengths.min() >= 1, "cuDNN rejects a row without a valid step"
    return lengths


def _fused(step, inputs, states, mask, return_sequences, go_backwards):
    """A fused recurrent kernel as Keras runs cuDNN with TensorFlow (``_cudnn_lstm``): steps
    past each row's length leave the state alone and output 0.0; backwards, each row is
    reversed within its length, and the outputs come back in reversed time order."""
    length = inputs.shape[1]
    lengths = _lengths(mask) if mask is not None else np.full(inputs.shape[0], length)
    t = np.arange(length)[None, :]
    order = np.where(t < lengths[:, None], lengths[:, None] - 1 - t, t) if go_backwards else None
    if order is not None:
        inputs = ops.take_along_axis(inputs, order[:, :, None], axis=1)
    outputs = []
    for k in range(length):
        valid = ops.convert_to_tensor((k < lengths)[:, None])
        h, new = step(inputs[:, k], states)
        states = [ops.where(valid, n, s) for n, s in zip(new, states, strict=True)]
        outputs.append(ops.where(valid, h, ops.zeros_like(h)))
    outputs = ops.stack(outputs, axis=1)
    if order is not None:
        outputs = ops.flip(ops.take_along_axis(outputs, order[:, :, None], axis=1), axis=1)
    last = states[0]
    return last, outputs if return_sequences else ops.expand_dims(last, 1), states


def fused_kernels(monkeypatch):
    """Replace Keras' fused LSTM and GRU (cuDNN on a GPU) by the stand-in; the calls made."""
    from keras.src import backend

    calls = []

    def lstm(inputs, h, c, mask, **kw):
        calls.append(("lstm", kw["bias"]))
        assert kw["activation"] is keras.activations.tanh
        assert kw["recurrent_activation"] is keras.activations.sigmoid
        kernel, recurrent_kernel, bias = kw["kernel"], kw["recurrent_kernel"], kw["bias"]

        def step(x, states):
            z = ops.matmul(x, kernel) + ops.matmul(states[0], recurrent_kernel) + bias
            i, f, g, o = ops.split(z, 4, axis=-1)
            c = ops.sigmoid(f) * states[1] + ops.sigmoid(i) * ops.tanh(g)
            h = ops.sigmoid(o) * ops.tanh(c)
            return h, [h, c]

        return _fused(step, inputs, [h, c], mask, kw["return_sequences"], kw["go_backwards"])

    def gru(inputs, h, mask, **kw):
        calls.append(("gru", kw["bias"]))
        kernel, recurrent_kernel, bias = kw["kernel"], kw["recurrent_kernel"], kw["bias"]
        assert kw["reset_after"] and tuple(bias.shape)[:1] == (2,)  # cuDNN's GRU: two biases

        def step(x, states):
            xz, xr, xh = ops.split(ops.matmul(x, kernel) + bias[0], 3, axis=-1)
            hz, hr, hh = ops.split(ops.matmul(states[0], recurrent_kernel) + bias[1], 3, axis=-1)
            z, r = ops.sigmoid(xz + hz), ops.sigmoid(xr + hr)
            h = z * states[0] + (1 - z) * ops.tanh(xh + r * hh)
            return h, [h]

        return _fused(step, inputs, [h], mask, kw["return_sequences"], kw["go_backwards"])

    monkeypatch.setattr(backend, "lstm", lstm)
    monkeypatch.setattr(backend, "gru", gru)
    return calls


def _gradients(model, inputs, cotangent):
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(model(inputs, training=False) * cotangent)
    return model.canonical_gradients(tape.gradient(total, model.trainable_variables))


def test_fused_kernels_compute_the_reference(loaded, monkeypatch):
    """Outputs against the reference, gradients against the step loop (which
    ``tests/test_parity_arch.py`` compares with PyTorch), through the cuDNN stand-in."""
    program, model, state, _ = loaded
    inputs, _ = random_batch(program, np.random.default_rng(1), 6)
    assert not inputs["tokens"][-1].any()  # an all-padding row
    rng = np.random.default_rng(2)
    cotangent = rng.normal(size=(6, *program.node(program.outputs[0]).shape[1:]))
    loop = _gradients(model, inputs, cotangent)  # Keras' CPU fallback: the generic step loop
    calls = fused_kernels(monkeypatch)
    got = runtime.forward(model, inputs)
    assert sorted(kind for kind, _ in calls) == ["gru"] * 3 + ["lstm"] * 3
    bias = calls[0][1]
    assert tuple(bias.shape) == (16,)  # the LSTM's one bias: the sum of the two
    want = reference(program, state, inputs)
    assert scaled_diff(got, want) <= TOLERANCE
    grads = _gradients(model, inputs, cotangent)
    assert sorted(grads) == sorted(loop)
    for name, grad in loop.items():
        assert scaled_diff(grads[name], grad) <= TOLERANCE, name
    for prefix in ("lstm.forward", "lstm.backward", "lstm_last.forward"):
        bias = grads[f"{prefix}.input_bias"]
        np.testing.assert_array_equal(bias, grads[f"{prefix}.recurrent_bias"])

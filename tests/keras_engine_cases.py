"""Shared by the tests that run the generated Keras ``model.py`` on Keras' JAX and PyTorch engines
in subprocesses (``test_keras_engines``, ``test_keras_without_tensorflow``): the case each
example folder holds, and the subprocess code that computes the model's output and takes one
optimizer step there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from nnspec.backends.train_script import input_vocab_sizes
from nnspec.compiler import ir

# Defines ``output_and_step(folder)``: in a folder written by ``write_case``, the output in
# inference mode (output.npy), then one optimizer step in training mode, dropout off
# (stepped.safetensors). The gradients are the engine's own: torch.autograd on torch, jax.grad
# of the stateless call on JAX. Returns the engine's name.
OUTPUT_AND_STEP = """
import importlib.util, inspect, sys
import numpy as np
import keras


def output_and_step(folder):
    engine = keras.backend.backend()
    sys.modules.pop("model", None)
    sys.path.insert(0, folder)
    import model as generated

    sys.path.pop(0)
    m = generated.build_model("float32")
    m.load_canonical(folder + "/weights.safetensors")
    inputs = dict(np.load(folder + "/inputs.npz"))
    np.save(folder + "/output.npy", keras.ops.convert_to_numpy(m(inputs, training=False)))
    labels = np.load(folder + "/labels.npy")
    for layer in m._flatten_layers():
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0
    optimizer = generated.make_optimizer(m)
    logits = {"logits": True} if "logits" in inspect.signature(m.call).parameters else {}

    def loss_of(trainable, non_trainable):
        y_pred, _ = m.stateless_call(trainable, non_trainable, inputs, training=True, **logits)
        return generated.loss_fn(labels, y_pred)

    trainable = [v.value for v in m.trainable_variables]
    non_trainable = [v.value for v in m.non_trainable_variables]
    if engine == "jax":
        import jax

        grads = jax.grad(loss_of)(trainable, non_trainable)
    else:
        import torch

        loss = loss_of(trainable, non_trainable)
        grads = torch.autograd.grad(loss, trainable, allow_unused=True)
    optimizer.apply(list(grads), m.trainable_variables)
    m.save_canonical(folder + "/stepped.safetensors")
    return engine
"""


def write_case(
    program: ir.Program, folder: Path, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Write what ``output_and_step`` reads into ``folder`` (beside a generated ``model.py``):
    random canonical weights (float32, padding rows deliberately not 0.0), 4 examples of ids
    with a row of padding only, and labels that suit the loss. Returns ``(state, inputs)``."""
    state = {w.name: rng.normal(0, 0.3, w.shape).astype(np.float32) for w in program.weights}
    vocab = input_vocab_sizes(program)
    inputs = {}
    for inp in program.inputs:
        ids = rng.integers(0, vocab[inp.name], (4, *inp.dims)).astype(np.int32)
        ids[0, ...] = 0  # a row of padding only
        inputs[inp.name] = ids
    *positions, classes = program.node(program.outputs[0]).shape[1:]
    labels = rng.integers(0, classes, (4, *positions)).astype(np.int32)
    if program.training.loss != "sparse_categorical_crossentropy":
        labels = np.eye(classes, dtype=np.float32)[labels]
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "weights.safetensors"))
    np.savez(folder / "inputs.npz", **inputs)
    np.save(folder / "labels.npy", labels)
    return state, inputs


def assert_policies_kept(program: ir.Program, state: dict[str, np.ndarray], folder: Path) -> int:
    """After ``output_and_step``: padding rows exactly 0.0 and frozen rows bit-identical in
    ``stepped.safetensors``; returns how many weights the step moved."""
    from safetensors.numpy import load_file

    stepped = load_file(str(folder / "stepped.safetensors"))
    moved = 0
    for w in program.weights:
        before = state[w.name].astype(np.float32)
        before[list(w.zero_rows)] = 0.0  # loading sets padding rows to 0.0
        after = stepped[w.name]
        assert np.all(after[list(w.zero_rows)] == 0.0), f"{w.name}: padding rows are not 0.0"
        if w.state:
            continue
        if w.trainable == "none":
            assert after.tobytes() == before.tobytes(), f"{w.name} changed"
        elif w.trainable == "rows":
            frozen = sorted(set(range(w.shape[0])) - set(w.trainable_ids()) - set(w.zero_rows))
            assert after[frozen].tobytes() == before[frozen].tobytes(), f"{w.name} moved"
        moved += not np.array_equal(after, before)
    return moved

"""The generated Keras ``model.py`` is plain Keras 3: it imports no TensorFlow, and the same model
runs on Keras' PyTorch and JAX engines (``KERAS_BACKEND=torch``, ``KERAS_BACKEND=jax``) with the
numbers of the reference semantics: every example, a row of padding only included, in float32 at
the parity harness's float32 tolerance against the float32 reference. After one step of the
generated optimizer on the generated loss, on each engine, padding rows are exactly 0.0 and
frozen rows bit-identical.

float64, and training against the PyTorch backend, are compared on each engine by
``tests/test_parity_engine_*.py`` (``nnspec parity --backend keras-<engine>``).

One subprocess per engine runs every example in turn (the engine starts once).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from nnspec import backends, reference
from nnspec.backends.base import write_tree
from nnspec.backends.train_script import input_vocab_sizes
from nnspec.parity import TOLERANCES
from tests.conftest import EXAMPLE_NAMES
from tests.parity_helpers import example_at_test_size

pytest.importorskip("keras")
ENGINES = [e for e in ("torch", "jax") if importlib.util.find_spec(e) is not None]

# For every example folder on the command line: the output in inference mode (output.npy), then
# one optimizer step in training mode, dropout off (stepped.safetensors). The gradients are the
# engine's own: torch.autograd on torch, jax.grad of the stateless call on JAX.
RUN = """
import inspect, json, sys
import numpy as np
import keras

engine = keras.backend.backend()
for folder in sys.argv[1:]:
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

        grads = torch.autograd.grad(loss_of(trainable, non_trainable), trainable, allow_unused=True)
    optimizer.apply(list(grads), m.trainable_variables)
    m.save_canonical(folder + "/stepped.safetensors")
    print(json.dumps({"backend": engine, "folder": folder}), flush=True)
"""


@pytest.fixture(scope="module")
def engine_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Per engine: the examples' folders (program, weights, inputs, and what RUN wrote)."""
    root = tmp_path_factory.mktemp("keras_engines")
    cases = {}
    for name in EXAMPLE_NAMES:
        program = example_at_test_size(name)
        files = backends.get("keras").generate(program)
        rng = np.random.default_rng(3)
        state = {w.name: rng.normal(0, 0.3, w.shape) for w in program.weights}
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
        cases[name] = (program, files["model.py"], state, inputs, labels)
    processes = {}
    for engine in ENGINES:
        folders = []
        for name, (_, model_py, state, inputs, labels) in cases.items():
            folder = root / engine / name
            write_tree({"model.py": model_py}, folder)
            save_file(state, str(folder / "weights.safetensors"))
            np.savez(folder / "inputs.npz", **inputs)
            np.save(folder / "labels.npy", labels)
            folders.append(str(folder))
        env = os.environ | {"KERAS_BACKEND": engine, "OMP_NUM_THREADS": "1"}
        processes[engine] = subprocess.Popen(
            [sys.executable, "-c", RUN, *folders],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    runs = {}
    for engine, process in processes.items():
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
        reports = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
        assert {r["backend"] for r in reports} == {engine}
        assert len(reports) == len(cases)
        runs[engine] = {name: (root / engine / name, *case) for name, case in cases.items()}
    return runs


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_every_example_runs_on_the_engine_like_the_reference(engine_runs, engine, name):
    folder, program, model_py, state, inputs, _ = engine_runs[engine][name]
    assert "import tensorflow" not in model_py
    got = np.load(folder / "output.npy")
    want = reference.forward(program, state, inputs, dtype="float32")
    tolerance = TOLERANCES["float32"]["outputs"] * max(1.0, float(np.abs(want).max()))
    assert np.abs(got - want).max() <= tolerance


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_an_optimizer_step_keeps_pad_and_frozen_rows(engine_runs, engine, name):
    folder, program, _, state, _, _ = engine_runs[engine][name]
    stepped = load_file(str(Path(folder) / "stepped.safetensors"))
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
    assert moved, "the step changed no weight"

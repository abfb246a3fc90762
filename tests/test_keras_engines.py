"""The generated Keras ``model.py`` is plain Keras 3: it imports no TensorFlow, and the same model
runs on Keras' PyTorch engine (``KERAS_BACKEND=torch``) with the numbers of the reference
semantics: every example, a row of padding only included, in float32 at the parity harness's
float32 tolerance against the float32 reference. (float64 is not compared: Keras' torch engine
converts float64 numpy arrays to ``floatx``.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import save_file

from nnspec import backends, reference
from nnspec.backends.base import write_tree
from nnspec.backends.train_script import input_vocab_sizes
from nnspec.parity import TOLERANCES
from tests.conftest import EXAMPLE_NAMES
from tests.parity_helpers import example_at_test_size

pytest.importorskip("keras")
pytest.importorskip("torch")

RUN = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import model as generated
m = generated.build_model("float32")
m.load_canonical(sys.argv[1] + "/weights.safetensors")
inputs = dict(np.load(sys.argv[1] + "/inputs.npz"))
import keras
result = keras.ops.convert_to_numpy(m(inputs, training=False))
np.save(sys.argv[1] + "/output.npy", result)
print(json.dumps({"backend": keras.backend.backend()}))
"""


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_every_example_runs_on_keras_torch_engine_like_the_reference(name, tmp_path):
    program = example_at_test_size(name)
    files = backends.get("keras").generate(program)
    assert "import tensorflow" not in files["model.py"]
    write_tree({"model.py": files["model.py"]}, tmp_path)
    rng = np.random.default_rng(3)
    state = {w.name: rng.normal(0, 0.3, w.shape) for w in program.weights}
    save_file(state, str(tmp_path / "weights.safetensors"))
    vocab = input_vocab_sizes(program)
    inputs = {}
    for inp in program.inputs:
        ids = rng.integers(0, vocab[inp.name], (4, *inp.dims)).astype(np.int32)
        ids[0, ...] = 0  # a row of padding only
        inputs[inp.name] = ids
    np.savez(tmp_path / "inputs.npz", **inputs)
    env = os.environ | {"KERAS_BACKEND": "torch", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", RUN, str(tmp_path)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.splitlines()[-1]) == {"backend": "torch"}
    got = np.load(tmp_path / "output.npy")
    want = reference.forward(program, state, inputs, dtype="float32")
    tolerance = TOLERANCES["float32"]["outputs"] * max(1.0, float(np.abs(want).max()))
    assert np.abs(got - want).max() <= tolerance

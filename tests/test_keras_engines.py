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

from nnspec import backends, reference
from nnspec.backends.base import write_tree
from nnspec.parity import TOLERANCES
from tests.conftest import EXAMPLE_NAMES
from tests.keras_engine_cases import OUTPUT_AND_STEP, assert_policies_kept, write_case
from tests.parity_helpers import example_at_test_size

pytest.importorskip("keras")
ENGINES = [e for e in ("torch", "jax") if importlib.util.find_spec(e) is not None]

# For every example folder on the command line: output_and_step (see tests/keras_engine_cases).
RUN = (
    OUTPUT_AND_STEP
    + """
import json

for folder in sys.argv[1:]:
    engine = output_and_step(folder)
    print(json.dumps({"backend": engine, "folder": folder}), flush=True)
"""
)


@pytest.fixture(scope="module")
def engine_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Per engine: the examples' folders (program, weights, inputs, and what RUN wrote)."""
    root = tmp_path_factory.mktemp("keras_engines")
    cases = {}
    for name in EXAMPLE_NAMES:
        program = example_at_test_size(name)
        cases[name] = (program, backends.get("keras").generate(program)["model.py"])
    processes, states = {}, {}
    for engine in ENGINES:
        folders = []
        for name, (program, model_py) in cases.items():
            folder = root / engine / name
            write_tree({"model.py": model_py}, folder)
            states[engine, name] = write_case(program, folder, np.random.default_rng(3))
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
        runs[engine] = {
            name: (root / engine / name, program, model_py, *states[engine, name])
            for name, (program, model_py) in cases.items()
        }
    return runs


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_every_example_runs_on_the_engine_like_the_reference(engine_runs, engine, name):
    folder, program, model_py, state, inputs = engine_runs[engine][name]
    assert "import tensorflow" not in model_py
    got = np.load(folder / "output.npy")
    want = reference.forward(program, state, inputs, dtype="float32")
    tolerance = TOLERANCES["float32"]["outputs"] * max(1.0, float(np.abs(want).max()))
    assert np.abs(got - want).max() <= tolerance


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_an_optimizer_step_keeps_pad_and_frozen_rows(engine_runs, engine, name):
    folder, program, _, state, _ = engine_runs[engine][name]
    assert assert_policies_kept(program, state, Path(folder)), "the step changed no weight"

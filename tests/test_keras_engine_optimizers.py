"""The generated PyTorch-rule optimizers on Keras' JAX and PyTorch engines: the same cases as
``tests/test_keras_backend.py`` checks on TensorFlow (SGD with momentum, Nesterov and weight
decay; Adam with L2 decay and clipping; AdamW), six steps on a toy embedding problem whose ids
repeat, in float64, against PyTorch's rules transcribed to numpy, within 1e-12. On PyTorch the
update runs in place under ``torch.no_grad``, as ``torch.optim`` does; on JAX it is the
functional form. One subprocess per engine runs every case (the engine starts once).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnspec.backends.base import write_tree
from nnspec.backends.keras import BACKEND
from tests import ir_examples
from tests.test_keras_backend import (
    OPTIMIZER_CASES,
    case_id,
    torch_rules,
    toy_problem,
    with_training,
)

ENGINES = [e for e in ("jax", "torch") if importlib.util.find_spec(e) is not None]

# For each folder: six steps of the generated optimizer in float64 on the engine, the
# gradients of the toy loss from the engine's autograd; writes result.npz.
RUN = """
import sys
import numpy as np
import keras
from nnspec.backends.keras import runtime

runtime.keep_float64()
engine = keras.backend.backend()
for folder in sys.argv[1:]:
    module = runtime.load_module(folder + "/model.py")
    with np.load(folder + "/problem.npz") as saved:
        problem = dict(saved)
    table, w = (keras.Variable(problem[k], dtype="float64") for k in ("table", "w"))
    holder = type("Holder", (), {"trainable_variables": [table, w]})()
    optimizer = module.make_optimizer(holder, lr=float(problem["lr"]))
    ids, target = (keras.ops.convert_to_tensor(problem[k]) for k in ("ids", "target"))

    def loss_of(table_value, w_value):
        h = keras.ops.take(table_value, ids, axis=0)
        return keras.ops.mean((keras.ops.einsum("bld,d->b", h, w_value) - target) ** 2)

    for _ in range(int(problem["steps"])):
        if engine == "jax":
            import jax

            grads = jax.grad(loss_of, argnums=(0, 1))(table.value, w.value)
        else:
            import torch

            grads = torch.autograd.grad(loss_of(table.value, w.value), [table.value, w.value])
        optimizer.apply(list(grads), [table, w])
    np.savez(folder + "/result.npz", table=keras.ops.convert_to_numpy(table),
             w=keras.ops.convert_to_numpy(w))
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, dict]]:
    """Per engine, per case: the trained ``table`` and ``w``."""
    root = tmp_path_factory.mktemp("engine_optimizers")
    params, ids, target, lr, steps = toy_problem()
    folders = {}
    for case in OPTIMIZER_CASES:
        program = with_training(ir_examples.flat_classifier(), lr=0.25, **case)
        folder = root / case_id(case)
        write_tree({"model.py": BACKEND.generate(program)["model.py"]}, folder)
        np.savez(
            folder / "problem.npz", table=params[0], w=params[1], ids=ids, target=target,
            lr=lr, steps=steps,
        )  # fmt: skip
        folders[case_id(case)] = folder
    processes = {
        engine: subprocess.Popen(
            [sys.executable, "-c", RUN, *map(str, folders.values())],
            env=os.environ | {"KERAS_BACKEND": engine, "OMP_NUM_THREADS": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for engine in ENGINES
    }
    out: dict[str, dict[str, dict]] = {}
    for engine, process in processes.items():
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
        out[engine] = {}
        for key, folder in folders.items():
            with np.load(Path(folder) / "result.npz") as saved:
                out[engine][key] = dict(saved)
    return out


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", OPTIMIZER_CASES, ids=case_id)
def test_optimizer_follows_pytorch_rules_on_the_engine(results, engine, case):
    params, ids, target, lr, steps = toy_problem()
    program = with_training(ir_examples.flat_classifier(), lr=0.25, **case)
    want = torch_rules(program.training.optimizer, params, ids, target, lr, steps)
    got = results[engine][case_id(case)]
    for name, expected in zip(("table", "w"), want, strict=True):
        np.testing.assert_allclose(got[name], expected, rtol=1e-12, atol=1e-12)
    assert not np.allclose(got["table"], params[0])

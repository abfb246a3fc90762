"""``nnspec import --check``: the original Keras model against the imported spec compiled for
every installed backend, on the same random batches, with the converted weights."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from nnspec.compiler import ir
from nnspec.parity import REFERENCE, Comparison, ParityReport, generate_all, installed, scaled_diff

KERAS_ORIGINAL = "keras original"
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}


def random_ids(program: ir.Program, rng: np.random.Generator, batch: int) -> dict[str, np.ndarray]:
    """Random ids per input: post-padded sequences (at least one id each) where the table has
    a pad id, else ids anywhere in the vocabulary."""
    from nnspec.parity import input_vocab

    vocab = input_vocab(program)
    out = {}
    for inp in program.inputs:
        size, pad = vocab.get(inp.name, (2, None))
        dims = inp.dims
        ids = rng.integers(0, size, size=(batch, *dims))
        if pad is not None:
            ids[ids == pad] = (pad + 1) % size
            lengths = rng.integers(1, dims[-1] + 1, size=(batch, *dims[:-1]))
            ids[np.arange(dims[-1]) >= lengths[..., None]] = pad
        out[inp.name] = ids.astype(inp.dtype)
    return out


def check(
    keras_model: Any,
    program: ir.Program,
    weights: dict[str, np.ndarray],
    batches: int = 2,
    batch: int = 8,
    seed: int = 0,
    dtype: str = "float32",
) -> ParityReport:
    """Each installed backend's outputs (inference) against the Keras model's, in ``dtype``
    (float64: the Keras model is rebuilt from its config in float64, see :func:`in_dtype`), on
    ``batches`` random batches; one comparison per backend and model output, the worst
    batch's."""
    from nnspec import backends

    names = installed()
    rng = np.random.default_rng(seed)
    data = [random_ids(program, rng, batch) for _ in range(batches)]
    keras_model = in_dtype(keras_model, dtype)
    want = [_keras_forward(keras_model, program, x) for x in data]
    report = ParityReport((KERAS_ORIGINAL, *names), dtype)
    state = {k: v.astype(dtype) for k, v in weights.items()}
    with tempfile.TemporaryDirectory(prefix="nnspec-import-") as tmp:
        paths = generate_all(program, Path(tmp), list(names))
        for name in names:
            runtime = backends.get(name).runtime()
            model = runtime.build(runtime.load_module(paths[name]), dtype)
            runtime.set_state(model, state)
            got = [_forward(name, runtime, model, x, program) for x in data]
            for output in program.outputs:
                pairs = zip(got, want, strict=True)
                diff = max(scaled_diff(g[output], w[output]) for g, w in pairs)
                report.comparisons.append(
                    Comparison("outputs", output, diff, TOLERANCE[dtype], name, KERAS_ORIGINAL)
                )
    return report


def _forward(
    backend: str, runtime: Any, model: Any, inputs: dict[str, np.ndarray], program: ir.Program
) -> dict[str, np.ndarray]:
    """A generated model's outputs by name in inference mode. The backends' runtimes return
    one output; a model with several returns a dict (Keras) or a tuple (PyTorch)."""
    if len(program.outputs) == 1:
        return {program.outputs[0]: runtime.forward(model, inputs)}
    if backend == "torch":
        import torch

        model.eval()
        with torch.no_grad():
            tensors = {k: torch.as_tensor(v) for k, v in inputs.items()}
            return _by_output(model(**tensors), program)
    return _by_output(model(inputs, training=False), program)


def _by_output(value: Any, program: ir.Program) -> dict[str, np.ndarray]:
    """A model's result by output name: one array, a list in output order, or a dict."""
    names = program.outputs
    if isinstance(value, dict):
        return {name: _numpy(value[name]) for name in names}
    if isinstance(value, list | tuple):
        return {name: _numpy(v) for name, v in zip(names, value, strict=True)}
    return {names[0]: _numpy(value)}


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu()
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


def in_dtype(model: Any, dtype: str) -> Any:
    """``model`` itself in float32; else the same functional or Sequential model rebuilt from
    its config with every layer's dtype policy set to ``dtype``, and its weights cast."""
    if dtype == "float32":
        return model
    clone = type(model).from_config(_with_dtype(model.get_config(), dtype))
    weights = model.get_weights()
    clone.set_weights([w.astype(dtype) if w.dtype.kind == "f" else w for w in weights])
    return clone


def _with_dtype(config: Any, dtype: str) -> Any:
    """``config`` with every float dtype policy replaced by ``dtype``."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy":
            return {**config, "config": {**config.get("config", {}), "name": dtype}}
        out = {k: _with_dtype(v, dtype) for k, v in config.items()}
        if out.get("dtype") == "float32":
            out["dtype"] = dtype
        return out
    if isinstance(config, list):
        return [_with_dtype(v, dtype) for v in config]
    return config


def _keras_forward(
    model: Any, program: ir.Program, inputs: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The Keras model's outputs on ``inputs`` (given in the spec's input order), by the spec's
    output names (the Keras outputs are in the same order)."""
    arrays = [inputs[inp.name] for inp in program.inputs]
    return _by_output(model(arrays if len(arrays) > 1 else arrays[0], training=False), program)


__all__ = ["KERAS_ORIGINAL", "REFERENCE", "check", "random_ids"]

"""Cross-backend parity: the same canonical weights and batch in every backend, compared.

Used by ``nnspec parity`` and by the test suite. Imports frameworks only through each backend's
``runtime`` module, when called.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnspec import backends
from nnspec.compiler import ir

# Tolerances on max |a - b| / max(1, max |reference|): stated here, reported with every result.
# float64 is the semantic check: a difference above round-off there is a real disagreement.
# In float32, outputs and gradients are compared at fixed tolerances; trained weights (and the
# training losses) are not: Adam's division by sqrt(v) turns the round-off of gradients that
# nearly cancel (|g| a few times eps) into weight differences of up to about lr per step, in
# each backend independently. Their float32 tolerance is derived instead (see ``compare``): the
# same recipe also runs in float64, and each backend's own float32-vs-float64 distance, summed,
# plus the float64 tolerance, bounds the float32 difference between the backends.
TOLERANCES = {
    "float64": {"outputs": 1e-10, "gradients": 1e-10, "training": 1e-9},
    "float32": {"outputs": 1e-6, "gradients": 1e-5},
}


@dataclass
class Comparison:
    """One compared quantity: its scaled max difference and the tolerance it must meet."""

    what: str
    name: str
    diff: float
    tolerance: float

    @property
    def ok(self) -> bool:
        """Within tolerance (NaN never is)."""
        return self.diff <= self.tolerance


@dataclass
class ParityReport:
    """Every comparison made between two backends at one dtype."""

    reference: str
    other: str
    dtype: str
    comparisons: list[Comparison] = field(default_factory=list)
    # Per weight: how far training moved it in the reference backend (scaled as scaled_diff),
    # to tell whether a training comparison can fail at all.
    movement: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """All comparisons within tolerance."""
        return all(c.ok for c in self.comparisons)

    def failures(self) -> list[str]:
        """One line per comparison over its tolerance."""
        return [
            f"{self.dtype} {c.what} {c.name}: {c.diff:.3e} > {c.tolerance:.3e}"
            for c in self.comparisons
            if not c.ok
        ]

    def worst(self, what: str) -> float:
        """Largest scaled difference among comparisons of kind ``what``."""
        return max((c.diff for c in self.comparisons if c.what == what), default=0.0)


def scaled_diff(a: np.ndarray, b: np.ndarray) -> float:
    """``max|a - b| / max(1, max|b|)``: absolute for values up to 1, relative beyond."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return math.inf
    if a.size == 0:
        return 0.0
    diff = float(np.max(np.abs(a - b)))
    return diff / max(1.0, float(np.max(np.abs(b))))


def input_vocab(program: ir.Program) -> dict[str, tuple[int, int | None]]:
    """For each input: the vocabulary size it is looked up in and its pad id (if any)."""
    out: dict[str, tuple[int, int | None]] = {}

    def seen(name: str, size: int, pad: int | None) -> None:
        vocab, first_pad = out.get(name, (size, pad))
        out[name] = (min(vocab, size), first_pad)

    for node in program.nodes:
        if isinstance(node.op, ir.EmbeddingLookup):
            table = program.table(node.op.table)
            seen(node.inputs[0], table.vocab_size, table.pad_index)
        elif isinstance(node.op, ir.MemoryNetwork):
            for name in node.inputs:
                seen(name, node.op.vocab_size, node.op.pad_index)
    return out


def random_state(program: ir.Program, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random canonical weights of a useful scale, with padding rows at 0.0."""
    state = {}
    for w in program.weights:
        fan_in = w.shape[0] if len(w.shape) > 1 else 1
        scale = 0.5 if w.name.endswith((".embeddings", ".positional")) else 1 / math.sqrt(fan_in)
        values = rng.normal(0.0, scale, size=w.shape)
        if w.state:  # moving statistics: a variance must be positive
            values = np.abs(values) + 0.5
        for row in w.zero_rows:
            values[row] = 0.0
        state[w.name] = values
    return state


def random_batch(
    program: ir.Program, rng: np.random.Generator, batch: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Random ids (with padded tails where the table has a pad id, and one all-pad row) and
    labels that suit the loss."""
    vocab = input_vocab(program)
    inputs = {}
    for inp in program.inputs:
        size, pad = vocab.get(inp.name, (2, None))
        dims = inp.dims
        ids = rng.integers(0, size, size=(batch, *dims))
        if pad is not None:
            # Post-padded sequences of random length (the last axis); the last example is all
            # padding, and in a 3-D input (memories) one memory of each example is padding.
            ids[ids == pad] = (pad + 1) % size
            lengths = rng.integers(1, dims[-1] + 1, size=(batch, *dims[:-1]))
            ids[np.arange(dims[-1]) >= lengths[..., None]] = pad
            if len(dims) > 1:
                ids[np.arange(batch), rng.integers(0, dims[0], size=batch)] = pad
            ids[-1] = pad
        inputs[inp.name] = ids.astype(inp.dtype)
    width = int(program.node(program.outputs[0]).shape[-1] or 1)
    loss = program.training.loss
    if loss == "sparse_categorical_crossentropy":
        labels = rng.integers(0, width, size=batch)
    elif loss == "categorical_crossentropy":
        labels = np.eye(width)[rng.integers(0, width, size=batch)]
    elif loss == "binary_crossentropy":
        labels = rng.integers(0, 2, size=(batch, width)).astype(np.float64)
    else:
        labels = rng.normal(size=(batch, width))
    return inputs, labels


def _cast(values: dict[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    return {k: v.astype(dtype) for k, v in values.items()}


def generate_all(program: ir.Program, out: Path, names: list[str]) -> dict[str, Path]:
    """Generate each backend's code under ``out/<backend>``; returns the model.py paths."""
    paths = {}
    for name in names:
        files = backends.get(name).generate(program)
        for rel, text in files.items():
            target = out / name / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        paths[name] = out / name / "model.py"
    return paths


def _run(
    program: ir.Program,
    dtype: str,
    names: tuple[str, str],
    state: dict[str, np.ndarray],
    inputs: dict[str, np.ndarray],
    cotangent: np.ndarray,
    batches: list[tuple[dict[str, np.ndarray], np.ndarray]],
    workdir: Path | None,
    train_only: bool = False,
) -> list[dict[str, Any]]:
    """Each backend's outputs, gradients, training losses and trained weights, in ``dtype``
    (only the losses and weights with ``train_only``)."""
    state = _cast(state, dtype)
    cotangent = cotangent.astype(dtype)
    batches = [(x, y.astype(dtype) if y.dtype.kind == "f" else y) for x, y in batches]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="nnspec-parity-") as tmp:
        paths = generate_all(program, Path(workdir or tmp), list(names))
        for name in names:
            runtime = backends.get(name).runtime()
            module = runtime.load_module(paths[name])
            model = runtime.build(module, dtype)
            runtime.set_state(model, state)
            result: dict[str, Any] = {}
            if not train_only:
                result["outputs"] = runtime.forward(model, inputs)
                result["gradients"] = runtime.gradients(model, inputs, cotangent)
            result["losses"] = np.asarray(runtime.train(module, model, batches))
            result["state"] = runtime.get_state(model)
            results.append(result)
    return results


def compare(
    program: ir.Program,
    dtype: str = "float64",
    names: tuple[str, str] = ("torch", "keras"),
    batch: int = 4,
    steps: int = 5,
    seed: int = 0,
    workdir: Path | None = None,
) -> ParityReport:
    """Run ``program`` in two backends from the same weights and batches and compare outputs,
    gradients of ``sum(output * cotangent)``, and the losses and weights of ``steps`` optimizer
    steps.

    Every weight of either backend is compared (one that only one backend has fails). In float32
    the training comparisons' tolerance is derived, per weight: the same weights and batches are
    also trained in float64, and the float32 difference between the backends may be at most the
    sum of each backend's own float32-vs-float64 distance plus the float64 tolerance -- the
    triangle inequality through the float64 results, so a correct pair of backends always meets
    it, and a pair that disagrees in float64 does not.
    """
    rng = np.random.default_rng(seed)
    state = random_state(program, rng)
    inputs, _ = random_batch(program, rng, batch)
    out_shape = (batch, *program.node(program.outputs[0]).shape[1:])
    cotangent = rng.normal(size=out_shape)
    batches = [random_batch(program, rng, batch) for _ in range(steps)]

    tol = TOLERANCES[dtype]
    report = ParityReport(names[0], names[1], dtype)
    if dtype != "float64":  # the values the float64 reference also starts from
        state, cotangent = _cast(state, dtype), cotangent.astype(dtype)
        batches = [(x, y.astype(dtype) if y.dtype.kind == "f" else y) for x, y in batches]
    ref, other = _run(program, dtype, names, state, inputs, cotangent, batches, workdir)
    if dtype == "float64":

        def training_tolerance(key: str, name: str) -> float:
            return tol["training"]

    else:
        ref64, other64 = _run(
            program, "float64", names, state, inputs, cotangent, batches, workdir, train_only=True
        )

        def own_distance(run: dict, run64: dict, key: str, name: str) -> float:
            """A backend's own float32-vs-float64 distance (scaled as ``scaled_diff``)."""
            if key == "losses":
                return scaled_diff(run["losses"], run64["losses"])
            if name not in run["state"] or name not in run64["state"]:
                return 0.0
            return scaled_diff(run["state"][name], run64["state"][name])

        def training_tolerance(key: str, name: str) -> float:
            return (
                own_distance(ref, ref64, key, name)
                + own_distance(other, other64, key, name)
                + TOLERANCES["float64"]["training"]
            )

    report.comparisons.append(
        Comparison(
            "outputs",
            program.outputs[0],
            scaled_diff(other["outputs"], ref["outputs"]),
            tol["outputs"],
        )
    )
    for name in sorted(set(ref["gradients"]) | set(other["gradients"])):
        diff = (
            scaled_diff(other["gradients"][name], ref["gradients"][name])
            if name in ref["gradients"] and name in other["gradients"]
            else math.inf
        )
        report.comparisons.append(Comparison("gradients", name, diff, tol["gradients"]))
    losses = scaled_diff(other["losses"], ref["losses"])
    report.comparisons.append(
        Comparison("training", "losses", losses, training_tolerance("losses", "losses"))
    )
    for name in sorted(set(ref["state"]) | set(other["state"])):
        diff = (
            scaled_diff(other["state"][name], ref["state"][name])
            if name in ref["state"] and name in other["state"]
            else math.inf
        )
        report.comparisons.append(
            Comparison("training", name, diff, training_tolerance("state", name))
        )
        if name in ref["state"] and name in state:
            report.movement[name] = scaled_diff(ref["state"][name], state[name])
    return report

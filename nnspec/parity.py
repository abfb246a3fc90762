"""Parity: every installed backend against the reference semantics and against each other.

Each backend runs the same canonical weights and batches. Its outputs are compared with
:mod:`nnspec.reference` (the numpy interpreter of the IR); its gradients, training losses and
weights after optimizer steps with those of the first backend (by name), the baseline. Used by
``nnspec parity`` and by the test suite. Imports frameworks only through each backend's
``runtime`` module, when called; nothing here names a backend.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from nnspec import backends, engine_worker, reference
from nnspec.compiler import ir

REFERENCE = "reference"
"""The name the numpy reference goes by in reports."""

# Tolerances on max |a - b| / max(1, max |baseline|): stated here, reported with every result.
# float64 is the semantic check: a difference above round-off there is a real disagreement. Outputs
# are compared with the reference run in the same dtype (in float32 the reference computes in
# float32 too), at a fixed tolerance; so are gradients between backends. Trained weights (and the
# training losses) in float32 are not: Adam's division by sqrt(v) turns the round-off of gradients
# that nearly cancel (|g| a few times eps) into weight differences of up to about lr per step, in
# each backend independently. Their float32 tolerance is derived instead (see ``compare``): the same
# recipe also runs in float64, and the two backends' own float32-vs-float64 distances, summed, plus
# the float64 tolerance, bound the float32 difference between them.
TOLERANCES = {
    "float64": {"outputs": 1e-12, "gradients": 1e-10, "training": 1e-9},
    "float32": {"outputs": 1e-6, "gradients": 1e-5},
}


@dataclass
class Comparison:
    """One compared quantity of one backend: its scaled max difference from ``against`` (the
    reference or the baseline backend) and the tolerance it must meet."""

    what: str
    name: str
    diff: float
    tolerance: float
    backend: str = ""
    against: str = REFERENCE
    # float32 training only: the float32-vs-float64 distances of ``against`` and of ``backend``
    # on the same recipe (their own rounding, scaled like ``diff``), which the tolerance sums.
    rounding: tuple[float, float] | None = None

    @property
    def ok(self) -> bool:
        """Within tolerance (NaN never is)."""
        return self.diff <= self.tolerance


@dataclass
class ParityReport:
    """Every comparison made at one dtype: each backend's outputs against the reference, and
    each backend after the first (the baseline) against it for gradients and training."""

    backends: tuple[str, ...]
    dtype: str
    comparisons: list[Comparison] = field(default_factory=list)
    # Per weight: how far training moved it in the baseline backend (scaled as scaled_diff),
    # to tell whether a training comparison can fail at all.
    movement: dict[str, float] = field(default_factory=dict)

    @property
    def baseline(self) -> str:
        """The backend the others' gradients and training are compared with."""
        return self.backends[0]

    @property
    def ok(self) -> bool:
        """All comparisons within tolerance."""
        return all(c.ok for c in self.comparisons)

    def failures(self) -> list[str]:
        """One line per comparison over its tolerance."""
        return [
            f"{self.dtype} {c.what} {c.name} {c.backend} vs {c.against}: "
            f"{c.diff:.3e} > {c.tolerance:.3e}"
            + (
                ""
                if c.rounding is None
                else f" (own float32 rounding {c.rounding[0]:.3e} + {c.rounding[1]:.3e})"
            )
            for c in self.comparisons
            if not c.ok
        ]

    def worst(self, what: str) -> float:
        """Largest scaled difference among comparisons of kind ``what``."""
        return max((c.diff for c in self.comparisons if c.what == what), default=0.0)

    def rows(self) -> list[tuple[str, str, str, dict[str, Comparison]]]:
        """The comparisons grouped per compared tensor, in order: ``(what, name, against,
        {backend: comparison})``."""
        grouped: dict[tuple[str, str], tuple[str, dict[str, Comparison]]] = {}
        for c in self.comparisons:
            grouped.setdefault((c.what, c.name), (c.against, {}))[1][c.backend] = c
        return [(what, name, against, cells) for (what, name), (against, cells) in grouped.items()]


@cache
def installed() -> tuple[str, ...]:
    """The backends whose framework is installed (their ``runtime`` imports), in name order."""
    found = []
    for name, backend in backends.available().items():
        try:
            backend.runtime()
        except ImportError:
            continue
        found.append(name)
    return tuple(found)


def scaled_diff(a: np.ndarray, b: np.ndarray) -> float:
    """``max|a - b| / max(1, max|b|)``: absolute for values up to 1, relative beyond."""
    b = np.asarray(b, dtype=np.float64)
    return max_abs_diff(a, b) / scale_of(b)


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """``max|a - b|`` computed in float64 (infinity when the shapes differ, 0.0 when empty)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return math.inf
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)))


def scale_of(b: np.ndarray) -> float:
    """``max(1, max|b|)``: what :func:`scaled_diff` divides by."""
    b = np.asarray(b)
    return max(1.0, float(np.max(np.abs(b)))) if b.size else 1.0


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
    program: ir.Program, rng: np.random.Generator, batch: int, all_pad_rows: bool = True
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Random ids (post-padded sequences of at least one id where the table has a pad id; with
    ``all_pad_rows``, also an example of padding only and, in a 3-D input, one memory of
    padding only per example) and labels that suit the loss."""
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
            if all_pad_rows and len(dims) > 1:
                ids[np.arange(batch), rng.integers(0, dims[0], size=batch)] = pad
            if all_pad_rows:
                ids[-1] = pad
        inputs[inp.name] = ids.astype(inp.dtype)
    width = int(program.node(program.outputs[0]).shape[-1] or 1)
    loss = program.training.loss
    labels: np.ndarray
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
    """Generate each backend's code under ``out/<backend>``; returns the model.py paths. A
    name may be an engine run (``keras-jax``): its backend's code is generated."""
    paths = {}
    for name in names:
        files = backends.get(resolve(name)[0]).generate(program)
        for rel, text in files.items():
            target = out / name / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        paths[name] = out / name / "model.py"
    return paths


@cache
def participants() -> tuple[str, ...]:
    """What ``nnspec parity`` runs by default: every installed backend, then each backend's
    other installed engines as ``<backend>-<engine>`` (``keras-jax``, ``keras-torch``), each run
    in a subprocess."""
    engine_runs = [
        f"{name}-{engine}" for name in installed() for engine in backends.get(name).other_engines()
    ]
    return (*installed(), *engine_runs)


def resolve(name: str) -> tuple[str, str | None]:
    """``(backend, engine)`` of a participant name: ``("torch", None)`` for a backend run in this
    process, ``("keras", "jax")`` for ``keras-jax``. ``KeyError`` naming the known ones."""
    available = backends.available()
    if name in available:
        return name, None
    for backend in available.values():
        for engine in backend.engines():
            if name == f"{backend.name}-{engine}":
                return backend.name, engine
    known = [*available, *(f"{b.name}-{e}" for b in available.values() for e in b.engines())]
    raise KeyError(f"unknown backend {name!r}; known: {', '.join(known)}")


Batches = list[tuple[dict[str, np.ndarray], np.ndarray]]


def run_backend(
    backend: str,
    model_py: Path,
    jobs: list[tuple[str, bool]],
    state: dict[str, np.ndarray],
    inputs: dict[str, np.ndarray],
    cotangent: np.ndarray,
    batches: Batches,
) -> list[dict[str, Any]]:
    """Run one backend's generated ``model_py`` in this process, once per ``(dtype, train_only)``
    job: its outputs and gradients (unless ``train_only``), training losses and trained weights,
    all in the job's dtype."""
    runtime = backends.get(backend).runtime()
    module = runtime.load_module(model_py)
    results = []
    for dtype, train_only in jobs:
        model = runtime.build(module, dtype)
        runtime.set_state(model, _cast(state, dtype))
        result: dict[str, Any] = {}
        if not train_only:
            result["outputs"] = runtime.forward(model, inputs)
            result["gradients"] = runtime.gradients(model, inputs, cotangent.astype(dtype))
        cast = [(x, y.astype(dtype) if y.dtype.kind == "f" else y) for x, y in batches]
        result["losses"] = np.asarray(runtime.train(module, model, cast))
        result["state"] = runtime.get_state(model)
        results.append(result)
    return results


def _run(
    program: ir.Program,
    jobs: list[tuple[str, bool]],
    names: tuple[str, ...],
    state: dict[str, np.ndarray],
    inputs: dict[str, np.ndarray],
    cotangent: np.ndarray,
    batches: Batches,
    workdir: Path | None,
) -> list[dict[str, dict[str, Any]]]:
    """Per ``(dtype, train_only)`` job, each backend's results (see :func:`run_backend`) by name.
    A backend on another engine runs every job in one subprocess."""
    results: list[dict[str, dict[str, Any]]] = [{} for _ in jobs]
    with tempfile.TemporaryDirectory(prefix="nnspec-parity-") as tmp:
        paths = generate_all(program, Path(workdir or tmp), list(names))
        for name in names:
            backend, engine = resolve(name)
            if engine is None:
                ran = run_backend(backend, paths[name], jobs, state, inputs, cotangent, batches)
            else:
                job = (state, inputs, cotangent, batches)
                ran = engine_worker.run(backend, engine, paths[name], jobs, *job)
            for by_name, result in zip(results, ran, strict=True):
                by_name[name] = result
    return results


def _trained(run: dict[str, Any], key: str | None) -> np.ndarray | None:
    """A run's training losses (``key`` None) or its trained weight ``key`` (None if absent)."""
    return np.asarray(run["losses"]) if key is None else run["state"].get(key)


def _versus(a: dict[str, np.ndarray], b: dict[str, np.ndarray], name: str) -> float:
    """``scaled_diff(a[name], b[name])``, or infinity when only one of them has it."""
    return scaled_diff(a[name], b[name]) if name in a and name in b else math.inf


def compare(
    program: ir.Program,
    dtype: str = "float64",
    names: tuple[str, ...] | None = None,
    batch: int = 4,
    steps: int = 5,
    seed: int = 0,
    workdir: Path | None = None,
) -> ParityReport:
    """Run ``program`` in every backend of ``names`` (default: every installed one; a name may
    also be an engine run such as ``keras-jax``, see :func:`participants`) from the same weights
    and batches: compare each backend's outputs with :func:`nnspec.reference.forward`
    (in ``dtype``), and each backend after the first with the first for the gradients of
    ``sum(output * cotangent)`` and the losses and weights of ``steps`` optimizer steps.

    Every weight of either backend is compared (one that only one backend has fails). In float32
    the training comparisons' tolerance is derived, per weight: the same weights and batches are
    also trained in float64, and the float32 difference between two backends may be at most the
    sum of each one's own float32-vs-float64 distance (all three as ``max|diff|`` over the same
    ``max(1, max|baseline|)``; reported in :attr:`Comparison.rounding`) plus the float64
    tolerance -- the triangle inequality through the float64 results, so a correct pair of
    backends always meets it, and a pair that disagrees in float64 does not.
    """
    names = tuple(installed() if names is None else names)
    if not names:
        raise RuntimeError("no backend is installed: nothing to compare with the reference")
    rng = np.random.default_rng(seed)
    state = random_state(program, rng)
    inputs, _ = random_batch(program, rng, batch)
    out_shape = (batch, *(int(d or 0) for d in program.node(program.outputs[0]).shape[1:]))
    cotangent = rng.normal(size=out_shape)
    batches = [random_batch(program, rng, batch) for _ in range(steps)]

    tol = TOLERANCES[dtype]
    report = ParityReport(names, dtype)
    if dtype != "float64":  # the values the float64 runs also start from
        state, cotangent = _cast(state, dtype), cotangent.astype(dtype)
        batches = [(x, y.astype(dtype) if y.dtype.kind == "f" else y) for x, y in batches]
    # In float32 the same recipe also trains in float64, for the derived training tolerance.
    jobs = [(dtype, False)] + ([("float64", True)] if dtype != "float64" else [])
    runs, *rest = _run(program, jobs, names, state, inputs, cotangent, batches, workdir)
    runs64 = rest[0] if rest else None
    base = names[0]

    def training(name: str, key: str | None) -> Comparison:
        """Backend ``name``'s training losses (``key`` None) or trained weight ``key`` against
        the baseline's; in float32 with the derived tolerance."""
        label = "losses" if key is None else key
        want, got = _trained(runs[base], key), _trained(runs[name], key)
        if runs64 is None:
            diff = math.inf if want is None or got is None else scaled_diff(got, want)
            return Comparison("training", label, diff, tol["training"], name, base)
        want64, got64 = _trained(runs64[base], key), _trained(runs64[name], key)
        if want is None or got is None or want64 is None or got64 is None:
            return Comparison("training", label, math.inf, 0.0, name, base)  # only some have it
        # |got - want| <= |got - got64| + |got64 - want64| + |want64 - want|, every term scaled
        # by the same max(1, max|want|): each backend's own rounding plus the float64 bound.
        scale = scale_of(want)
        rounding = (max_abs_diff(want, want64) / scale, max_abs_diff(got, got64) / scale)
        tolerance = rounding[0] + rounding[1] + TOLERANCES["float64"]["training"]
        diff = max_abs_diff(got, want) / scale
        return Comparison("training", label, diff, tolerance, name, base, rounding)

    output = program.outputs[0]
    want = reference.forward(program, state, inputs, dtype)
    for name in names:
        diff = scaled_diff(runs[name]["outputs"], want)
        report.comparisons.append(Comparison("outputs", output, diff, tol["outputs"], name))
    others = names[1:]
    grads = sorted(set().union(*(runs[n]["gradients"] for n in names)))
    for weight in grads:
        for name in others:
            diff = _versus(runs[name]["gradients"], runs[base]["gradients"], weight)
            report.comparisons.append(
                Comparison("gradients", weight, diff, tol["gradients"], name, base)
            )
    report.comparisons += [training(name, None) for name in others]
    for weight in sorted(set().union(*(runs[n]["state"] for n in names))):
        report.comparisons += [training(name, weight) for name in others]
        if weight in runs[base]["state"] and weight in state:
            report.movement[weight] = scaled_diff(runs[base]["state"][weight], state[weight])
    return report

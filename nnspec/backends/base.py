"""What every backend provides, and the helpers they share.

A backend is one subpackage of :mod:`nnspec.backends` whose ``__init__`` exposes ``BACKEND``, an
instance of a :class:`Backend` subclass. Importing it must not import its framework: only its
``runtime`` module (used by ``nnspec parity`` and the tests) may.

The generated ``model.py`` of every backend offers the same API:

* ``class <ClassName>``: the model (``torch.nn.Module`` / ``keras.Model``); called with one
  keyword argument (torch) or a dict (Keras) per model input; returns the output tensor.
* ``build_model(dtype="float32")``: a built model with fresh initial weights.
* ``model.canonical_state()`` / ``model.load_canonical_state(state)``: the weights as a
  ``dict[str, numpy.ndarray]`` in canonical names and layouts (see :mod:`nnspec.compiler.ir`).
* ``model.save_canonical(path)`` / ``model.load_canonical(path)``: the same, as safetensors.
* ``loss_fn(y_true, y_pred)`` and ``make_optimizer(model, ...)``: the spec's loss and optimizer
  with the exact semantics of :class:`nnspec.compiler.ir.Training` and
  :class:`nnspec.compiler.ir.Optimizer`.

And a ``train.py`` that trains the model from an ``.npz`` file.

The ``runtime`` module of a backend adapts generated code to the parity harness with these
functions (numpy in, numpy out):

* ``load_module(model_py: Path) -> ModuleType``
* ``build(module, dtype: str) -> model``
* ``set_state(model, state: dict[str, np.ndarray])`` / ``get_state(model) -> dict``
* ``forward(model, inputs: dict[str, np.ndarray]) -> np.ndarray`` (inference mode)
* ``gradients(model, inputs, cotangent) -> dict[str, np.ndarray]``: gradients of
  ``sum(output * cotangent)`` (inference mode) with respect to every weight that has trainable
  scalars, in canonical layout, 0.0 at frozen rows.
* ``train(module, model, batches) -> list[float]``: one optimizer step per ``(inputs, labels)``
  batch with the generated loss and optimizer, dropout disabled; returns the losses.
"""

from __future__ import annotations

import functools
import importlib
import keyword
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, TypeVar

import jinja2

from nnspec import __version__
from nnspec.compiler import ir


class UnsupportedOpError(Exception):
    """A backend has no emitter for an IR op."""

    def __init__(self, backend: str, op: object, node: str) -> None:
        self.backend = backend
        self.op_name = getattr(op, "op", type(op).__name__)
        super().__init__(
            f"backend {backend!r} cannot emit op {self.op_name!r} (node {node!r}): "
            f"no emitter is registered for it"
        )


class Backend(ABC):
    """A code generator for one framework.

    Subclasses set :attr:`name` and :attr:`emitters` (their op table: IR op type -> emit
    function) and implement :meth:`generate`.
    """

    name: ClassVar[str]
    emitters: ClassVar[Mapping[type, Callable[..., object]]] = {}

    def check(self, program: ir.Program) -> None:
        """Raise :class:`UnsupportedOpError` if any node's op has no emitter here."""
        for node in program.nodes:
            if type(node.op) not in self.emitters:
                raise UnsupportedOpError(self.name, node.op, node.name)

    @abstractmethod
    def generate(self, program: ir.Program) -> dict[str, str]:
        """Render ``program`` into ``{relative file name: formatted source}``."""

    def runtime(self) -> ModuleType:
        """The parity-harness adapter (imports the framework)."""
        return importlib.import_module(f"{type(self).__module__.rsplit('.', 1)[0]}.runtime")

    def engines(self) -> tuple[str, ...]:
        """Every engine the generated code can run on, when one framework fronts several (as
        Keras 3 does); empty when the backend is its own framework."""
        return ()

    def other_engines(self) -> tuple[str, ...]:
        """The installed engines besides the one :meth:`runtime` uses in this process: the
        parity harness runs the generated code on each in a subprocess, its environment updated
        with :meth:`engine_env`."""
        return ()

    def engine_env(self, engine: str) -> dict[str, str]:
        """The environment variables that make :meth:`runtime` use ``engine``."""
        raise KeyError(f"backend {self.name!r} has no engine {engine!r}")


class Namespace:
    """Hands out unique Python names, appending ``_`` to any name that is taken, reserved or a
    keyword. A private name (``_x``) gets ``private_prefix`` in front (Keras does not track
    layers held in private attributes), or without one, with ``private_ok`` false, a trailing
    ``_`` (``_x_``, which ``torch.nn.Module`` treats as public)."""

    def __init__(
        self, reserved: frozenset[str], private_ok: bool = True, private_prefix: str = ""
    ) -> None:
        self.taken = set(reserved)
        self.private_ok = private_ok
        self.private_prefix = private_prefix

    def free(self, name: str) -> bool:
        """Whether ``name`` can be handed out as it is."""
        return not (
            name in self.taken
            or keyword.iskeyword(name)
            or (not self.private_ok and name.startswith("_") and not name.endswith("_"))
        )

    def claim(self, name: str) -> str:
        """``name``, or ``name`` followed by enough underscores to be free; now taken."""
        if self.private_prefix and name.startswith("_"):
            name = f"{self.private_prefix}{name}"
        while not self.free(name):
            name += "_"
        self.taken.add(name)
        return name


F = TypeVar("F", bound=Callable[..., object])


class OpTable(dict[type, Callable[..., Any]]):
    """A backend's op table: IR op type -> the function that emits its code. Each emit function
    registers itself where it is defined (``@OPS.emits(ir.Dense)``), so a new op touches only
    the module that emits it."""

    def emits(self, *ops: type[ir.Op]) -> Callable[[F], F]:
        """Decorator: register the decorated function as the emitter of ``ops``."""

        def register(function: F) -> F:
            for op in ops:
                if op in self:
                    raise ValueError(f"{op.__name__} has two emitters")
                self[op] = function
            return function

        return register


def template_env(package: str) -> jinja2.Environment:
    """A jinja2 environment over ``<package>/templates`` with whitespace-friendly settings."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )


def header(program: ir.Program, backend: str) -> str:
    """The first lines of every generated file: tool version, spec name and spec hash."""
    return (
        f"# Generated by nnspec {__version__} ({backend} backend) from spec {program.name!r}.\n"
        f"# Spec sha256:{program.spec_hash}. Do not edit: change the spec and recompile."
    )


@functools.cache
def ruff_command() -> list[str]:
    """How to run the installed ruff: its binary directly (a third of the time of
    ``python -m ruff``, which starts a Python first), else through the interpreter."""
    try:
        from ruff.__main__ import find_ruff_bin

        return [find_ruff_bin()]
    except (ImportError, FileNotFoundError):
        return [sys.executable, "-m", "ruff"]


def format_source(source: str) -> str:
    """Format Python source with the pinned ``ruff format`` so output is byte-identical."""
    result = subprocess.run(
        [*ruff_command(), "format", "--quiet", "--line-length", "100", "-"],
        input=source,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"generated code failed to format:\n{result.stderr}\n{source}")
    return result.stdout


def write_tree(files: dict[str, str], out: Path) -> None:
    """Write ``files`` under ``out`` (used by tests; the CLI writes atomically)."""
    for rel, text in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

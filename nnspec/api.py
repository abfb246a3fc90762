"""nnspec from Python: load a spec, compile it to code in memory, build a live model, summarize.

```python
import nnspec

spec = nnspec.load("examples/glove_lstm/spec.yaml")   # or the spec's YAML / JSON text
files = nnspec.compile(spec, "torch")                 # {"model.py": "...", "train.py": "..."}
model = nnspec.build(spec, backend="torch")           # a torch.nn.Module, fresh weights
print(nnspec.summary(spec))                           # the table `nnspec summary` prints
```

Every function takes a :class:`LoadedSpec`, a path or spec text. A spec with errors raises
:class:`SpecError` carrying every located problem (``exc.problems``, the same diagnostics as
``nnspec validate``, all stages in one run). Nothing here imports a framework except
:func:`build`, and only the chosen backend's; a missing one is a ``ModuleNotFoundError`` naming
the ``pip install 'nnspec[...]'`` command.
"""

from __future__ import annotations

import builtins
import linecache
import os
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnspec.compiler import ir
from nnspec.spec import Document, Problem, Spec, SpecError

__all__ = [
    "LoadedSpec",
    "SpecError",
    "Summary",
    "SummaryRow",
    "build",
    "compile",
    "load",
    "summary",
]

SPEC_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class LoadedSpec:
    """A validated, compiled spec.

    Attributes:
        spec: the validated spec (pydantic model of the spec language).
        program: the compiled program (the compiler's IR; what every backend generates from).
        document: the loaded file, with the position of every field.
        warnings: lint warnings (errors under ``nnspec validate --strict``).
    """

    spec: Spec
    program: ir.Program
    document: Document
    warnings: tuple[Problem, ...] = field(default=())

    @property
    def name(self) -> str:
        """The spec's name (the generated class is its CamelCase)."""
        return self.program.name


SpecLike = LoadedSpec | Spec | str | os.PathLike[str]


def load(source: str | os.PathLike[str], *, file: str | None = None) -> LoadedSpec:
    """Load, validate and compile a spec from a path or from its YAML / JSON text.

    A ``str`` is text when it has a line break or is not the name of an existing file (unless it
    ends in ``.yaml``, ``.yml`` or ``.json``: then it is a missing file, ``FileNotFoundError``).
    ``file`` names text in diagnostics (default ``<string>``). Raises :class:`SpecError` with
    every problem found."""
    from nnspec.checks import check_spec
    from nnspec.spec.loader import load_file, load_text

    if _is_path(source):
        doc = load_file(Path(source))
    else:
        doc = load_text(str(source), file or "<string>")
    spec, program, problems = check_spec(doc)
    if spec is None or program is None:
        raise SpecError(problems)
    return LoadedSpec(spec=spec, program=program, document=doc, warnings=tuple(problems))


def compile(spec: SpecLike, backend: str = "torch") -> dict[str, str]:
    """The files ``backend`` generates for ``spec``, in memory: relative path -> source text
    (``model.py``, ``train.py`` and any helper module), exactly what ``nnspec compile`` writes.
    ``KeyError`` names the known backends for an unknown one."""
    from nnspec import backends

    loaded = _loaded(spec)
    return dict(backends.get(backend).generate(loaded.program))


def build(spec: SpecLike, backend: str = "torch", dtype: str = "float32") -> Any:
    """A live model with fresh initial weights: the generated ``model.py`` of ``backend`` run
    in memory (no file is written) and its ``build_model(dtype)`` called — a ``torch.nn.Module``
    or a ``keras.Model``. The generated module is ``type(model).__module__`` in
    ``sys.modules`` (its ``loss_fn``, ``make_optimizer`` ...)."""
    from nnspec.extras import install_hint

    loaded = _loaded(spec)
    source = compile(loaded, backend)["model.py"]
    name = f"nnspec_built_{backend}_{loaded.program.name}_{loaded.program.spec_hash}"
    filename = f"<nnspec {backend} model.py of {loaded.program.name!r}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(name, f"Generated {backend} model of {loaded.program.name!r}.")
    module.__file__ = filename
    sys.modules[name] = module
    try:
        exec(builtins.compile(source, filename, "exec"), module.__dict__)
    except ModuleNotFoundError as exc:
        del sys.modules[name]
        hint = install_hint(exc.name or "")
        if hint is None:
            raise
        raise ModuleNotFoundError(
            f"the {backend} backend needs {exc.name}, which is not installed: {hint}",
            name=exc.name,
        ) from None
    except BaseException:
        del sys.modules[name]
        raise
    return module.build_model(dtype)


@dataclass(frozen=True)
class SummaryRow:
    """One layer of a :class:`Summary`."""

    name: str
    type: str
    output_shape: tuple[int | None, ...]
    trainable: int
    frozen: int


@dataclass(frozen=True)
class Summary:
    """Per-layer output shapes and parameter counts, computed without a framework;
    ``str(summary)`` is the table ``nnspec summary`` prints."""

    name: str
    rows: tuple[SummaryRow, ...]
    trainable: int
    frozen: int
    pretrained: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        """Trainable plus frozen parameters."""
        return self.trainable + self.frozen

    def __str__(self) -> str:
        from nnspec.cli import box_table
        from nnspec.compiler.summary import format_shape

        cells = [
            (
                f"{r.name} ({r.type})",
                format_shape(r.output_shape),
                f"{r.trainable:,}",
                f"{r.frozen:,}",
            )
            for r in self.rows
        ]
        headers = ("Layer (type)", "Output shape", "Trainable", "Frozen")
        lines = [f'Model: "{self.name}"']
        lines += box_table(headers, cells, right=(False, False, True, True))
        lines += [
            f"Total params: {self.total:,}",
            f"Trainable params: {self.trainable:,}",
            f"Non-trainable params: {self.frozen:,}",
        ]
        lines += [f"Pretrained rows of {line}" for line in self.pretrained]
        return "\n".join(lines)


def summary(spec: SpecLike) -> Summary:
    """Per-layer output shapes and trainable / frozen parameter counts (the numbers
    ``model.parameters()`` / ``model.trainable_weights`` give), without a framework."""
    from nnspec.compiler.summary import pretrained_sources, summarize

    program = _loaded(spec).program
    rows = tuple(
        SummaryRow(r.name, r.op, tuple(r.shape), r.trainable, r.frozen) for r in summarize(program)
    )
    return Summary(
        name=program.name,
        rows=rows,
        trainable=program.trainable_count,
        frozen=program.frozen_count,
        pretrained=tuple(pretrained_sources(program)),
    )


def _is_path(source: str | os.PathLike[str]) -> bool:
    if not isinstance(source, str):
        return True
    if "\n" in source or "\r" in source or source.lstrip().startswith("{"):
        return False
    if source.endswith(SPEC_SUFFIXES):
        return True
    try:
        return Path(source).is_file()
    except (OSError, ValueError):  # too long or NUL: not a file name
        return False


def _loaded(spec: SpecLike) -> LoadedSpec:
    if isinstance(spec, LoadedSpec):
        return spec
    if isinstance(spec, Spec):  # built in Python: validated and compiled like a file
        text = spec.model_dump_json(exclude_unset=True)  # unset fields keep their defaults
        return load(text, file=f"<spec {spec.name!r}>")
    return load(spec)

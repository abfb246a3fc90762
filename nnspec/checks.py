"""Every problem of a spec in one run.

Validation has stages: the schema (pydantic), the rules across fields, then the compiler (graph,
shapes). A stage that fails used to hide the next one, so a spec with four schema errors and a
wrong packaged-vectors name reported the vectors only once the four were fixed. Here, after a
failure, every check that can still run on the parts that did validate runs too:

- each embedding table that validates on its own gets the table rules (pad index and row
  selections inside the table, special tokens, pretrained vectors: format, packaged names and
  their dimension); a table that does not still gets the ``pretrained`` checks if that part
  validates;
- when the schema errors lie only where no shape depends on them (the ``training``, ``name``
  and ``description`` sections, unknown keys, and fields such as a layer's ``activation`` or
  initializers, or a table's ``trainable`` or ``pretrained``), the graph is resolved with those
  parts stood in for, and its errors (unknown layers and tables, shape mismatches, cycles ...)
  are reported; an error in a layer's type or size, an input or a table's size stops it, as the
  shapes after it could not be trusted;
- when the schema passes and only rules across fields fail, the graph is resolved as well.

The problems are deduplicated and ordered by position. A spec that validates gets exactly what
:func:`nnspec.compiler.compile_file` gives (its program and lint warnings); the extra checks only
ever add errors to a spec that is already invalid.
"""

from __future__ import annotations

import copy
import types
from collections.abc import Iterable, Iterator
from pathlib import Path as FsPath
from typing import Any

from pydantic import ValidationError

from nnspec.compiler import compile_spec, ir, problems_of
from nnspec.spec import Document, Problem, Spec, SpecError
from nnspec.spec.errors import Path as FieldPath
from nnspec.spec.loader import load_file, load_text
from nnspec.spec.models import EmbeddingTableSpec, PretrainedSpec
from nnspec.spec.validate import (
    _pretrained_problems,
    _selection_problems,
    hint_budget,
    parse,
    walk_location,
)

# Top-level sections the graph and its shapes do not depend on, with stand-ins used to resolve
# the graph while they are invalid.
SHAPE_FREE_SECTIONS: dict[str, Any] = {
    "name": "spec",
    "description": "",
    "training": {"loss": "mse"},
}

# Values standing in for the required ones of those fields (the others have defaults).
REQUIRED_STAND_INS: dict[str, Any] = {"rate": 0.0}

# Fields of layers and tables that no shape depends on: an invalid value is dropped (the
# default stands in) to resolve the graph anyway.
SHAPE_FREE_FIELDS = frozenset(
    {
        "activation",
        "use_bias",
        "rate",
        "dropout",
        "epsilon",
        "momentum",
        "initializer",
        "kernel_initializer",
        "bias_initializer",
        "recurrent_initializer",
        "special_tokens_initializer",
        "kernel_constraint",
        "bias_constraint",
        "constraint",
        "trainable",
        "pretrained",
        "scale",
    }
)


def check_document(doc: Document) -> tuple[ir.Program | None, list[Problem]]:
    """Validate and compile ``doc``: its program (``None`` if it has errors) and every problem
    found (errors of every stage that could run, or the valid program's lint warnings)."""
    _, program, problems = check_spec(doc)
    return program, problems


def check_spec(doc: Document) -> tuple[Spec | None, ir.Program | None, list[Problem]]:
    """:func:`check_document`, also returning the validated spec (``None`` if it has schema or
    cross-field errors)."""
    with hint_budget():
        try:
            spec = parse(doc)
        except SpecError as exc:
            return None, None, ordered([*exc.problems, *_further_problems(doc)])
        try:
            program = compile_spec(spec, doc)
        except SpecError as exc:
            return spec, None, ordered(exc.problems)
    return spec, program, problems_of(program, doc)


def check_file(path: str | FsPath) -> tuple[ir.Program | None, Document | None, list[Problem]]:
    """:func:`check_document` of a file; ``Document`` is ``None`` when the file does not parse.
    Raises ``OSError`` if it cannot be read."""
    try:
        doc = load_file(path)
    except SpecError as exc:
        return None, None, ordered(exc.problems)
    program, problems = check_document(doc)
    return program, doc, problems


def check_text(
    text: str, file: str = "<string>"
) -> tuple[ir.Program | None, Document | None, list[Problem]]:
    """:func:`check_document` of spec text (YAML or JSON)."""
    try:
        doc = load_text(text, file)
    except SpecError as exc:
        return None, None, ordered(exc.problems)
    program, problems = check_document(doc)
    return program, doc, problems


def ordered(problems: Iterable[Problem]) -> list[Problem]:
    """``problems`` without duplicates (same place, field and message), by position."""
    unique = {(p.line, p.column, p.path, p.message, p.level): p for p in problems}
    return sorted(unique.values(), key=lambda p: (p.line, p.column, p.level, p.message))


def _further_problems(doc: Document) -> Iterator[Problem]:
    """The checks that can still run on the parts of an invalid ``doc`` that validate."""
    data = doc.data
    if not isinstance(data, dict) or data.get("nnspec") != 1:
        return  # no version, or one this nnspec does not read: nothing else is meaningful
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        yield from _table_problems(data, doc)
        repaired = _shape_neutral_stand_in(data, exc)
        if repaired is None:
            return
        stand_in, skip = repaired
        try:
            spec = Spec.model_validate(stand_in)
        except ValidationError:
            return
        yield from _graph_problems(spec, doc, skip=skip)
        return
    yield from _graph_problems(spec, doc, skip=[])


def _shape_neutral_stand_in(
    data: dict[str, Any], exc: ValidationError
) -> tuple[dict[str, Any], list[FieldPath]] | None:
    """``data`` with every schema error repaired in a way no shape depends on, and the paths
    repaired (graph errors there are not reported); ``None`` when an error is in something
    shapes depend on (a layer's type or size, an input, a table's dim ...).

    Repairs: a section in :data:`SHAPE_FREE_SECTIONS` is stood in for; an unknown key is
    dropped; a bad value of a field in :data:`SHAPE_FREE_FIELDS` of a layer or table is dropped
    (its default takes its place)."""
    stand_in = copy.deepcopy(data)
    skip: list[FieldPath] = []
    for err in exc.errors(include_url=False):
        path, _ = walk_location(tuple(err["loc"]))
        if not path:
            return None
        if path[0] in SHAPE_FREE_SECTIONS:
            stand_in[str(path[0])] = SHAPE_FREE_SECTIONS[str(path[0])]
            skip.append(path[:1])
            continue
        if err["type"] == "extra_forbidden":
            cut = path
        elif path[:2] == ("model", "layers") and len(path) >= 4 and path[3] in SHAPE_FREE_FIELDS:
            cut = path[:4]
        elif path[0] == "embeddings" and len(path) >= 3 and path[2] in SHAPE_FREE_FIELDS:
            cut = path[:3]
        else:
            return None
        parent: Any = stand_in
        for key in cut[:-1]:
            if isinstance(parent, dict):
                parent = parent.get(key)
            elif isinstance(parent, list) and isinstance(key, int) and 0 <= key < len(parent):
                parent = parent[key]
            else:
                return None
        if not isinstance(parent, dict):
            return None
        if cut[-1] in REQUIRED_STAND_INS and err["type"] != "extra_forbidden":
            parent[cut[-1]] = REQUIRED_STAND_INS[str(cut[-1])]
        else:
            parent.pop(cut[-1], None)
        skip.append(cut)
    return stand_in, skip


def _table_problems(data: dict[str, Any], doc: Document) -> Iterator[Problem]:
    """Table rules for every table (or ``pretrained`` part) that validates on its own."""
    tables = data.get("embeddings")
    if not isinstance(tables, dict):
        return
    for name, raw in tables.items():
        if not isinstance(name, str) or not isinstance(raw, dict):
            continue
        base = ("embeddings", name)
        try:
            table = EmbeddingTableSpec.model_validate(raw)
        except ValidationError:
            table = None
        if table is not None:
            if table.padding is not None and table.padding.index >= table.vocab_size:
                yield doc.problem(
                    (*base, "padding", "index"),
                    f"pad index {table.padding.index} is outside the table "
                    f"(vocab_size {table.vocab_size})",
                )
            yield from _selection_problems(table, base, doc)
            yield from _pretrained_problems(table, base, doc)
            continue
        if not isinstance(raw.get("pretrained"), dict):
            continue
        try:
            pretrained = PretrainedSpec.model_validate(raw["pretrained"])
        except ValidationError:
            continue
        dim = raw.get("dim")
        if isinstance(dim, bool) or not isinstance(dim, int):
            # The table's dim is invalid itself (reported): compare the vectors with nothing.
            dim = None
        stand_in = types.SimpleNamespace(pretrained=pretrained, dim=dim)
        for problem in _pretrained_problems(stand_in, base, doc):
            if dim is not None or "dimensional vectors" not in problem.message:
                yield problem


def _graph_problems(spec: Spec, doc: Document, skip: list[FieldPath]) -> Iterator[Problem]:
    """The compiler's graph and shape errors for ``spec``, except those inside a ``skip``
    path."""
    from nnspec.compiler.resolve import resolve

    # Pretrained vectors do not change a shape, and theirs are errors of their own.
    tables = {n: t.model_copy(update={"pretrained": None}) for n, t in spec.embeddings.items()}
    try:
        resolved = resolve(spec.model_copy(update={"embeddings": tables}))
    except Exception:
        # The spec already failed a rule the compiler relies on (a pad index outside its table,
        # say); its errors are reported, and a resolver tripping over them adds nothing.
        return
    for error in resolved.errors:
        path = tuple(error.path)
        if not any(path[: len(cut)] == cut for cut in skip):
            yield doc.problem(path, error.message)

"""What every backend generates besides its model and scripts: ``spec.json`` (the spec itself,
see :func:`spec_file`) and, for tables with pretrained vectors, ``pretrained.py``.

``pretrained.py`` is :mod:`nnspec.vectors` itself below the generated-file header, so the
generated code reads vectors exactly as nnspec does, without depending on nnspec; ``train.py``
gets a ``PRETRAINED`` literal describing each such table (see :func:`pretrained_literal`).
"""

from __future__ import annotations

import json
from importlib import resources

from nnspec.backends.base import format_source, header
from nnspec.compiler import canonical_json, ir


def has_pretrained(program: ir.Program) -> bool:
    """Whether any table of ``program`` takes its initial rows from pretrained vectors."""
    return any(table.pretrained is not None for table in program.tables)


def spec_file(program: ir.Program) -> dict[str, str]:
    """``{"spec.json": text}``: the spec the code was generated from, in its canonical form
    (indented; ``SPEC_SHA256`` in ``train.py`` is the sha256 of its compact form), which
    ``train.py`` copies into every run folder; ``{}`` for a program built without a spec."""
    if program.spec is None:
        return {}
    text = canonical_json(program.spec)
    return {"spec.json": json.dumps(json.loads(text), indent=2) + "\n"}


def pretrained_files(program: ir.Program, backend: str) -> dict[str, str]:
    """``{"pretrained.py": source}`` when a table has pretrained vectors, else ``{}``."""
    if not has_pretrained(program):
        return {}
    source = resources.files("nnspec").joinpath("vectors.py").read_text(encoding="utf-8")
    return {"pretrained.py": format_source(f"{header(program, backend)}\n{source}")}


def pretrained_settings(program: ir.Program) -> dict[str, dict[str, object]]:
    """``{table: settings}`` of every pretrained table: what :func:`nnspec.vectors.table_rows`
    takes, plus ``weight`` (the table's canonical weight) and ``vocabulary``."""
    settings: dict[str, dict[str, object]] = {}
    for table in program.tables:
        p = table.pretrained
        if p is None:
            continue
        settings[table.name] = {
            "table": table.name,
            "weight": table.weight,
            "vectors": p.vectors,
            "format": p.format,
            "words": p.words,
            "vocabulary": p.vocabulary,
            "missing": p.missing,
            "pad_index": table.pad_index,
            "special_tokens": p.special_tokens,
            "lowercase_fallback": p.lowercase_fallback,
        }
    return settings


def pretrained_literal(program: ir.Program) -> str | None:
    """The ``PRETRAINED`` constant of ``train.py``: :func:`pretrained_settings` as a Python
    literal (every value a ``repr`` of a validated IR value), or ``None`` without pretrained
    tables."""
    if not has_pretrained(program):
        return None
    lines = ["{"]
    for name, settings in pretrained_settings(program).items():
        lines.append(f"    {name!r}: {{")
        lines += [f"        {key!r}: {value!r}," for key, value in settings.items()]
        lines.append("    },")
    lines.append("}")
    return "\n".join(lines)

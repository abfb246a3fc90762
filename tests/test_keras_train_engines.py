"""The generated Keras ``train.py`` trains on Keras' JAX and PyTorch engines as on TensorFlow:
every example, at test size, trains one epoch from ``--init`` weights under ``KERAS_BACKEND=jax``
and ``KERAS_BACKEND=torch``, writes the run folder's files, keeps its embedding policies (padding
rows 0.0, frozen rows bit-identical to the initial weights), and an interrupted run resumed with
``--resume`` ends with the uninterrupted run's weights and metrics, bit for bit. TensorFlow,
installed here, is never imported (see tests/test_keras_without_tensorflow.py for an environment
without it).

One subprocess per engine trains every example in turn (the engine starts once); the two run
side by side.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from nnspec import backends
from nnspec.backends.base import write_tree
from nnspec.compiler import ir
from nnspec.synthetic import write_npz
from tests.conftest import EXAMPLE_NAMES
from tests.parity_helpers import example_at_test_size

ENGINES = ("jax", "torch")
for module in ("keras", *ENGINES, "tqdm", "matplotlib"):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed", allow_module_level=True)

# 48 training examples in batches of 16: 3 steps; the interrupted run stops after 2.
N_TRAIN, N_VAL, BATCH = 48, 16, 16
COMMON = ["--epochs", "1", "--batch-size", str(BATCH), "--device", "cpu", "--deterministic"]
RUN_FILES = {
    "run.json",
    "model.py",
    "spec.json",
    "metrics.csv",
    "curves.png",
    "last.safetensors",
    "last.npz",
    "best.safetensors",
    "best.npz",
    "model.safetensors",
}

# Trains every example folder given on the command line three times (whole; stopped by
# --max-steps; resumed) in this one process, and prints a JSON line per example: the exit
# status of each run and the last lines of its output.
DRIVER = """
import contextlib, importlib.util, io, json, sys, traceback

COMMON = json.loads(sys.argv[1])

for folder in sys.argv[2:]:
    for name in ("model", "pretrained"):  # each example imports its own model.py
        sys.modules.pop(name, None)
    spec = importlib.util.spec_from_file_location(f"train_{len(sys.modules)}", folder + "/train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    common = ["--data", folder + "/data.npz", "--init", folder + "/init.safetensors", *COMMON]
    codes, outputs = [], []
    for extra in (["--out", folder + "/whole"], ["--out", folder + "/resumed", "--max-steps", "2"],
                  ["--out", folder + "/resumed", "--resume"]):
        output = io.StringIO()
        try:
            with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
                train.main([*common, *extra])
            codes.append(0)
        except SystemExit as exc:
            codes.append(exc.code)
        except Exception:
            codes.append(traceback.format_exc()[-3000:])
        outputs.append(output.getvalue()[-2000:])
    tensorflow = "tensorflow" in sys.modules  # imported by anything so far
    report = {"folder": folder, "codes": codes, "outputs": outputs, "tensorflow": tensorflow}
    print(json.dumps(report), flush=True)
"""


def initial_weights(program: ir.Program, path: Path) -> None:
    """Random canonical weights for ``--init``; padding rows deliberately not 0.0."""
    rng = np.random.default_rng(7)
    weights = {w.name: rng.normal(0, 0.3, w.shape).astype(np.float32) for w in program.weights}
    save_file(weights, str(path))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, dict]]:
    """Per engine, per example: the driver's report, with the program and folder added."""
    root = tmp_path_factory.mktemp("engines")
    programs = {name: example_at_test_size(name) for name in EXAMPLE_NAMES}
    processes = {}
    for engine in ENGINES:
        folders = []
        for name, program in programs.items():
            folder = root / engine / name
            write_tree(backends.get("keras").generate(program), folder)
            write_npz(program, folder / "data.npz", N_TRAIN, N_VAL)
            initial_weights(program, folder / "init.safetensors")
            folders.append(str(folder))
        env = os.environ | {
            "KERAS_BACKEND": engine,
            "OMP_NUM_THREADS": "1",
            "CUDA_VISIBLE_DEVICES": "",
            "PYTHONUNBUFFERED": "1",
        }
        processes[engine] = subprocess.Popen(
            [sys.executable, "-c", DRIVER, json.dumps(COMMON), *folders],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    reports: dict[str, dict[str, dict]] = {}
    for engine, process in processes.items():
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
        reports[engine] = {}
        for line in stdout.splitlines():
            if line.startswith("{"):
                report = json.loads(line)
                name = Path(report["folder"]).name
                reports[engine][name] = report | {"program": programs[name]}
        assert sorted(reports[engine]) == EXAMPLE_NAMES, stderr[-3000:]
    return reports


def read_metrics(path: Path) -> list[dict[str, str]]:
    """The rows of a metrics CSV, without the wall-clock column."""
    with path.open() as file:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(file)]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_trains_writes_the_run_files_and_keeps_the_policies(trained, engine, name) -> None:
    report = trained[engine][name]
    assert report["codes"] == [0, 0, 0], report["outputs"]
    folder = Path(report["folder"])
    whole = folder / "whole"
    assert {path.name for path in whole.iterdir()} >= RUN_FILES
    assert json.loads((whole / "run.json").read_text())["resolved"]["device"] == "CPU"
    assert f"({engine})" in report["outputs"][0]
    assert not report["tensorflow"], "TensorFlow was imported, though installed, the engine unused"
    rows = read_metrics(whole / "metrics.csv")
    assert [row["epoch"] for row in rows] == ["1"]
    assert all(np.isfinite(float(v)) for k, v in rows[0].items() if k != "epoch")
    assert "val_loss" in rows[0]
    program = report["program"]
    state, start = (
        load_file(str(whole / "model.safetensors")),
        load_file(str(folder / "init.safetensors")),
    )
    for w in program.weights:
        array = state[w.name]
        assert np.all(array[list(w.zero_rows)] == 0.0), f"{w.name}: padding rows are not 0.0"
        if w.state:
            continue
        if w.trainable == "none":
            assert array.tobytes() == start[w.name].tobytes(), f"{w.name} changed"
        elif w.trainable == "rows":
            frozen = sorted(set(range(w.shape[0])) - set(w.trainable_ids()) - set(w.zero_rows))
            assert array[frozen].tobytes() == start[w.name][frozen].tobytes(), f"{w.name} moved"
        else:
            assert array.tobytes() != start[w.name].tobytes(), f"{w.name} did not train"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_resuming_gives_the_uninterrupted_run(trained, engine, name) -> None:
    report = trained[engine][name]
    assert report["codes"] == [0, 0, 0], report["outputs"]
    assert "resuming at epoch 1, step 2" in report["outputs"][2]
    folder = Path(report["folder"])
    whole, resumed = folder / "whole", folder / "resumed"
    for file in ("model.safetensors", "last.safetensors"):
        first, second = load_file(str(whole / file)), load_file(str(resumed / file))
        assert sorted(first) == sorted(second)
        for key in first:
            assert first[key].tobytes() == second[key].tobytes(), f"{file}: {key} differs"
    assert read_metrics(whole / "metrics.csv") == read_metrics(resumed / "metrics.csv")


def test_jax_data_parallel_over_two_devices(tmp_path) -> None:
    """With two devices (XLA's host platform split in two), the JAX engine trains with
    ``keras.distribution.DataParallel``: two replicas, and the policies hold."""
    program = example_at_test_size("glove_special_tokens")
    write_tree(backends.get("keras").generate(program), tmp_path)
    write_npz(program, tmp_path / "data.npz", N_TRAIN - 1, N_VAL - 1)  # odd last batches
    initial_weights(program, tmp_path / "init.safetensors")
    env = os.environ | {
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }
    command = [sys.executable, "train.py", "--data", "data.npz", "--init", "init.safetensors"]
    result = subprocess.run(
        [*command, *COMMON, "--out", "out"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "with 2 replica(s) (jax)" in result.stdout
    assert json.loads((tmp_path / "out" / "run.json").read_text())["resolved"]["replicas"] == 2
    state = load_file(str(tmp_path / "out" / "model.safetensors"))
    start = load_file(str(tmp_path / "init.safetensors"))
    (table,) = [w for w in program.weights if w.trainable == "rows"]
    frozen = sorted(set(range(table.shape[0])) - set(table.trainable_ids()) - set(table.zero_rows))
    assert np.all(state[table.name][list(table.zero_rows)] == 0.0)
    assert state[table.name][frozen].tobytes() == start[table.name][frozen].tobytes()


def test_jax_shards_embedding_tables_over_two_devices(tmp_path) -> None:
    """``--shard-embeddings`` on two devices: ``keras.distribution.ModelParallel`` splits the rows
    of the embedding tables over them (the batch too), and trains to the weights of the
    ``DataParallel`` run (one copy of each table per device), bit for bit. The other engines,
    and the PyTorch backend's ``train.py``, refuse the flag with one line."""
    program = example_at_test_size("glove_special_tokens")
    write_tree(backends.get("keras").generate(program), tmp_path)
    write_npz(program, tmp_path / "data.npz", N_TRAIN, N_VAL)
    initial_weights(program, tmp_path / "init.safetensors")
    env = os.environ | {
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }
    command = [sys.executable, "train.py", "--data", "data.npz", "--init", "init.safetensors"]
    command += COMMON

    def run(*flags: str, engine: str = "jax") -> subprocess.CompletedProcess:
        return subprocess.run(
            [*command, *flags],
            cwd=tmp_path,
            env=env | {"KERAS_BACKEND": engine},
            capture_output=True,
            text=True,
        )

    sharded, replicated = run("--shard-embeddings", "--out", "sharded"), run("--out", "replicated")
    for result in (sharded, replicated):
        assert result.returncode == 0, result.stderr[-3000:]
        assert "with 2 replica(s) (jax)" in result.stdout
    (line,) = [line for line in sharded.stdout.splitlines() if line.startswith("rows split")]
    assert "/frozen_embeddings (" in line and "/trainable_embeddings (" in line, line
    assert "rows split" not in replicated.stdout
    first = load_file(str(tmp_path / "sharded" / "model.safetensors"))
    second = load_file(str(tmp_path / "replicated" / "model.safetensors"))
    assert sorted(first) == sorted(second)
    for key in first:
        assert first[key].tobytes() == second[key].tobytes(), key
    refused = run("--shard-embeddings", "--out", "torch", engine="torch")
    assert refused.returncode == 2
    assert "--shard-embeddings: splitting tables over devices needs KERAS_BACKEND=jax" in (
        refused.stderr
    )
    write_tree(backends.get("torch").generate(program), tmp_path / "torch_backend")
    refused = subprocess.run(
        [sys.executable, "torch_backend/train.py", *command[2:], "--shard-embeddings"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2
    assert "--shard-embeddings: splitting tables over devices is the Keras train.py's" in (
        refused.stderr
    )

"""Bad input to the generated ``train.py`` of both backends, and how a run starts.

Every bad data file, flag or run folder is one line on stderr (``train.py: error: ...``), exit
status 2, and nothing written: checked for each case of :data:`CASES` against both backends'
scripts. The checks run before the framework is imported, so each case is a plain subprocess of
a fraction of a second, and ``--help`` answers without loading PyTorch or TensorFlow.

Two short real runs per backend (in the background, started by the first test that needs them)
check the rest of a run's start: the default run folder ``runs/<spec>/<UTC time>``, what it
holds, ``--force`` and ``--resume`` on it, TensorBoard event files (read back with
TensorFlow's own reader), and a Keras script's stderr free of TensorFlow's start-up lines.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from nnspec import backends
from nnspec.backends.base import write_tree
from nnspec.backends.keras.startup import tensorflow_start_up_held_back
from nnspec.backends.predict_script import render_predict_script
from nnspec.compiler import compile_spec, ir
from nnspec.prepare import prepare, prepare_language_model
from nnspec.spec import load_string
from tests.conftest import EXAMPLES

for framework in ("torch", "tensorflow", "tqdm", "matplotlib"):
    if importlib.util.find_spec(framework) is None:
        pytest.skip(f"{framework} is not installed", allow_module_level=True)

BACKENDS = ("torch", "keras")
ENV = {
    **{k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"},
    "OMP_NUM_THREADS": "1",
    "CUDA_VISIBLE_DEVICES": "",
    "PYTHONUNBUFFERED": "1",
}
GLOVE = (EXAMPLES / "glove_special_tokens" / "spec.yaml").read_text()
VOCAB, LENGTH, CLASSES = 10000, 200, 4  # the glove_special_tokens example's
TIMEOUT = 300


def compile_text(text: str) -> ir.Program:
    spec, doc = load_string(text, "spec.yaml")
    return compile_spec(spec, doc)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def run(command: list[str | Path], cwd: Path, env: dict[str, str] | None = None) -> Result:
    """``command`` run to the end in ``cwd``."""
    start = time.perf_counter()
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env or ENV,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr, time.perf_counter() - start)


def good_arrays(n: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """Valid training arrays for glove_special_tokens: ids and class ids."""
    rng = np.random.default_rng(seed)
    return {
        "tokens": rng.integers(1, VOCAB, size=(n, LENGTH), dtype=np.int32),
        "labels": rng.integers(0, CLASSES, size=n, dtype=np.int32),
    }


def npz(folder: Path, name: str, **arrays: np.ndarray) -> Path:
    path = folder / name
    np.savez(path, **arrays)
    return path


def changed(**changes: np.ndarray) -> Callable[[Path], list[str | Path]]:
    """A case: an ``.npz`` of the valid arrays with ``changes``."""
    return lambda folder: ["--data", npz(folder, "data.npz", **(good_arrays() | changes))]


def text_file(folder: Path) -> list[str | Path]:
    (folder / "reviews_train.csv").write_text("text,label\ngreat film,pos\nawful,neg\n")
    return ["--data", folder / "reviews_train.csv"]


def pickle_file(folder: Path) -> list[str | Path]:
    (folder / "data.pkl").write_bytes(pickle.dumps(good_arrays()))
    return ["--data", folder / "data.pkl"]


def empty_folder(folder: Path) -> list[str | Path]:
    (folder / "arrays").mkdir()
    (folder / "arrays" / "README.txt").write_text("no arrays here\n")
    return ["--data", folder / "arrays"]


def single_npy(folder: Path) -> list[str | Path]:
    np.save(folder / "tokens.npy", good_arrays()["tokens"])
    return ["--data", folder / "tokens.npy"]


def object_array(folder: Path) -> list[str | Path]:
    arrays = good_arrays() | {"labels": np.array([{"a": 1}] * 8, dtype=object)}
    np.savez(folder / "data.npz", **arrays, allow_pickle=True)
    return ["--data", folder / "data.npz"]


def other_val_data(folder: Path) -> list[str | Path]:
    val = {"tokens": good_arrays()["tokens"][:, :100], "labels": good_arrays()["labels"]}
    return [
        "--data",
        npz(folder, "data.npz", **good_arrays()),
        "--val-data",
        npz(folder, "v.npz", **val),
    ]


def run_folder(spec_sha256: str, backend: str) -> Callable[[Path], list[str | Path]]:
    """A case: ``--resume`` on a run folder of the given spec hash and backend."""

    def make(folder: Path) -> list[str | Path]:
        (folder / "old").mkdir()
        record = {"spec": "other", "spec_sha256": spec_sha256, "backend": backend}
        (folder / "old" / "run.json").write_text(json.dumps(record))
        (folder / "old" / "last.safetensors").write_bytes(b"")
        data = npz(folder, "data.npz", **good_arrays())
        return ["--data", data, "--out", folder / "old", "--resume"]

    return make


def used_folder(folder: Path) -> list[str | Path]:
    (folder / "old").mkdir()
    (folder / "old" / "metrics.csv").write_text("epoch,loss\n1,0.5\n")
    return ["--data", npz(folder, "data.npz", **good_arrays()), "--out", folder / "old"]


IDS, LABELS = good_arrays()["tokens"], good_arrays()["labels"]


def with_id(value: int) -> np.ndarray:
    """The valid ids with one of them set to ``value``."""
    ids = IDS.copy()
    ids[3, 7] = value
    return ids


# name -> (how to make the input in a folder: the flags, the expected error after "error: ").
CASES: dict[str, tuple[Callable[[Path], list[str | Path]], str]] = {
    "missing file": (lambda _: ["--data", "nope.npz"], "--data nope.npz: no such file or folder"),
    "csv": (
        text_file,
        "reviews_train.csv is a text file (.csv; texts must first become token ids), not an "
        ".npz file (a zip of .npy arrays)",
    ),
    "pickle": (pickle_file, "data.pkl is a pickle, not an .npz file"),
    "folder without .npy": (empty_folder, "arrays: the folder has no .npy files"),
    "single .npy": (single_npy, "tokens.npy is a single .npy array (give a folder of .npy files)"),
    "object array": (object_array, "data.npz holds Python objects"),
    "missing labels": (
        lambda folder: ["--data", npz(folder, "data.npz", tokens=IDS)],
        "data.npz has no array labels (it has tokens)",
    ),
    "float ids": (
        changed(tokens=IDS.astype(np.float32)),
        "tokens has dtype float32: token ids must be integers",
    ),
    "ids too large": (
        changed(tokens=with_id(VOCAB)),
        "tokens has ids up to 10000; the model takes 0..9999",
    ),
    "negative ids": (
        changed(tokens=with_id(-3)),
        "negative ids (down to -3)",
    ),
    "ids of the wrong shape": (
        changed(tokens=IDS[:, :50]),
        "tokens examples have shape (50,), not (200,)",
    ),
    "labels out of range": (changed(labels=LABELS + 2), "labels has values 2..5, outside 0..3"),
    "float labels": (
        changed(labels=LABELS.astype(np.float64)),
        "labels has dtype float64, not integer class ids",
    ),
    "one-hot labels for sparse loss": (
        changed(labels=np.eye(CLASSES, dtype=np.float32)[LABELS]),
        "labels examples have shape (4,); sparse_categorical_crossentropy takes class ids, () per "
        "example",
    ),
    "empty data": (
        changed(tokens=IDS[:0], labels=LABELS[:0]),
        "data.npz: labels has no examples",
    ),
    "different counts": (
        changed(labels=LABELS[:5]),
        "the * arrays have different numbers of examples",
    ),
    "validation of another shape": (
        changed(val_tokens=IDS[:, :100], val_labels=LABELS),
        "val_tokens examples have shape (100,), not (200,)",
    ),
    "--val-data of another shape": (other_val_data, "v.npz: tokens examples have shape (100,)"),
    "resume another spec": (
        run_folder("0123456789abcdef", "torch"),
        "is a run of spec 'other' (sha256:0123456789abcdef), not of 'glove_special_tokens'",
    ),
    "used --out": (
        used_folder,
        "old is not empty: --resume continues its run, --force replaces it",
    ),
    "resume without --out": (
        lambda folder: ["--data", npz(folder, "data.npz", **good_arrays()), "--resume"],
        "--resume needs --out, the folder of the run to continue",
    ),
    "a single label": (changed(labels=np.array(1)), "data.npz: labels is a single value"),
    "validation split of 1": (
        lambda folder: ["--data", npz(folder, "d.npz", **good_arrays()), "--validation-split", "1"],
        "--validation-split must be at least 0 and below 1, not 1.0",
    ),
    "zero batch size": (
        lambda folder: ["--data", npz(folder, "data.npz", **good_arrays()), "--batch-size", "0"],
        "--batch-size must be at least 1",
    ),
}

# The same corpus for a categorical-cross-entropy model: float one-hot labels.
CATEGORICAL = GLOVE.replace(
    "loss: sparse_categorical_crossentropy", "loss: categorical_crossentropy"
)
ONE_HOT = np.eye(CLASSES, dtype=np.float32)[LABELS]
CATEGORICAL_CASES: dict[str, tuple[Callable[[Path], list[str | Path]], str]] = {
    "class ids for categorical loss": (
        changed(labels=LABELS),
        "labels examples have shape (); categorical_crossentropy takes one-hot rows, (4,) per "
        "example",
    ),
    "NaN labels": (
        changed(labels=np.where(ONE_HOT == 1.0, np.nan, ONE_HOT)[:8]),
        "labels has 8 NaN or infinite value(s)",
    ),
    "infinite labels": (
        changed(labels=np.where(ONE_HOT == 1.0, np.inf, 0.0)),
        "NaN or infinite value(s)",
    ),
    "labels above 1": (changed(labels=ONE_HOT * 2), "labels has values 0.0..2.0, outside 0.0..1.0"),
}


class Scripts:
    """Both backends' scripts for glove_special_tokens (and its categorical twin)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.program = compile_text(GLOVE)
        self.categorical = compile_text(CATEGORICAL)
        for backend in BACKENDS:
            write_tree(backends.get(backend).generate(self.program), root / backend)
            write_tree(backends.get(backend).generate(self.categorical), root / f"cat_{backend}")
        self.pool = ThreadPoolExecutor(max_workers=2)
        self.futures: dict[str, Future] = {}

    def script(self, backend: str, categorical: bool = False) -> Path:
        return self.root / (f"cat_{backend}" if categorical else backend) / "train.py"


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory):
    scripts = Scripts(tmp_path_factory.mktemp("train_inputs"))
    yield scripts
    scripts.pool.shutdown(wait=True, cancel_futures=True)


def check_case(
    script: Path, folder: Path, make: Callable[[Path], list[str | Path]], expected: str
) -> Result:
    """Run ``script`` on the case ``make`` builds in ``folder``; assert one line, exit 2,
    ``expected`` in it, and nothing written."""
    folder.mkdir(parents=True)
    args = make(folder)
    before = sorted(folder.rglob("*"))
    result = run([sys.executable, script, *args, "--epochs", "1"], folder)
    assert result.returncode == 2, (result.stdout, result.stderr[-3000:])
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("train.py: error: ")
    assert expected in lines[0], lines[0]
    assert sorted(folder.rglob("*")) == before  # nothing written: no run folder, no file
    return result


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_inputs_are_one_line_errors_with_exit_2(scripts: Scripts, backend: str) -> None:
    script = scripts.script(backend)
    seconds = []
    for i, (make, expected) in enumerate(CASES.values()):
        folder = scripts.root / f"cases_{backend}" / str(i)
        seconds.append(check_case(script, folder, make, expected).seconds)
    # Answered before the framework loads (it takes seconds to import).
    print(f"{backend}: {len(CASES)} bad inputs, median {np.median(seconds):.2f} s each")
    assert np.median(seconds) < 2.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_labels_for_categorical_loss(scripts: Scripts, backend: str) -> None:
    script = scripts.script(backend, categorical=True)
    for i, (make, expected) in enumerate(CATEGORICAL_CASES.values()):
        check_case(script, scripts.root / f"cat_cases_{backend}" / str(i), make, expected)


def test_resume_from_another_backend(scripts: Scripts) -> None:
    sha = scripts.program.spec_hash
    for backend, other in (("torch", "keras"), ("keras", "torch")):
        folder = scripts.root / f"other_backend_{backend}"
        check_case(
            scripts.script(backend),
            folder,
            run_folder(sha, other),
            f"old is a run of the {other} backend, not of {backend}",
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_help_answers_without_importing_the_framework(scripts: Scripts, backend: str) -> None:
    script = scripts.script(backend)
    probe = (
        "import runpy, sys\n"
        f"sys.argv = [{str(script)!r}, '--help']\n"
        "try:\n"
        f"    runpy.run_path({str(script)!r}, run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "heavy = {'torch', 'tensorflow', 'keras', 'safetensors', 'tqdm'} & set(sys.modules)\n"
        "print('imported:', sorted(heavy))\n"
    )
    result = run([sys.executable, "-c", probe], scripts.root)
    assert result.returncode == 0, result.stderr
    assert "--tensorboard" in result.stdout and "--force" in result.stdout
    assert result.stdout.rstrip().endswith("imported: []")
    times = [run([sys.executable, script, "--help"], scripts.root).seconds for _ in range(3)]
    print(f"{backend} train.py --help: best of 3 {min(times):.2f} s")
    assert min(times) < 1.5  # 2.7 s (torch) and 9.5 s (Keras) when the framework loaded first


# ----------------------------------------------------------------------------- real runs


NAMES = ["food", "music", "space", "sport"]


def prepared_texts() -> list[str]:
    """128 texts of 12 words, each from the 30 words of its topic (:func:`prepared_labels`)."""
    rng = np.random.default_rng(0)
    topics = [[f"{name}{i}" for i in range(30)] for name in NAMES]
    return [" ".join(rng.choice(topics[y], size=12)) for y in prepared_labels()]


def prepared_labels() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 4, size=128)


def prepared_data(folder: Path) -> Path:
    """96 + 32 texts of 4 topics, through ``nnspec prepare`` with the glove spec."""
    texts, labels = prepared_texts(), [NAMES[y] for y in prepared_labels()]
    prepare(
        texts[:96],
        labels[:96],
        folder / "data.npz",
        val_texts=texts[96:],
        val_labels=labels[96:],
        spec=EXAMPLES / "glove_special_tokens" / "spec.yaml",
    )
    return folder / "data.npz"


RUN_FLAGS = ["--epochs", "2", "--batch-size", "32", "--device", "cpu", "--tensorboard"]


def fresh_then_used(script: Path, folder: Path) -> list[Result]:
    """A run into the default folder; the same folder again without, then with, ``--force``."""
    folder.mkdir(parents=True)
    data = prepared_data(folder)
    first = run([sys.executable, script, "--data", data, *RUN_FLAGS], folder)
    found = re.search(r"writing to (\S+)", first.stdout)
    if first.returncode or not found:
        return [first]
    out = folder / found.group(1)
    shutil.copytree(out, folder / "first_run")  # as the first run left it: --force replaces it
    (out / "notes.txt").write_text("mine\n")  # not a run file: --force keeps it
    again = run([sys.executable, script, "--data", data, "--out", out, "--epochs", "1"], folder)
    forced = [sys.executable, script, "--data", data, "--out", out, "--force", "--max-steps", "1"]
    return [first, again, run(forced, folder)]


@pytest.fixture(scope="module")
def real_runs(scripts: Scripts) -> dict[str, Future]:
    for backend in BACKENDS:
        folder = scripts.root / f"real_{backend}"
        scripts.futures[backend] = scripts.pool.submit(
            fresh_then_used, scripts.script(backend), folder
        )
    return scripts.futures


def read_events(paths: list[Path]) -> dict[Path, list[tuple[int, dict[str, float]]]]:
    """Each event file's scalars, per event, as TensorFlow's own reader sees them."""
    reader = (
        "import json, sys\n"
        "import tensorflow as tf\n"
        "from tensorflow.core.util import event_pb2\n"
        "out = {}\n"
        "for path in sys.argv[1:]:\n"
        "    records = tf.data.TFRecordDataset(path)  # checks the CRCs\n"
        "    events = [event_pb2.Event.FromString(r.numpy()) for r in records]\n"
        "    assert events[0].file_version == 'brain.Event:2'\n"
        "    out[path] = [(e.step, {v.tag: v.simple_value for v in e.summary.value})\n"
        "                 for e in events[1:]]\n"
        "print(json.dumps(out))\n"
    )
    result = run([sys.executable, "-c", reader, *map(str, paths)], paths[0].parent)
    assert result.returncode == 0, result.stderr[-3000:]
    return {Path(k): v for k, v in json.loads(result.stdout.splitlines()[-1]).items()}


@pytest.mark.parametrize("backend", BACKENDS)
def test_runs_get_their_own_folder_with_what_using_the_model_takes(
    scripts: Scripts, real_runs: dict[str, Future], backend: str
) -> None:
    first, again, forced = real_runs[backend].result(timeout=4 * TIMEOUT)
    assert first.returncode == 0, first.stderr[-3000:]
    folder = scripts.root / f"real_{backend}"
    (out,) = (folder / "runs" / "glove_special_tokens").iterdir()
    assert re.fullmatch(r"\d{8}-\d{6}", out.name)
    assert f"writing to runs/glove_special_tokens/{out.name}" in first.stdout
    first_run = folder / "first_run"
    record = json.loads((first_run / "run.json").read_text())
    assert record["spec"] == "glove_special_tokens"
    assert record["spec_sha256"] == scripts.program.spec_hash
    assert record["backend"] == backend
    assert record["settings"]["epochs"] == 2 and record["settings"]["lr"] == 0.002
    assert record["settings"]["out"] == f"runs/glove_special_tokens/{out.name}"
    assert record["resolved"]["precision"] == "float32"
    assert record["resolved"]["device"] == {"torch": "cpu", "keras": "CPU"}[backend]
    assert record["examples"] == {"train": 96, "validation": 32}
    assert record["label_names"] == ["food", "music", "space", "sport"]
    assert record["inputs"] == {"tokens": {"shape": [200], "vocab_size": 10000}}
    assert record["tokenizer"]["max_length"] == 200 and record["tokenizer"]["padding"] == "post"
    assert record["tokenizer"]["specials"] == ["<oov>", "<bos>", "<eos>", "<sep>"]
    with np.load(folder / "data.npz") as data:
        vocabulary = data["vocabulary"].tolist()
    assert (first_run / "vocabulary.txt").read_text().splitlines() == vocabulary
    model_py = scripts.script(backend).with_name("model.py")
    assert (first_run / "model.py").read_bytes() == model_py.read_bytes()
    # The spec itself: its compact canonical form hashes to the run's spec_sha256.
    spec = json.loads((first_run / "spec.json").read_text())
    compact = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    assert hashlib.sha256(compact.encode()).hexdigest()[:16] == record["spec_sha256"]
    for name in ("metrics.csv", "curves.png", "model.safetensors", "last.safetensors"):
        assert (first_run / name).exists(), name

    # The used folder is refused (nothing touched), then replaced by --force.
    assert again.returncode == 2 and "is not empty" in again.stderr
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert "stopped by --max-steps" in forced.stdout
    assert (out / "notes.txt").read_text() == "mine\n"
    assert not (out / "metrics.csv").exists()  # the earlier run's epochs are gone
    assert json.loads((out / "run.json").read_text())["settings"]["max_steps"] == 1
    assert not (out / "tensorboard").exists() and not (out / "best.safetensors").exists()


def test_tensorboard_scalars_of_both_backends(
    scripts: Scripts, real_runs: dict[str, Future]
) -> None:
    paths = {}
    for backend in BACKENDS:
        first, *_ = real_runs[backend].result(timeout=4 * TIMEOUT)
        assert first.returncode == 0, first.stderr[-3000:]
        (paths[backend],) = (
            scripts.root / f"real_{backend}" / "first_run" / "tensorboard"
        ).iterdir()
        assert paths[backend].name.startswith("events.out.tfevents.")
    events = read_events(list(paths.values()))
    for backend, path in paths.items():
        with (path.parent.parent / "metrics.csv").open() as file:
            rows = list(csv.DictReader(file))
        steps = [(step, values) for step, values in events[path] if "step/loss" in values]
        epochs = [(step, values) for step, values in events[path] if "epoch/loss" in values]
        # 96 examples in batches of 32: 3 steps per epoch, 2 epochs.
        assert [step for step, _ in steps] == [3, 6], backend
        assert all(values["step/lr"] == pytest.approx(0.002) for _, values in steps)
        assert [step for step, _ in epochs] == [1, 2]
        for (_, values), row in zip(epochs, rows, strict=True):
            assert set(values) == {
                "epoch/lr",
                "epoch/loss",
                "epoch/accuracy",
                "epoch/val_loss",
                "epoch/val_accuracy",
            }
            for name in ("lr", "loss", "accuracy", "val_loss", "val_accuracy"):
                assert values[f"epoch/{name}"] == pytest.approx(float(row[name]), rel=1e-6)
        # The step scalar at an epoch's end is that epoch's mean training loss.
        assert steps[1][1]["step/loss"] == pytest.approx(float(rows[1]["loss"]), rel=1e-6)


def test_keras_script_prints_no_tensorflow_start_up_lines(real_runs: dict[str, Future]) -> None:
    first, *_ = real_runs["keras"].result(timeout=4 * TIMEOUT)
    assert first.returncode == 0, first.stderr[-3000:]
    noise = re.compile(r"absl::InitializeLog|^I0000|oneDNN|^E0000|cpu_feature_guard", re.M)
    assert not noise.search(first.stderr), first.stderr[:2000]
    assert "epoch 1/2" in first.stderr  # the progress bar still shows


def test_start_up_lines_are_dropped_and_warnings_kept(capfd: pytest.CaptureFixture) -> None:
    with tensorflow_start_up_held_back():
        os.write(
            2,
            b"WARNING: All log messages before absl::InitializeLog() is called are "
            b"written to STDERR\n",
        )
        os.write(
            2,
            b"I0000 00:00:1796297315.439258   10358 port.cc:153] oneDNN custom "
            b"operations are on.\n",
        )
        os.write(
            2,
            b"E0000 00:00:1796297315.5 10358 cuda_dnn.cc:8310] Unable to register cuDNN factory\n",
        )
        os.write(
            2,
            b"W0000 00:00:1796297315.6 10358 gpu_device.cc:2344] Cannot dlopen some "
            b"GPU libraries.\n",
        )
        os.write(2, b"UserWarning: a real warning\n")
    err = capfd.readouterr().err
    assert err == (
        "W0000 00:00:1796297315.6 10358 gpu_device.cc:2344] Cannot dlopen some GPU libraries.\n"
        "UserWarning: a real warning\n"
    )


def test_parity_runtime_imports_tensorflow_quietly(scripts: Scripts) -> None:
    """``nnspec parity`` imports TensorFlow through the Keras runtime adapter."""
    result = run([sys.executable, "-c", "import nnspec.backends.keras.runtime"], scripts.root)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


# ----------------------------------------------------------------------------- predict.py


def write_predict(program: ir.Program, folder: Path, backend: str) -> Path:
    """``predict.py`` beside the backend's ``train.py`` (and ``model.py``)."""
    (folder / "predict.py").write_text(render_predict_script(program, backend))
    return folder / "predict.py"


def test_predict_tokenizes_as_prepare_did_and_both_backends_agree(
    scripts: Scripts, real_runs: dict[str, Future]
) -> None:
    first, *_ = real_runs["torch"].result(timeout=4 * TIMEOUT)
    assert first.returncode == 0, first.stderr[-3000:]
    run_dir = scripts.root / "real_torch" / "first_run"
    texts = [*prepared_texts()[:5], "Sport3, SPACE4 and an unknown word!"]
    predict = {b: write_predict(scripts.program, scripts.root / b, b) for b in BACKENDS}

    # The ids: those nnspec prepare wrote for the same texts (without the model: no framework).
    ids = run([sys.executable, predict["torch"], run_dir, *texts, "--ids"], scripts.root)
    assert ids.returncode == 0, ids.stderr
    with np.load(scripts.root / "real_torch" / "data.npz") as data:
        prepared = data["tokens"][:5].tolist()
        index = {token: i for i, token in enumerate(data["vocabulary"].tolist())}
    rows = [json.loads(line) for line in ids.stdout.splitlines()]
    assert [row + [0] * (LENGTH - len(row)) for row in rows[:5]] == prepared
    tokens = ["sport3", ",", "space4", "and", "an", "unknown", "word", "!"]  # lowercased
    oov = index["<oov>"]
    assert oov == VOCAB - 4 and index["sport3"] < oov and index["space4"] < oov
    assert rows[5] == [index.get(token, oov) for token in tokens]
    # The same texts from a file: one per line, a CSV column, a JSON-lines field.
    files = scripts.root / "predict_inputs"
    files.mkdir()
    (files / "texts.txt").write_text("\n".join(texts) + "\n")
    with (files / "texts.csv").open("w", newline="") as file:
        csv.writer(file).writerows([["id", "body"], *[[i, t] for i, t in enumerate(texts)]])
    (files / "texts.jsonl").write_text("".join(json.dumps({"body": t}) + "\n" for t in texts))
    for name, column in (("texts.txt", []), ("texts.csv", ["--text-column", "body"])):
        command = [sys.executable, predict["keras"], run_dir, "--input", files / name, *column]
        assert run([*command, "--ids"], files).stdout == ids.stdout, name
    command = [sys.executable, predict["torch"], run_dir, "--input", files / "texts.jsonl"]
    assert run([*command, "--text-column", "body", "--ids"], files).stdout == ids.stdout
    missing = run([*command, "--ids"], files)
    assert missing.returncode == 2
    assert "texts.jsonl has no column 'text' (it has body)" in missing.stderr

    # The same run's weights give the same probabilities through either backend's model.
    results = {}
    for backend in BACKENDS:
        command = [sys.executable, predict[backend], run_dir, *texts, "--top-k", "4"]
        result = run([*command, "--format", "json", "--device", "cpu"], scripts.root)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "I0000" not in result.stderr and "absl" not in result.stderr
        results[backend] = [json.loads(line) for line in result.stdout.splitlines()]
    # The Keras predict.py on Keras' other engines, TensorFlow never imported there.
    for engine in ("jax", "torch"):
        if importlib.util.find_spec(engine) is None:
            continue
        command = [sys.executable, "-c", PREDICT_WITHOUT_TENSORFLOW, predict["keras"], run_dir]
        command += [*texts, "--top-k", "4", "--format", "json", "--device", "cpu"]
        result = run(command, scripts.root, ENV | {"KERAS_BACKEND": engine})
        assert result.returncode == 0, result.stderr[-3000:]
        assert "tensorflow imported" not in result.stderr
        results[f"keras-{engine}"] = [json.loads(line) for line in result.stdout.splitlines()]
    for name, rows in results.items():
        for torch_row, row in zip(results["torch"], rows, strict=True):
            assert torch_row["label"] == row["label"], name
            assert {r["label"] for r in torch_row["top"]} == {"food", "music", "space", "sport"}
            assert sum(r["probability"] for r in row["top"]) == pytest.approx(1.0, abs=1e-6)
            for a, b in zip(torch_row["top"], row["top"], strict=True):
                assert a["label"] == b["label"], name
                assert a["probability"] == pytest.approx(b["probability"], abs=1e-5), name


# predict.py (sys.argv[1]) run as a script; then whether anything imported TensorFlow.
PREDICT_WITHOUT_TENSORFLOW = """
import runpy, sys
script = sys.argv.pop(1)
sys.argv[0] = script
try:
    runpy.run_path(script, run_name="__main__")
finally:
    if "tensorflow" in sys.modules:
        print("tensorflow imported", file=sys.stderr)
"""


def test_predict_refuses_a_run_of_another_spec(scripts: Scripts) -> None:
    predict = write_predict(scripts.categorical, scripts.root / "cat_torch", "torch")
    folder = scripts.root / "predict_other"
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"spec": "x", "spec_sha256": "0" * 16}))
    result = run([sys.executable, predict, folder, "some text"], folder)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        f"predict.py: error: {folder} is a run of spec 'x' (sha256:{'0' * 16}), not of this "
        f"model.py's 'glove_special_tokens' (sha256:{scripts.categorical.spec_hash})\n"
    )


def test_language_model_next_words_and_perplexity_agree_across_backends(
    tmp_path: Path,
) -> None:
    """A memory-network LM run folder (random weights, prepare's vocabulary): next words and
    perplexity, the same from both backends' predict.py."""
    program = compile_text((EXAMPLES / "memn2n_lm" / "spec.yaml").read_text())
    lines = [" ".join(f"w{(start + j) % 40}" for j in range(8)) for start in range(0, 200, 7)]
    prepared = prepare_language_model(
        lines, tmp_path / "lm.npz", spec=EXAMPLES / "memn2n_lm" / "spec.yaml"
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with np.load(prepared.data) as data:
        tokenizer = json.loads(str(data["tokenizer"]))
        vocabulary = data["vocabulary"].tolist()
        first_memories = data["context"][:8]
    record = {"spec": program.name, "spec_sha256": program.spec_hash, "tokenizer": tokenizer}
    (run_dir / "run.json").write_text(json.dumps(record))
    (run_dir / "vocabulary.txt").write_text("".join(f"{token}\n" for token in vocabulary))
    rng = np.random.default_rng(3)
    # Small weights: the model is close to uniform over the vocabulary, so its perplexity is
    # close to the vocabulary's size.
    weights = {w.name: rng.normal(0, 0.05, w.shape).astype(np.float32) for w in program.weights}
    save_file(weights, str(run_dir / "model.safetensors"))

    outputs = {}
    for backend in BACKENDS:
        folder = tmp_path / backend
        write_tree(backends.get(backend).generate(program), folder)
        predict = write_predict(program, folder, backend)
        command = [sys.executable, predict, run_dir, lines[0], "w3 w4", "--format", "json"]
        result = run([*command, "--device", "cpu"], tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[backend] = [json.loads(line) for line in result.stdout.splitlines()]
    ids = run([sys.executable, predict, run_dir, lines[0], "--ids"], tmp_path)
    # The line's words, in the stream prepare made (the first memories hold them, newest first).
    assert json.loads(ids.stdout) == [int(m[0, 0]) for m in first_memories[:8]]
    for a, b in zip(outputs["torch"], outputs["keras"], strict=True):
        assert [w["word"] for w in a["next"]] == [w["word"] for w in b["next"]]
        assert len(a["next"]) == 3 and all(w["word"] in vocabulary for w in a["next"])
        assert a["perplexity"] == pytest.approx(b["perplexity"], rel=1e-5)
        assert 0.5 * len(vocabulary) < a["perplexity"] < 2 * len(vocabulary)

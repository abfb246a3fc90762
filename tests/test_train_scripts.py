"""The generated ``train.py`` of every backend, run end to end on the CPU.

Each backend's script trains a few steps and writes its metrics CSV, plot and checkpoints; an
interrupted and resumed run ends with the weights of an uninterrupted one; two processes train
together on the framework's own engine (torchrun + DDP over gloo; MultiWorkerMirroredStrategy on
127.0.0.1) and end identical; the embedding policies hold in the saved weights (padding rows
0.0, frozen rows bit-identical to the initial weights).

Every script runs in a subprocess. They are all started when the module's first test asks for
one, a few at a time (:data:`PARALLEL`), and each test waits for the runs it checks.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from nnspec import backends
from nnspec.backends.base import write_tree
from nnspec.compiler import compile_file, ir
from nnspec.synthetic import write_npz
from tests.conftest import EXAMPLES

# The scripts run in subprocesses: the frameworks must be installed, not imported here.
for framework in ("torch", "tensorflow", "tqdm", "matplotlib"):
    if importlib.util.find_spec(framework) is None:
        pytest.skip(f"{framework} is not installed", allow_module_level=True)

BACKENDS = ("torch", "keras")
PARALLEL = 3  # subprocesses at a time (each is single-threaded)
TIMEOUT = 300  # seconds for one run; a distributed run is killed (SIGKILL) after it
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",  # exact comparisons need a fixed thread count
    "CUDA_VISIBLE_DEVICES": "",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "GLOO_SOCKET_IFNAME": "lo",
    "PYTHONUNBUFFERED": "1",
}

# The 20 Newsgroups example (14M parameters) shrunk to test size, same layers and training.
SMALL_NEWSGROUPS = (
    (EXAMPLES / "newsgroups_flat" / "spec.yaml")
    .read_text()
    .replace("vocab_size: 19000", "vocab_size: 300")
    .replace("dim: 300", "dim: 8")
    .replace("length: 1100", "length: 40")
)
assert SMALL_NEWSGROUPS.count(": 300") == 1  # vocab_size only: every replacement took

# Runs train.py's main() in this process, then saves this process's own weights: train.py
# itself saves only the first process's.
OWN_WEIGHTS = '''\
"""Run train.py, then save this process's weights to $WEIGHTS_OUT (``{rank}`` filled in)."""
import os
import sys

import train

built = []
build_model = train.build_model
train.build_model = lambda *args, **kwargs: built.append(build_model(*args, **kwargs)) or built[-1]
train.main(sys.argv[1:])
built[0].save_canonical(os.environ["WEIGHTS_OUT"].format(rank=os.environ.get("RANK", "0")))
'''

# Where an example trains briefly: examples and batch sizes giving 3 steps per epoch.
N_TRAIN, N_VAL, BATCH = 96, 32, 32
COMMON = ["--epochs", "2", "--batch-size", str(BATCH), "--deterministic", "--device", "cpu"]


@dataclass
class Run:
    """A finished ``train.py`` process."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def check(self) -> Run:
        """This run, after asserting that it succeeded."""
        assert self.returncode == 0, f"exit {self.returncode}\n{self.stdout}\n{self.stderr[-4000:]}"
        return self


@dataclass
class Script:
    """A generated script folder: program, backend, ``train.py`` and its data."""

    program: ir.Program
    backend: str
    folder: Path

    @property
    def data(self) -> Path:
        return self.folder / "data.npz"

    def command(self, *args: str | Path) -> list[str]:
        return [sys.executable, str(self.folder / "train.py"), *map(str, args)]


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> Run:
    """Run ``command`` to the end (killed after :data:`TIMEOUT`)."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=cwd, env=env or ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    return Run(process.returncode, stdout, stderr, time.perf_counter() - start)


def run_together(commands: list[tuple[list[str], dict[str, str]]], cwd: Path) -> list[Run]:
    """Start all ``commands`` at once and wait for them; all are killed (SIGKILL, which
    TensorFlow cannot catch) if one is not done after :data:`TIMEOUT` seconds."""
    start = time.perf_counter()
    processes = [
        subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for command, env in commands
    ]
    deadline = start + TIMEOUT
    runs = []
    for process in processes:
        try:
            stdout, stderr = process.communicate(timeout=max(1.0, deadline - time.perf_counter()))
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            stdout, stderr = process.communicate()
        runs.append(Run(process.returncode, stdout, stderr, time.perf_counter() - start))
    return runs


def free_ports(n: int) -> list[int]:
    """``n`` TCP ports free on 127.0.0.1 right now."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def generate(program: ir.Program, backend: str, folder: Path, validation: bool = True) -> Script:
    """Write ``program``'s code for ``backend`` and a small data set into ``folder``."""
    write_tree(backends.get(backend).generate(program), folder)
    write_npz(program, folder / "data.npz", N_TRAIN, N_VAL if validation else 0)
    return Script(program, backend, folder)


def initial_weights(program: ir.Program, path: Path) -> Path:
    """Random canonical weights for ``--init``; padding rows deliberately not 0.0."""
    rng = np.random.default_rng(7)
    save_file(
        {w.name: rng.normal(0, 0.3, w.shape).astype(np.float32) for w in program.weights},
        str(path),
    )
    return path


def assert_policies_hold(program: ir.Program, weights: Path, init: Path | None = None) -> None:
    """Padding rows are 0.0; rows that do not train equal ``init``'s, bit for bit."""
    state, start = load_file(str(weights)), (load_file(str(init)) if init else None)
    assert sorted(state) == sorted(w.name for w in program.weights)
    for w in program.weights:
        array = state[w.name]
        assert array.shape == w.shape, w.name
        assert np.all(array[list(w.zero_rows)] == 0.0), f"{w.name}: padding rows are not 0.0"
        if start is None or w.state:
            continue
        if w.trainable == "none":
            assert array.tobytes() == start[w.name].tobytes(), f"{w.name} changed"
        elif w.trainable == "rows":
            frozen = sorted(set(range(w.shape[0])) - set(w.trainable_ids()) - set(w.zero_rows))
            assert array[frozen].tobytes() == start[w.name][frozen].tobytes(), f"{w.name} moved"


def assert_same_weights(a: Path, b: Path) -> None:
    """The two safetensors files hold bit-identical weights."""
    first, second = load_file(str(a)), load_file(str(b))
    assert sorted(first) == sorted(second)
    for name in first:
        assert first[name].tobytes() == second[name].tobytes(), f"{name} differs"


def read_metrics(path: Path) -> list[dict[str, str]]:
    """The rows of a metrics CSV, without the wall-clock column."""
    with path.open() as file:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(file)]


# ----------------------------------------------------------------------------- the runs


class Runs:
    """Every run of this module, started together in the background."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pool = ThreadPoolExecutor(max_workers=PARALLEL)
        self.futures: dict[str, Future] = {}
        glove, _ = compile_file(EXAMPLES / "glove_special_tokens" / "spec.yaml")
        memn2n, _ = compile_file(EXAMPLES / "memn2n_lm" / "spec.yaml")
        (root / "newsgroups_small.yaml").write_text(SMALL_NEWSGROUPS)
        newsgroups, _ = compile_file(root / "newsgroups_small.yaml")
        self.init = initial_weights(glove, root / "init.safetensors")
        self.glove = {b: generate(glove, b, root / "glove" / b) for b in BACKENDS}
        self.memn2n = {
            b: generate(memn2n, b, root / "memn2n" / b, validation=False) for b in BACKENDS
        }
        self.newsgroups = {b: generate(newsgroups, b, root / "newsgroups" / b) for b in BACKENDS}
        for backend in BACKENDS:
            # .npy files in a folder, validation held out by --validation-split.
            with np.load(self.memn2n[backend].data) as arrays:
                (root / "memn2n" / backend / "npy").mkdir()
                for name in ("context", "labels"):
                    np.save(root / "memn2n" / backend / "npy" / f"{name}.npy", arrays[name])
        # The slowest first.
        self.submit("mwms", self.multi_worker)
        self.submit("ddp", self.torchrun)
        self.submit("help", self.help)
        for backend in BACKENDS:
            self.submit(f"whole/{backend}", self.whole, backend)
            self.submit(f"resumed/{backend}", self.resumed, backend)
            self.submit(f"newsgroups/{backend}", self.newsgroups_run, backend)
            self.submit(f"memn2n/{backend}", self.memn2n_run, backend)

    def submit(self, key: str, fn: Callable, *args: object) -> None:
        self.futures[key] = self.pool.submit(fn, *args)

    def result(self, key: str):
        return self.futures[key].result(timeout=4 * TIMEOUT)

    def whole(self, backend: str) -> Run:
        """Two uninterrupted epochs from ``--init`` weights."""
        script = self.glove[backend]
        out = script.folder / "whole"
        command = script.command("--data", script.data, *COMMON, "--init", self.init, "--out", out)
        return run(command, script.folder)

    def resumed(self, backend: str) -> tuple[Run, Run]:
        """The same, stopped after 4 of its 6 steps (inside epoch 2), then resumed."""
        script = self.glove[backend]
        out = script.folder / "resumed"
        command = script.command("--data", script.data, *COMMON, "--init", self.init, "--out", out)
        first = run([*command, "--max-steps", "4"], script.folder)
        return first, run([*command, "--resume"], script.folder)

    def torchrun(self) -> Run:
        """One epoch on 2 processes (gloo), each saving its own weights."""
        script = self.glove["torch"]
        (script.folder / "own_weights.py").write_text(OWN_WEIGHTS)
        env = {**ENV, "WEIGHTS_OUT": str(script.folder / "rank{rank}.safetensors")}
        command = [
            *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"),
            str(script.folder / "own_weights.py"),
            *("--data", str(script.data), "--epochs", "1", "--batch-size", str(BATCH)),
            *("--init", str(self.init), "--out", str(script.folder / "ddp")),
        ]
        return run(command, script.folder, env)

    def multi_worker(self) -> list[Run]:
        """One epoch on 2 MultiWorkerMirroredStrategy workers, each saving its own weights."""
        script = self.glove["keras"]
        (script.folder / "own_weights.py").write_text(OWN_WEIGHTS)
        workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
        commands = []
        for index in range(2):
            tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            env = {
                **ENV,
                "TF_CONFIG": json.dumps(tf_config),
                "WEIGHTS_OUT": str(script.folder / f"worker{index}.safetensors"),
            }
            command = [
                *(sys.executable, str(script.folder / "own_weights.py")),
                *("--data", str(script.data), "--epochs", "1", "--batch-size", str(BATCH)),
                *("--init", str(self.init), "--out", str(script.folder / "mwms")),
            ]
            commands.append((command, env))
        return run_together(commands, script.folder)

    def newsgroups_run(self, backend: str) -> Run:
        """The newsgroups classifier with a warm-up, a cosine schedule and gradient clipping."""
        script = self.newsgroups[backend]
        flags = ["--schedule", "cosine", "--warmup-steps", "2", "--clip-norm", "1.0"]
        return run(
            script.command("--data", script.data, *COMMON, *flags, "--out", script.folder / "run"),
            script.folder,
        )

    def memn2n_run(self, backend: str) -> Run:
        """The memory network (ids ``(N, 16, 1)``) from a folder of ``.npy`` files."""
        script = self.memn2n[backend]
        data = ["--data", script.folder / "npy", "--validation-split", "0.25"]
        return run(
            script.command(*data, *COMMON, "--epochs", "1", "--out", script.folder / "run"),
            script.folder,
        )

    def help(self) -> Run:
        """``train.py --help`` (PyTorch's), run from another folder."""
        return run(self.glove["torch"].command("--help"), self.root)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    runs = Runs(tmp_path_factory.mktemp("train_scripts"))
    yield runs
    runs.pool.shutdown(wait=True, cancel_futures=True)


# ----------------------------------------------------------------------------- tests


def test_help_lists_the_flags_with_the_specs_defaults(runs: Runs) -> None:
    text = " ".join(runs.result("help").check().stdout.split())
    for flag in ("--data", "--val-data", "--resume", "--precision", "--compile", "--max-steps"):
        assert flag in text
    assert "passes over the training data (default: 5)" in text  # the spec's epochs
    assert "(default: 64)" in text and "(default: 0.002)" in text  # batch size, learning rate
    assert "(default: val_loss)" in text and "(default: 2)" in text  # early stopping


def test_both_backends_offer_the_same_flags(runs: Runs) -> None:
    flag = re.compile(r'add_argument\(\s*"(--[a-z-]+)"')
    flags = {b: flag.findall((runs.glove[b].folder / "train.py").read_text()) for b in BACKENDS}
    assert len(flags["torch"]) > 20
    assert flags["torch"] == flags["keras"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_trains_and_writes_metrics_plot_and_checkpoints(runs: Runs, backend: str) -> None:
    result = runs.result(f"whole/{backend}").check()
    out = runs.glove[backend].folder / "whole"
    assert f"{N_TRAIN} examples, {N_VAL} for validation" in result.stdout
    assert "epoch 1/2" in result.stdout and "epoch 2/2" in result.stdout
    rows = read_metrics(out / "metrics.csv")
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert [row["step"] for row in rows] == ["3", "6"]
    assert set(rows[0]) == {"epoch", "step", "lr", "loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(np.isfinite(float(row["loss"])) for row in rows)
    assert (out / "curves.png").read_bytes().startswith(b"\x89PNG")
    state = "pt" if backend == "torch" else "npz"
    for name in ("best.safetensors", f"best.{state}", "last.safetensors", f"last.{state}"):
        assert (out / name).exists(), name
    assert_policies_hold(runs.glove[backend].program, out / "model.safetensors", runs.init)
    assert_policies_hold(runs.glove[backend].program, out / "last.safetensors", runs.init)
    assert not any(out.glob("*.tmp"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_resuming_gives_the_uninterrupted_weights(runs: Runs, backend: str) -> None:
    runs.result(f"whole/{backend}").check()
    first, second = runs.result(f"resumed/{backend}")
    first.check()
    second.check()
    assert "stopped by --max-steps" in first.stdout
    assert "resuming at epoch 2, step 4" in second.stdout
    folder = runs.glove[backend].folder
    assert read_metrics(folder / "resumed" / "metrics.csv") == read_metrics(
        folder / "whole" / "metrics.csv"
    )
    assert_same_weights(
        folder / "resumed" / "last.safetensors", folder / "whole" / "last.safetensors"
    )
    assert_same_weights(
        folder / "resumed" / "best.safetensors", folder / "whole" / "best.safetensors"
    )


def test_torchrun_ranks_end_identical(runs: Runs) -> None:
    result = runs.result("ddp").check()
    folder = runs.glove["torch"].folder
    assert "with 2 process(es)" in result.stdout, result.stdout
    assert_same_weights(folder / "rank0.safetensors", folder / "rank1.safetensors")
    for rank in (0, 1):
        assert_policies_hold(
            runs.glove["torch"].program, folder / f"rank{rank}.safetensors", runs.init
        )
    assert_same_weights(folder / "rank0.safetensors", folder / "ddp" / "last.safetensors")
    assert len(read_metrics(folder / "ddp" / "metrics.csv")) == 1


def test_multi_worker_strategy_workers_end_identical(runs: Runs) -> None:
    chief, other = runs.result("mwms")
    chief.check()
    other.check()
    folder = runs.glove["keras"].folder
    assert "with 2 replica(s)" in chief.stdout, chief.stdout
    assert "epoch" not in other.stdout  # only worker 0 reports
    assert_same_weights(folder / "worker0.safetensors", folder / "worker1.safetensors")
    for index in (0, 1):
        path = folder / f"worker{index}.safetensors"
        assert_policies_hold(runs.glove["keras"].program, path, runs.init)
    assert_same_weights(folder / "worker0.safetensors", folder / "mwms" / "last.safetensors")
    print(f"2-worker MultiWorkerMirroredStrategy run: {max(chief.seconds, other.seconds):.1f} s")


@pytest.mark.parametrize("backend", BACKENDS)
def test_schedule_and_clipping_flags(runs: Runs, backend: str) -> None:
    runs.result(f"newsgroups/{backend}").check()
    script = runs.newsgroups[backend]
    rows = read_metrics(script.folder / "run" / "metrics.csv")
    # 3 steps per epoch, warm-up over 2, cosine to 0 over the 4 after: lr at steps 3 and 6.
    lr = [float(row["lr"]) for row in rows]
    peak = 0.001
    assert lr[0] == pytest.approx(peak * 0.5 * (1 + np.cos(np.pi * 0 / 4)))
    assert lr[1] == pytest.approx(peak * 0.5 * (1 + np.cos(np.pi * 3 / 4)))
    assert_policies_hold(script.program, script.folder / "run" / "model.safetensors")


@pytest.mark.parametrize("backend", BACKENDS)
def test_three_dimensional_ids_from_npy_files(runs: Runs, backend: str) -> None:
    result = runs.result(f"memn2n/{backend}").check()
    assert f"{N_TRAIN - N_TRAIN // 4} examples, {N_TRAIN // 4} for validation" in result.stdout
    script = runs.memn2n[backend]
    assert len(read_metrics(script.folder / "run" / "metrics.csv")) == 1
    assert_policies_hold(script.program, script.folder / "run" / "model.safetensors")

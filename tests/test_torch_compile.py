"""``train.py --compile`` (PyTorch): training and validation each compile once.

The generated script marks the batch dimension dynamic, so the last, smaller batch of an epoch
(70 training examples in batches of 32: 32, 32, 6; 40 validation examples: 32, 8) runs the graph
compiled for the full ones; validation runs ``predict`` compiled apart, so switching to eval mode
without gradients compiles that function once instead of recompiling the training graph; the
second epoch reuses both. Counted from Dynamo's own logs (``TORCH_LOGS=recompiles,dynamo``).

The smallest example (the 20 Newsgroups classifier shrunk as in ``test_train_scripts.py``)
keeps it cheap: torch.compile on the CPU (Inductor, C++ code) takes a few seconds, once its
cache is warm about as long as the imports.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from nnspec import backends
from nnspec.backends.base import write_tree
from nnspec.compiler import compile_file
from nnspec.synthetic import write_npz
from tests.conftest import EXAMPLES

if importlib.util.find_spec("torch") is None or importlib.util.find_spec("tqdm") is None:
    pytest.skip("torch and tqdm are needed", allow_module_level=True)
if not any(shutil.which(cxx) for cxx in ("g++", "c++", "clang++")):
    pytest.skip("torch.compile on the CPU needs a C++ compiler", allow_module_level=True)

SMALL = (
    (EXAMPLES / "newsgroups_flat" / "spec.yaml")
    .read_text()
    .replace("vocab_size: 19000", "vocab_size: 300")
    .replace("dim: 300", "dim: 8")
    .replace("length: 1100", "length: 40")
)
N_TRAIN, N_VAL, BATCH = 70, 40, 32  # partial last batches in both phases
# "[frame/compile] Step 1: ..."; a restarted analysis logs "[frame/compile_restart]" again.
TRACING = re.compile(r"\[(\d+/\d+)(?:_\d+)?\] Step 1: torchdynamo start tracing (\w+) (\S+?):\d+")
RECOMPILING = re.compile(r"Recompiling function (\w+) in (\S+?):\d+")


def test_compile_once_per_phase(tmp_path: Path) -> None:
    assert SMALL.count("vocab_size: 300") == 1 and "length: 40" in SMALL
    (tmp_path / "small.yaml").write_text(SMALL)
    program, _ = compile_file(tmp_path / "small.yaml")
    folder = tmp_path / "torch"
    write_tree(backends.get("torch").generate(program), folder)
    write_npz(program, folder / "data.npz", N_TRAIN, N_VAL)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "TORCH_LOGS": "recompiles,dynamo",
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "train.py", "--data", "data.npz", "--epochs", "2"]
    command += ["--batch-size", str(BATCH), "--device", "cpu", "--compile", "--out", "run"]
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "epoch 2/2" in done.stdout and "val_loss" in done.stdout
    compiles = {(n, name, Path(file).name) for n, name, file in TRACING.findall(done.stderr)}
    traced = Counter((name, file) for _, name, file in compiles)
    recompiled = Counter((name, Path(file).name) for name, file in RECOMPILING.findall(done.stderr))
    # Each phase's function is traced once: its first compile, no recompile (the issue allows
    # one per phase; none is needed).
    assert traced == {("forward", "model.py"): 1, ("predict", "train.py"): 1}, traced
    assert not recompiled, recompiled

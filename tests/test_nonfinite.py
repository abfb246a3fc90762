"""A generated ``train.py`` that cannot make progress stops loudly, in both backends.

A learning rate of 1e30 sends the weights to infinity within a step or two, and the loss to NaN
from then on. In float32 the run stops once the loss has been NaN or infinite in
``--max-nonfinite-steps`` steps in a row (checked every ``LOG_EVERY`` = 10 steps and at the end of
every epoch); in float16 with loss scaling, where every such step halves the loss scale, once
the scale falls below 1.0 (``--max-nonfinite-steps`` set out of reach). Either way: exit status
2, one error line on stderr, and neither ``best.safetensors`` nor ``model.safetensors``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nnspec import backends
from nnspec.backends.base import write_tree
from nnspec.compiler import compile_spec
from nnspec.spec import load_string
from nnspec.synthetic import write_npz
from tests.conftest import EXAMPLES

for framework in ("torch", "tensorflow", "tqdm", "matplotlib"):
    if importlib.util.find_spec(framework) is None:
        pytest.skip(f"{framework} is not installed", allow_module_level=True)

TIMEOUT = 300  # seconds for one run
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "CUDA_VISIBLE_DEVICES": "",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "PYTHONUNBUFFERED": "1",
}
# The 20 Newsgroups example at test size; 96 training examples in batches of 8: 12 steps/epoch.
SPEC = (
    (EXAMPLES / "newsgroups_flat" / "spec.yaml")
    .read_text()
    .replace("vocab_size: 19000", "vocab_size: 300")
    .replace("dim: 300", "dim: 8")
    .replace("length: 1100", "length: 40")
)
DIVERGING = ["--epochs", "3", "--batch-size", "8", "--device", "cpu", "--lr", "1e30"]
ERROR = re.compile(r"^train\.py: error: (.*)$", re.MULTILINE)


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each backend's generated scripts beside a small data set, by backend."""
    root = tmp_path_factory.mktemp("nonfinite")
    parsed, doc = load_string(SPEC, "newsgroups_small.yaml")
    program = compile_spec(parsed, doc)
    folders = {}
    for backend in ("torch", "keras"):
        folder = root / backend
        write_tree(backends.get(backend).generate(program), folder)
        write_npz(program, folder / "data.npz", 96, 32)
        folders[backend] = folder
    return folders


def train(folder: Path, *flags: str) -> tuple[subprocess.CompletedProcess, Path]:
    """Run ``train.py`` with ``flags`` on the folder's data; the process and its run folder."""
    out = folder / "runs" / "-".join(flags).replace("--", "")
    command = [sys.executable, "train.py", "--data", "data.npz", "--out", str(out), *flags]
    done = subprocess.run(
        command, cwd=folder, env=ENV, capture_output=True, text=True, timeout=TIMEOUT
    )
    return done, out


def assert_stopped_loudly(done: subprocess.CompletedProcess, out: Path) -> str:
    """Exit status 2, one error line, no best or final weights; the error message."""
    assert done.returncode == 2, done.stderr[-3000:]
    errors = ERROR.findall(done.stderr)
    assert len(errors) == 1, done.stderr[-3000:]
    assert not (out / "best.safetensors").exists()
    assert not (out / "model.safetensors").exists()
    assert "saved" not in done.stdout  # the final "saved <path>" line
    return errors[0]


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_a_loss_that_stays_nan_stops_the_run(scripts, backend) -> None:
    done, out = train(scripts[backend], *DIVERGING, "--precision", "float32")
    message = assert_stopped_loudly(done, out)
    found = re.search(
        r"NaN or infinite in (\d+) steps in a row \(--max-nonfinite-steps 20\)", message
    )
    assert found, message
    # Checked every 10 steps and at each epoch's end (step 12, 24): the first check at 20 or
    # more NaN steps in a row is at step 20 or 24, the loss finite at step 1 at least.
    assert 20 <= int(found[1]) <= 23, message


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_a_float16_loss_scale_below_one_stops_the_run(scripts, backend) -> None:
    flags = ["--precision", "float16", "--max-nonfinite-steps", "1000"]
    done, out = train(scripts[backend], *DIVERGING, *flags)
    message = assert_stopped_loudly(done, out)
    found = re.search(r"float16 loss scale fell to ([0-9.e-]+) \(below 1\)", message)
    assert found and float(found[1]) < 1.0, message

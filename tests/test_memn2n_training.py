"""The MemN2N training recipe carried out by the generated ``train.py`` (arXiv 1503.08895):
linear start ends, and the plateau schedule divides the learning rate, when the validation loss
stops improving; both backends run it and keep the state in their checkpoints."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys

import numpy as np
import pytest
import torch

from nnspec import backends
from nnspec.backends.base import write_tree
from nnspec.synthetic import write_npz
from tests.test_known_answers import program_of
from tests.test_memn2n_recipe import spec
from tests.test_train_scripts import COMMON, run


@pytest.fixture(scope="module")
def train_module(tmp_path_factory):
    """The generated PyTorch ``train.py`` of a linear-start memory network, imported."""
    folder = tmp_path_factory.mktemp("linear_start")
    write_tree(backends.get("torch").generate(program_of(spec(linear_start="true"))), folder)
    sys.path.insert(0, str(folder))
    try:
        module_spec = importlib.util.spec_from_file_location("ls_train", folder / "train.py")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("model", None)
    return module


def args(**overrides):
    values = dict(
        schedule="plateau",
        plateau_factor=1.5,
        plateau_patience=0,
        monitor="val_loss",
        min_delta=0.0,
        early_stopping=False,
        patience=5,
        epochs=10,
        lr=0.01,
        warmup_steps=0,
    )
    return argparse.Namespace(**(values | overrides))


def progress():
    return {
        "epoch": 1,
        "batch": 0,
        "step": 0,
        "best": None,
        "best_epoch": None,
        "wait": 0,
        "stopped": False,
        "history": [],
        "loss_best": None,
        "loss_wait": 0,
        "lr_scale": 1.0,
        "linear_start": True,
    }


def test_linear_start_ends_then_the_plateau_divides_the_rate(train_module):
    """Validation losses 2.0, 1.5 (better), 1.6 (worse: linear start ends, the rate stays),
    1.7 (worse: the rate is divided by 1.5), 1.4 (better), 1.45 (worse: divided again)."""
    state, a = progress(), args()
    seen = []
    for loss in (2.0, 1.5, 1.6, 1.7, 1.4, 1.45):
        train_module.end_epoch(state, {"loss": 1.0, "val_loss": loss}, 0.01, 0.0, a, False, None)
        seen.append((state["linear_start"], state["lr_scale"]))
    third = 1 / 1.5
    assert seen == [
        (True, 1.0),
        (True, 1.0),
        (False, 1.0),
        (False, third),
        (False, third),
        (False, third / 1.5),
    ]
    assert train_module.learning_rate(7, 3, a, third) == pytest.approx(0.01 * third, rel=1e-15)


def test_other_schedules_ignore_the_plateau(train_module):
    state, a = progress(), args(schedule="constant")
    for loss in (1.0, 2.0, 3.0):
        train_module.end_epoch(state, {"loss": 1.0, "val_loss": loss}, 0.01, 0.0, a, False, None)
    assert state["lr_scale"] == 1.0 and not state["linear_start"]
    assert train_module.learning_rate(5, 3, a, state["lr_scale"]) == 0.01


def test_patience_counts_epochs_without_improvement(train_module):
    state, a = progress(), args(plateau_patience=1)
    state["linear_start"] = False
    for loss in (1.0, 1.1, 1.2, 1.3):
        train_module.end_epoch(state, {"loss": 1.0, "val_loss": loss}, 0.01, 0.0, a, False, None)
    assert state["lr_scale"] == pytest.approx(1 / 1.5)  # after the second worse epoch only


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_train_py_runs_the_recipe(backend, tmp_path):
    """Word memories, dropout, linear start and the plateau schedule through train.py: it
    trains, and its last checkpoint records the linear-start state and the rate's factor."""
    program = program_of(spec(dropout=0.1, linear_start="true"))
    write_tree(backends.get(backend).generate(program), tmp_path)
    write_npz(program, tmp_path / "data.npz", 96, 32)
    flags = ["--schedule", "plateau", "--lr", "0.05", "--epochs", "3"]
    script, data = str(tmp_path / "train.py"), str(tmp_path / "data.npz")
    command = [sys.executable, script, "--data", data, *COMMON, *flags]
    result = run([*command, "--out", str(tmp_path / "run")], tmp_path).check()
    assert "epoch 3/3" in result.stdout
    if backend == "torch":
        saved = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["progress"]
    else:
        with np.load(tmp_path / "run" / "last.npz") as checkpoint:
            saved = json.loads(str(checkpoint["progress"]))
    assert isinstance(saved["linear_start"], bool) and saved["lr_scale"] > 0
    assert saved["epoch"] == 4
    ended = "linear start ends" in result.stdout
    assert ended == (not saved["linear_start"])

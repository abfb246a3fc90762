"""A deliberately wrong backend fails ``nnspec parity``: the derived float32 bound is not
vacuous.

One op of the generated PyTorch code is made wrong by a relative 1e-3 -- the ReLU's value, the
ReLU's gradient only, or the optimizer's learning rate only -- and the same ``compare`` that
``nnspec parity`` runs (its default steps and batch) must fail in float32 and in float64, on the
comparisons that can see that op and only there: a wrong forward on the outputs, a wrong
gradient on the gradients, a wrong update on training alone (where the float32 tolerance is the
derived one).
"""

from __future__ import annotations

import pytest

from nnspec import backends
from nnspec.parity import compare, installed
from tests.parity_helpers import example_at_test_size
from tests.parity_seeds import cli_defaults

if not {"torch", "keras"} <= set(installed()):
    pytest.skip("needs both backends", allow_module_level=True)

import torch

WRONG = 1 + 1e-3


class ScaledGradient(torch.autograd.Function):
    """The identity, whose gradient is off by ``WRONG``."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * WRONG


def perturb(monkeypatch, what: str) -> list[int]:
    """Make one op of the torch backend wrong; returns a counter of its calls."""
    calls = [0]
    relu = torch.relu
    if what == "forward":

        def wrong_relu(x):
            calls[0] += 1
            return relu(x) * WRONG

        monkeypatch.setattr(torch, "relu", wrong_relu)
    elif what == "gradient":

        def wrong_grad_relu(x):
            calls[0] += 1
            return ScaledGradient.apply(relu(x))

        monkeypatch.setattr(torch, "relu", wrong_grad_relu)
    else:
        runtime = backends.get("torch").runtime()
        load_module = runtime.load_module

        def wrong_lr_module(path):
            module = load_module(path)
            make_optimizer = module.make_optimizer

            def wrong_optimizer(model, lr=None):
                calls[0] += 1
                optimizer = make_optimizer(model, lr)
                for group in optimizer.param_groups:
                    group["lr"] *= WRONG
                return optimizer

            module.make_optimizer = wrong_optimizer
            return module

        monkeypatch.setattr(runtime, "load_module", wrong_lr_module)
    return calls


# What must fail (True) and what must still pass (False) for each wrong op. A gradient scaled by
# a constant barely moves Adam's steps (m / sqrt(v) is scale-free but for eps), so training may
# pass or fail there (None).
SEES = {
    "forward": {"outputs": True, "gradients": True, "training": True},
    "gradient": {"outputs": False, "gradients": True, "training": None},
    "optimizer": {"outputs": False, "gradients": False, "training": True},
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("what", list(SEES))
def test_a_wrong_backend_fails_parity(what, dtype, monkeypatch):
    program = example_at_test_size("newsgroups_flat")
    steps, batch = cli_defaults()
    calls = perturb(monkeypatch, what)
    report = compare(program, dtype=dtype, steps=steps, batch=batch, seed=0)
    assert calls[0] > 0, "the perturbed op was never called: the test no longer perturbs"
    assert not report.ok
    failed = {c.what for c in report.comparisons if not c.ok}
    must = {kind for kind, sees in SEES[what].items() if sees}
    may = must | {kind for kind, sees in SEES[what].items() if sees is None}
    assert must <= failed <= may, report.failures()
    assert all(c.backend == "torch" for c in report.comparisons if not c.ok)
    if dtype == "float32" and what == "optimizer":
        # The derived bound, not a loose fixed one, is what fails: some weight is off by more
        # than both backends' own float32 rounding together.
        worst = max(
            (c for c in report.comparisons if c.what == "training"),
            key=lambda c: c.diff / c.tolerance,
        )
        assert worst.rounding is not None and worst.diff > 2 * worst.tolerance

"""The reference semantics (:mod:`nnspec.reference`): numpy only, known answers of the IR's
formulas, and agreement with every installed backend on every example and IR example in float64
(<= 1e-12, scaled as :func:`nnspec.parity.scaled_diff`).

The parity tests (``tests/test_parity*.py``) compare every backend's outputs with the reference
too, inside :func:`nnspec.parity.compare`; here the forward pass alone, with the reference's own
inner-node values checked against the IR's shapes.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from nnspec import backends, reference
from nnspec.compiler import ir
from nnspec.parity import installed, random_batch, random_state, scaled_diff
from tests import ir_examples, ir_examples_arch
from tests.conftest import EXAMPLE_NAMES, ROOT
from tests.parity_helpers import example_at_test_size


def narrow_heads(length: int = 2, heads: int = 2, pad: int | None = 0) -> ir.Program:
    """Head dimension 1 with as many positions as heads (a reshape or einsum that confuses the
    position and head axes still runs, with other numbers), masked when ``pad`` is set."""
    mask = None if pad is None else ir.Mask("tokens", pad)
    table = ir.EmbeddingTable("words", 11, heads, "words.embeddings", pad_index=pad)
    zero_rows = () if pad is None else (pad,)
    emb = ir.Initializer("uniform", low=-0.05, high=0.05)
    weights: list = [ir.Weight("words.embeddings", (11, heads), emb, zero_rows=zero_rows)]
    att = ir.SelfAttention(heads, 1, ir_examples_arch._attention_weights("att", heads, weights))
    shape = (None, length, heads)
    nodes = [
        ir.Node("words_lookup", ir.EmbeddingLookup("words"), ("tokens",), shape, mask),
        ir.Node("att", att, ("words_lookup",), shape, mask),
        ir.Node("flat", ir.Flatten(), ("att",), (None, length * heads)),
    ]
    out, w = ir_examples_arch._dense("out", "flat", (None, length * heads), 3, "linear")
    return ir_examples_arch._program(
        "narrow_heads",
        (ir.Input("tokens", length),),
        (table,),
        (*nodes, out),
        ("out",),
        [*weights, *w],
    )


PROGRAMS = {
    **{f"example:{name}": (lambda name=name: example_at_test_size(name)) for name in EXAMPLE_NAMES},
    **{f"ir:{build.__name__}": build for build in ir_examples.ALL},
    **{f"arch:{build().name}": build for build in ir_examples_arch.ALL},
    "narrow_heads": narrow_heads,
    "narrow_heads_unmasked": lambda: narrow_heads(3, 3, None),
}


def test_imports_numpy_and_no_framework():
    code = (
        "import sys\n"
        "import nnspec.reference\n"
        "heavy = [m for m in ('torch', 'tensorflow', 'keras', 'jax') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# ----------------------------------------------------------------------------- known answers


def test_embedding_policies():
    """Scale, learned positions, pad zeroing after the positions (or not), and pad rows of the
    canonical weights re-zeroed on reading, as loading them into a model does."""
    program = ir_examples.sinusoidal_max_pool()
    table = program.table(program.nodes[0].op.table)
    rng = np.random.default_rng(0)
    state = random_state(program, rng)
    state[table.weight][table.pad_index] = 5.0  # not zero: the reference must zero it
    ids = np.array([[3, 4, table.pad_index], [table.pad_index] * 3])
    padded = np.pad(ids, ((0, 0), (0, 6)), constant_values=table.pad_index)
    lookup = reference.values(program, state, {program.inputs[0].name: padded})["tok_lookup"]
    assert np.all(lookup[padded == table.pad_index] == 0.0) and np.all(lookup[0, :2] != 0.0)

    learned = dataclasses.replace(
        table, scale=2.0, positional=ir.LearnedPositional(4, "pos"), zero_padded_positions=False
    )
    weights = {table.weight: state[table.weight], "pos": rng.normal(size=(4, table.dim))}
    got = reference.embed(learned, weights, ids)
    np.testing.assert_array_equal(got, weights[table.weight][ids] * 2.0 + weights["pos"][:3])


def test_sinusoids_follow_the_formula():
    pe = reference.sinusoids(5, 6, 100.0)
    for pos in range(5):
        for i in range(3):
            angle = pos / 100.0 ** (2 * i / 6)
            assert pe[pos, 2 * i] == pytest.approx(np.sin(angle), abs=1e-15)
            assert pe[pos, 2 * i + 1] == pytest.approx(np.cos(angle), abs=1e-15)


@pytest.mark.parametrize("padding", ["valid", "same", "causal"])
@pytest.mark.parametrize(("k", "s", "d", "length"), [(3, 1, 1, 7), (4, 2, 1, 9), (3, 1, 2, 8)])
def test_conv1d_lengths_and_taps(padding, k, s, d, length):
    """Output lengths of the IR's three padding rules, and a tap-by-tap known answer."""
    op = ir.Conv1D(1, k, "kernel", None, s, d, padding)
    x = np.arange(length, dtype=np.float64)[None, :, None] + 1
    state = {"kernel": np.ones((k, 1, 1))}
    y = reference.conv1d(op, state, x)[0, :, 0]
    expected = {
        "valid": (length - d * (k - 1) - 1) // s + 1,
        "same": -(-length // s),
        "causal": (length + d * (k - 1) - d * (k - 1) - 1) // s + 1,
    }[padding]
    assert len(y) == expected
    if padding == "causal":  # the first output sees d * (k - 1) zeros, then x[0]
        assert y[0] == 1.0 and y[-1] == sum(length - i * d for i in range(k))


def test_recurrent_padding_is_invisible():
    """A padded batch gives each sequence's outputs alone (both directions, both cells)."""
    program = ir_examples_arch.recurrent()
    state = random_state(program, np.random.default_rng(1))
    rng = np.random.default_rng(2)
    for node in program.nodes:
        if not isinstance(node.op, ir.Recurrent):
            continue
        width = state[node.op.forward.kernel].shape[0]
        x = rng.normal(size=(3, 6, width))
        lengths = np.array([6, 4, 1])
        mask = np.arange(6)[None, :] < lengths[:, None]
        batch = reference.recurrent(node.op, state, x, mask)
        for row, n in enumerate(lengths):
            alone = reference.recurrent(node.op, state, x[row : row + 1, :n], None)[0]
            if node.op.return_sequences:
                np.testing.assert_allclose(batch[row, :n], alone, atol=1e-15)
                assert np.all(batch[row, n:] == 0.0)
            else:
                np.testing.assert_allclose(batch[row], alone, atol=1e-15)


def test_attention_ignores_padded_keys():
    program = ir_examples_arch.transformer()
    node = program.node("attention")
    state = random_state(program, np.random.default_rng(3))
    x = np.random.default_rng(4).normal(size=(1, 8, 8))
    mask = np.arange(8)[None, :] < 5
    masked = reference.attention(node.op, state, x, mask)
    rotary = node.op.rotary is not None
    # Without rotary, dropping the padded positions leaves the valid queries' outputs as they are.
    if not rotary:
        alone = reference.attention(node.op, state, x[:, :5], None)
        np.testing.assert_allclose(masked[:, :5], alone, atol=1e-14)
    # Changing padded positions changes no valid query's output.
    y = x.copy()
    y[:, 5:] += 10.0
    np.testing.assert_allclose(
        reference.attention(node.op, state, y, mask)[:, :5], masked[:, :5], atol=1e-14
    )


def test_float32_runs_in_float32():
    program = ir_examples_arch.memn2n()
    rng = np.random.default_rng(5)
    state = random_state(program, rng)
    inputs, _ = random_batch(program, rng, 4)
    values = reference.values(program, state, inputs, "float32")
    assert all(values[n.name].dtype == np.float32 for n in program.nodes)
    # The last example is all padding: masks replace scores (no -1e9 offset swamping them in
    # float32), so it is as close to float64 as the others.
    out32, out64 = values[program.outputs[0]], reference.forward(program, state, inputs)
    assert scaled_diff(out32, out64) < 1e-5


def test_an_op_without_a_rule_is_refused():
    @dataclasses.dataclass(frozen=True)
    class Mystery:
        op: str = "mystery"

    program = ir_examples.flat_classifier()
    node = dataclasses.replace(program.nodes[-1], op=Mystery())
    program = dataclasses.replace(program, nodes=(*program.nodes[:-1], node))
    state = random_state(program, np.random.default_rng(6))
    inputs, _ = random_batch(program, np.random.default_rng(7), 2)
    with pytest.raises(NotImplementedError, match="Mystery"):
        reference.forward(program, state, inputs)


# ----------------------------------------------------------------------------- every backend


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory(prefix="nnspec-reference-") as tmp:
        yield Path(tmp)


@pytest.mark.parametrize("backend", installed())
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_every_backend_agrees_with_the_reference_in_float64(name, backend, workdir):
    """Every example (at test size) and IR example (and attention with head dimension 1), on a
    batch with padded tails and an all-padding example, in float64:
    max |backend - reference| / max(1, max |reference|) is at most 1e-12."""
    program = PROGRAMS[name]()
    rng = np.random.default_rng(8)
    state = random_state(program, rng)
    inputs, _ = random_batch(program, rng, 6)
    folder = workdir / f"{name.replace(':', '_')}_{backend}"
    for rel, text in backends.get(backend).generate(program).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    runtime = backends.get(backend).runtime()
    model = runtime.build(runtime.load_module(folder / "model.py"), "float64")
    runtime.set_state(model, state)
    got = runtime.forward(model, inputs)
    want = reference.forward(program, state, inputs)
    assert scaled_diff(got, want) <= 1e-12, scaled_diff(got, want)

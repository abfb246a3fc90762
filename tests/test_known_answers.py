"""Known answers for every number the compiler derives: output shapes, trainable and frozen
parameter counts, ``sqrt_dim`` scales, trainable row ranges and special-token ids, default
positional lengths, the sinusoidal table and the memory network's position and temporal
encodings.

Every expected value is worked out by hand (the arithmetic is in the comments) or by a formula
written here; nnspec only produces the values under test. The last tests read the positional
tables and ``l_kj`` weights out of the generated models of both backends (float64, exact to
1e-15), so a backend that computes them itself is checked as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from nnspec import backends, reference
from nnspec.compiler import compile_file, compile_spec, ir
from nnspec.compiler.summary import summarize
from nnspec.parity import REFERENCE, installed
from nnspec.spec import load_string
from tests.conftest import EXAMPLE_NAMES, EXAMPLES

# Per example: (layer, output shape, trainable, frozen) for each summary row.
SUMMARIES = {
    "newsgroups_flat": [
        ("words_lookup", (None, 1100, 300), 19000 * 300, 0),  # the pad row trains (held at 0.0)
        ("flatten", (None, 330000), 0, 0),  # 1100 * 300
        ("dense", (None, 25), 330000 * 25 + 25, 0),
        ("dropout", (None, 25), 0, 0),
        ("dense_1", (None, 20), 25 * 20 + 20, 0),
    ],
    "newsgroups_glove": [
        ("words_lookup", (None, 1100, 50), 50, 18999 * 50),  # only the <oov> row, id 18999
        ("flatten", (None, 55000), 0, 0),
        ("dense", (None, 25), 55000 * 25 + 25, 0),
        ("dropout", (None, 25), 0, 0),
        ("dense_1", (None, 20), 25 * 20 + 20, 0),
    ],
    "glove_special_tokens": [
        ("glove_lookup", (None, 200, 50), 4 * 50, 9996 * 50),  # 4 special rows train
        ("global_average_pool", (None, 50), 0, 0),
        ("dense", (None, 64), 50 * 64 + 64, 0),
        ("dropout", (None, 64), 0, 0),
        ("dense_1", (None, 4), 64 * 4 + 4, 0),
    ],
    "glove_lstm": [
        ("glove_lookup", (None, 60, 50), 3 * 50, 4997 * 50),
        # per direction: kernel 50 x 4*48, recurrent kernel 48 x 4*48, two biases of 4*48
        ("lstm", (None, 96), 2 * (50 * 192 + 48 * 192 + 2 * 192), 0),
        ("dropout", (None, 96), 0, 0),
        ("dense", (None, 4), 96 * 4 + 4, 0),
    ],
    "transformer_classifier": [
        ("words_lookup", (None, 64, 64), 8000 * 64, 0),
        # q, k, v, output: 64 x 64 + 64 each; ff1 64 x 128 + 128; ff2 128 x 64 + 64; 2 norms
        ("transformer_encoder_block0", (None, 64, 64), 4 * 4160 + 8320 + 8256 + 2 * 128, 0),
        ("transformer_encoder", (None, 64, 64), 4 * 4160 + 8320 + 8256 + 2 * 128, 0),
        ("layer_norm", (None, 64, 64), 2 * 64, 0),
        ("global_average_pool", (None, 64), 0, 0),
        ("dense", (None, 4), 64 * 4 + 4, 0),
    ],
    "memn2n_lm": [
        # A, C: 60 x 48; TA, TC: 16 x 48; H: 48 x 48; W: 48 x 60
        ("memory_network", (None, 60), 2 * 2880 + 2 * 768 + 2304 + 2880, 0),
    ],
}

TOTALS = {  # (trainable, frozen), the sums of the rows above, as the README states some
    "newsgroups_flat": (13_950_545, 0),
    "newsgroups_glove": (1_375_595, 949_950),
    "glove_special_tokens": (3_724, 499_800),
    "glove_lstm": (38_938, 249_850),
    "transformer_classifier": (579_332, 0),
    "memn2n_lm": (12_480, 0),
}


def program_of(text: str) -> ir.Program:
    """Compile spec text."""
    spec, doc = load_string(text, "case.yaml")
    return compile_spec(spec, doc)


def test_every_example_has_known_answers():
    assert sorted(SUMMARIES) == sorted(EXAMPLE_NAMES) == sorted(TOTALS)


@pytest.mark.parametrize("name", sorted(SUMMARIES))
def test_summary_shapes_and_parameter_counts(name):
    program, _ = compile_file(EXAMPLES / name / "spec.yaml")
    rows = [(r.name, r.shape, r.trainable, r.frozen) for r in summarize(program)]
    assert rows == SUMMARIES[name]
    assert (program.trainable_count, program.frozen_count) == TOTALS[name]


def table_spec(table: str, length: int = 7, layers: str = "") -> str:
    """A one-table spec whose model is the lookup (then ``layers``), flattened."""
    return f"""
nnspec: 1
name: known
inputs: {{tokens: {{length: {length}}}}}
embeddings:
  words: {table}
model:
  layers:
    - {{type: embedding, table: words}}
{layers}
    - {{type: flatten}}
training: {{loss: mse, optimizer: {{type: sgd, lr: 0.5}}}}
"""


@pytest.mark.parametrize(
    ("dim", "scale"),
    [(64, 8.0), (9, 3.0), (4, 2.0), (2, 1.4142135623730951), (7, 2.6457513110645907)],
)
def test_sqrt_dim_scale(dim, scale):
    table = f"{{vocab_size: 10, dim: {dim}, scale: sqrt_dim}}"
    assert program_of(table_spec(table)).table("words").scale == scale


def test_numeric_and_default_scales():
    assert (
        program_of(table_spec("{vocab_size: 10, dim: 4, scale: 0.5}")).table("words").scale == 0.5
    )
    assert program_of(table_spec("{vocab_size: 10, dim: 4}")).table("words").scale == 1.0


def test_row_selection_routes_ids_ranges_and_special_tokens():
    table = (
        "{vocab_size: 20, dim: 5, padding: {index: 3}, special_tokens: [s0, s1],"
        " trainable: {ids: [1, 12], ranges: [[2, 6]], special_tokens: [s1]}}"
    )
    weight = program_of(table_spec(table)).weight("words.embeddings")
    # ids 1 and 12, the range 2..5 less the pad 3, and s1 = 19 (s0 = 18 stays frozen)
    assert weight.trainable == "rows"
    assert weight.trainable_rows == ((1, 3), (4, 6), (12, 13), (19, 20))
    assert weight.zero_rows == (3,)
    assert (weight.trainable_count, weight.frozen_count) == (6 * 5, 14 * 5)


@pytest.mark.parametrize(
    ("trainable", "kind", "rows", "counts"),
    [
        ("{special_tokens: true}", "rows", ((17, 20),), (15, 85)),  # 3 specials: 17, 18, 19
        ("{ranges: [[0, 10]]}", "rows", ((1, 10),), (45, 55)),  # the pad 0 cut out
        ("{ranges: [[0, 20]]}", "rows", ((1, 20),), (95, 5)),
        ("true", "all", (), (100, 0)),  # the pad row counted as trainable, held at 0.0
        ("false", "none", (), (0, 100)),
    ],
)
def test_trainable_rows_and_counts(trainable, kind, rows, counts):
    table = (
        "{vocab_size: 20, dim: 5, padding: {index: 0}, special_tokens: [a, b, c],"
        f" trainable: {trainable}}}"
    )
    weight = program_of(table_spec(table)).weight("words.embeddings")
    assert (weight.trainable, weight.trainable_rows) == (kind, rows)
    assert (weight.trainable_count, weight.frozen_count) == counts


def test_positional_max_length_defaults_to_the_input_length():
    learned = program_of(table_spec("{vocab_size: 10, dim: 4, positional: {type: learned}}", 6))
    assert learned.table("words").positional.max_length == 6
    assert learned.weight("words.positional").shape == (6, 4)
    explicit = "{vocab_size: 10, dim: 4, positional: {type: learned, max_length: 9}}"
    assert program_of(table_spec(explicit, 6)).weight("words.positional").shape == (9, 4)
    sinusoids = program_of(
        table_spec("{vocab_size: 10, dim: 4, positional: {type: sinusoidal}}", 5)
    )
    assert sinusoids.table("words").positional.max_length == 5
    transformer, _ = compile_file(EXAMPLES / "transformer_classifier" / "spec.yaml")
    assert transformer.table("words").positional.max_length == 64


def test_layer_norm_epsilons():
    program, _ = compile_file(EXAMPLES / "transformer_classifier" / "spec.yaml")
    assert program.node("layer_norm").op.epsilon == 1e-5  # torch's default, also the spec's
    assert program.node("transformer_encoder").op.epsilon == 1e-5
    explicit = program_of(
        table_spec("{vocab_size: 10, dim: 4}", 5, "    - {type: layer_norm, epsilon: 0.001}")
    )
    assert explicit.node("layer_norm").op.epsilon == 1e-3


# ----------------------------------------------------------------------------- generated models


class ReferenceRuntime:
    """:mod:`nnspec.reference` behind the runtime adapter's ``set_state`` / ``forward``, so that
    the known answers judge the reference semantics too."""

    @dataclass
    class Model:
        program: ir.Program
        state: dict[str, np.ndarray] = field(default_factory=dict)

    @staticmethod
    def set_state(model: Model, state: dict[str, np.ndarray]) -> None:
        model.state = dict(state)

    @staticmethod
    def forward(model: Model, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return reference.forward(model.program, model.state, inputs)


def generated_model(program: ir.Program, backend: str, tmp_path):
    """The float64 model generated from ``program`` for ``backend``, and its runtime adapter
    (for ``"reference"``: the reference semantics)."""
    if backend == REFERENCE:
        return ReferenceRuntime, ReferenceRuntime.Model(program)
    for rel, text in backends.get(backend).generate(program).items():
        (tmp_path / rel).write_text(text)
    runtime = backends.get(backend).runtime()
    return runtime, runtime.build(runtime.load_module(tmp_path / "model.py"), "float64")


@pytest.mark.parametrize("backend", [*installed(), REFERENCE])
def test_sinusoids_scale_and_pad_zeroing_in_the_generated_model(backend, tmp_path):
    table = (
        "{vocab_size: 5, dim: 4, padding: {index: 0}, scale: sqrt_dim,"
        " positional: {type: sinusoidal}}"
    )
    runtime, model = generated_model(program_of(table_spec(table, 3)), backend, tmp_path)
    runtime.set_state(model, {"words.embeddings": np.arange(5.0)[:, None] * np.ones((5, 4))})
    ids = np.array([[1, 2, 0], [0, 0, 0]], dtype=np.int32)
    out = runtime.forward(model, {"tokens": ids}).reshape(2, 3, 4)  # flattened row-major

    # pe[p] = [sin(p), cos(p), sin(p / 100), cos(p / 100)]: 10000 ** (2 / 4) = 100
    def pe(p: int) -> list[float]:
        return [math.sin(p), math.cos(p), math.sin(p / 100), math.cos(p / 100)]

    expected = np.array(
        [
            # row v of the table is v * [1, 1, 1, 1], scaled by sqrt(4) = 2; the pad is 0.0
            [[2 * 1 + x for x in pe(0)], [2 * 2 + x for x in pe(1)], [0.0] * 4],
            [[0.0] * 4] * 3,
        ]
    )
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-15)
    assert np.all(out[:, 2] == 0.0) and np.all(out[1] == 0.0)  # exactly


MEMORY_PROBE = """
nnspec: 1
name: known
inputs: {memories: {shape: [2, 4]}}
model:
  layers:
    - {type: memory_network, vocab_size: 4, dim: 4, hops: 1, tying: layerwise, query: constant,
       query_value: 0.0, sentence_encoding: memn2n_pe, temporal: true, linear_map: false,
       activation: linear}
training: {loss: mse, optimizer: {type: sgd, lr: 0.5}}
"""


@pytest.mark.parametrize("backend", [*installed(), REFERENCE])
def test_memn2n_position_and_temporal_encoding_in_the_generated_model(backend, tmp_path):
    """One memory and an empty one (all padding: no attention), a zero query: the output is
    ``(c_1 + TC[0]) W`` with ``W = I``, and ``c_1 = sum_j l_j * C[x_j]``. A table whose only
    non-zero row is word ``w``'s (ones) reads out ``l_kj`` at that word's position ``j``."""
    runtime, model = generated_model(program_of(MEMORY_PROBE), backend, tmp_path)
    # Sentence A has J = 3 words, sentence B J = 2 (post-padded).
    memories = np.array([[[1, 2, 3, 0], [0] * 4], [[2, 3, 0, 0], [0] * 4]], dtype=np.int32)

    def read(word: int | None, temporal: list[float]) -> np.ndarray:
        table = np.zeros((4, 4))
        if word is not None:
            table[word] = 1.0
        runtime.set_state(
            model,
            {
                "memory_network.A": np.zeros((4, 4)),
                "memory_network.C": table,
                "memory_network.TA": np.zeros((2, 4)),
                # the empty memory's encoding would show if it were attended to
                "memory_network.TC": np.array([temporal, [100.0, 200.0, 300.0, 400.0]]),
                "memory_network.W": np.eye(4),
            },
        )
        return runtime.forward(model, {"memories": memories})

    # l_kj = (1 - j/J) - (k/d)(1 - 2j/J), d = 4, k = 1..4:
    #   J = 3: j = 1: 2/3 - k/12; j = 2: 1/3 + k/12; j = 3: k/4
    #   J = 2: j = 1: 1/2;        j = 2: k/4
    none = [0.0] * 4
    expected = {
        1: [[7 / 12, 1 / 2, 5 / 12, 1 / 3], none],  # word 1: A's j = 1, absent from B
        2: [[5 / 12, 1 / 2, 7 / 12, 2 / 3], [1 / 2] * 4],  # A's j = 2, B's j = 1
        3: [[1 / 4, 1 / 2, 3 / 4, 1.0], [1 / 4, 1 / 2, 3 / 4, 1.0]],  # A's j = 3, B's j = 2
    }
    for word, rows in expected.items():
        np.testing.assert_allclose(read(word, none), rows, rtol=0, atol=1e-15, err_msg=f"{word}")
    # The temporal encoding TC[0] is added to the memory's output vector.
    np.testing.assert_allclose(read(None, [1.0, 2.0, 3.0, 4.0]), [[1, 2, 3, 4]] * 2, atol=1e-15)

"""The compiler on architecture specs: graphs, shapes, parameter counts, tying, stacking."""

from __future__ import annotations

import pytest

from nnspec.compiler import compile_file, compile_spec, ir
from nnspec.spec import SpecError, load_string
from tests.conftest import EXAMPLES

HEAD = """\
nnspec: 1
name: arch
inputs:
  tokens: {length: 12}
embeddings:
  words: {vocab_size: 50, dim: 8, padding: {index: 0}}
model:
  layers:
    - {type: embedding, table: words}
"""
SOFTMAX = "    - {type: dense, units: 3, activation: softmax}\n"
TAIL = """\
training:
  loss: sparse_categorical_crossentropy
"""


def compile_layers(layers: str, head: str = HEAD, extra: str = ""):
    spec, doc = load_string(head + layers + extra + TAIL, "arch.yaml")
    return compile_spec(spec, doc)


def shapes(program):
    return {n.name: n.shape for n in program.nodes}


def test_conv_and_pool_shapes_and_masks():
    p = compile_layers(
        "    - {type: conv1d, filters: 5, kernel_size: 3, padding: causal, dilation: 2}\n"
        "    - {type: conv1d, filters: 6, kernel_size: 4, strides: 2, padding: same}\n"
        "    - {type: max_pool1d, pool_size: 2, strides: 1}\n"
        "    - {type: conv1d, filters: 4, kernel_size: 3, strides: 2}\n"
        "    - {type: average_pool1d}\n"
        "    - {type: flatten}\n"
        "    - {type: dense, units: 3, activation: softmax}\n"
    )
    assert shapes(p) == {
        "words_lookup": (None, 12, 8),
        "conv1d": (None, 12, 5),
        "conv1d_1": (None, 6, 6),
        "max_pool1d": (None, 5, 6),
        "conv1d_2": (None, 2, 4),
        "average_pool1d": (None, 1, 4),
        "flatten": (None, 4),
        "dense": (None, 3),
    }
    nodes = {n.name: n for n in p.nodes}
    assert nodes["conv1d"].mask == ir.Mask("tokens", 0)  # stride 1, causal: positions align
    assert nodes["conv1d_1"].mask is None
    assert p.weight("conv1d.kernel").shape == (3, 8, 5)


def test_stacked_bidirectional_lstm():
    p = compile_layers(
        "    - {type: lstm, units: 4, bidirectional: true, num_layers: 2, dropout: 0.5}\n"
        "    - {type: dense, units: 3, activation: softmax}\n"
    )
    assert [n.name for n in p.nodes] == [
        "words_lookup",
        "lstm_layer0",
        "lstm_dropout0",
        "lstm",
        "dense",
    ]
    assert p.repeats == (ir.Repeat("lstm", ("lstm_layer0", "lstm"), ("lstm_dropout0",)),)
    assert p.repeats[0].count == 2
    assert shapes(p)["lstm_layer0"] == (None, 12, 8)
    assert shapes(p)["lstm"] == (None, 8)
    assert p.weight("lstm_layer0.backward.kernel").shape == (8, 16)
    assert p.weight("lstm.forward.kernel").shape == (8, 16)
    assert p.weight("lstm.forward.recurrent_bias").shape == (16,)
    # 2 layers x 2 directions x (in*16 + 4*16 + 2*16), in = 8 for both layers
    assert sum(w.size for w in p.weights if w.name.startswith("lstm")) == 2 * 2 * (128 + 64 + 32)


def test_gru_sum_merge_and_sequences():
    p = compile_layers(
        "    - {type: gru, units: 5, bidirectional: true, merge: sum, return_sequences: true}\n"
        "    - {type: global_max_pool}\n"
        "    - {type: dense, units: 3, activation: softmax}\n"
    )
    assert shapes(p)["gru"] == (None, 12, 5)
    assert p.node("gru").mask == ir.Mask("tokens", 0)
    assert p.weight("gru.forward.kernel").shape == (8, 15)


def test_graph_with_tied_layer_residual_and_concat():
    head = HEAD.replace("  tokens: {length: 12}", "  left: {length: 12}\n  right: {length: 12}")
    p = compile_layers(
        "    - {name: r, type: embedding, table: words, input: right}\n"
        "    - {name: enc_l, type: dense, units: 8, activation: tanh, inputs: [words_lookup]}\n"
        "    - {name: enc_r, type: dense, units: 8, activation: tanh, inputs: [r], share: enc_l}\n"
        "    - {name: res, type: add, inputs: [enc_l, words_lookup]}\n"
        "    - {name: both, type: concatenate, inputs: [res, enc_r]}\n"
        "    - {type: layer_norm}\n"
        "    - {type: batch_norm}\n"
        "    - {type: global_average_pool}\n"
        "    - {type: dense, units: 3, activation: softmax}\n",
        head=head.replace(
            "    - {type: embedding, table: words}",
            "    - {type: embedding, table: words, input: left}",
        ),
    )
    nodes = {n.name: n for n in p.nodes}
    assert nodes["enc_r"].layer_name == "enc_l"
    assert nodes["enc_l"].layer_name == "enc_l"
    assert [w.name for w in p.weights if w.name.startswith("enc")] == ["enc_l.kernel", "enc_l.bias"]
    assert shapes(p)["both"] == (None, 12, 16)
    assert p.weight("batch_norm.moving_mean").state
    assert p.frozen_count == 32  # moving mean and variance


def test_transformer_blocks_rotary_from_table():
    head = HEAD.replace(
        "padding: {index: 0}}", "padding: {index: 0}, positional: {type: rotary, base: 500}}"
    )
    p = compile_layers(
        "    - {type: transformer_encoder, heads: 2, ff_dim: 16, num_layers: 2}\n"
        "    - {type: self_attention, heads: 4}\n"
        "    - {type: global_average_pool}\n"
        "    - {type: dense, units: 3, activation: softmax}\n",
        head=head,
    )
    blocks = [n for n in p.nodes if isinstance(n.op, ir.TransformerBlock)]
    assert [b.name for b in blocks] == ["transformer_encoder_block0", "transformer_encoder"]
    assert p.repeats == (
        ir.Repeat("transformer_encoder", ("transformer_encoder_block0", "transformer_encoder")),
    )
    assert all(b.op.attention.rotary == ir.Rotary(500.0) for b in blocks)
    assert p.node("self_attention").op.rotary == ir.Rotary(500.0)
    assert p.node("self_attention").op.head_dim == 2
    assert p.table("words").positional is None


def test_examples_counts():
    expected = {
        "glove_lstm": (38_938, 249_850),
        "memn2n_lm": (12_480, 0),
        "transformer_classifier": (579_332, 0),
    }
    for name, (trainable, frozen) in expected.items():
        program, _ = compile_file(EXAMPLES / name / "spec.yaml")
        assert (program.trainable_count, program.frozen_count) == (trainable, frozen), name


def test_memory_network_adjacent_weights():
    spec = """\
nnspec: 1
name: qa
inputs:
  story: {shape: [10, 6]}
  question: {length: 6}
model:
  layers:
    - type: memory_network
      inputs: [story, question]
      vocab_size: 40
      dim: 8
      hops: 3
      sentence_encoding: memn2n_pe
      temporal: true
training:
  loss: sparse_categorical_crossentropy
"""
    parsed, doc = load_string(spec, "qa.yaml")
    p = compile_spec(parsed, doc)
    op = p.nodes[0].op
    assert op.tying == "adjacent" and op.position_encoding and op.query == "embedded"
    assert [h.A for h in op.hops] == ["memory_network.A1", "memory_network.A2", "memory_network.A3"]
    assert op.hops[-1].C == "memory_network.A4" and op.output is None
    assert op.hops[1].TA == op.hops[0].TC
    assert p.weight("memory_network.A2").zero_rows == (0,)
    assert p.trainable_count == 4 * 40 * 8 + 4 * 10 * 8


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        (
            "    - {type: lstm, units: 4}\n    - {type: lstm, units: 4}\n" + SOFTMAX,
            "lstm needs a (batch, length, features) input, got shape (batch, 4)",
        ),
        (
            "    - {type: global_max_pool}\n    - {type: max_pool1d}\n" + SOFTMAX,
            "max_pool1d needs",
        ),
        (
            "    - {type: multiply, inputs: [words_lookup]}\n    - {type: flatten}\n" + SOFTMAX,
            "at least two inputs",
        ),
    ],
)
def test_graph_errors(layers, message):
    with pytest.raises(SpecError) as info:
        compile_layers(layers)
    assert message in str(info.value)


def test_special_token_ids_are_in_the_ir():
    head = HEAD.replace(
        "padding: {index: 0}}", "padding: {index: 0}, special_tokens: ['<oov>', '<cls>']}"
    )
    pooled = "    - {type: global_average_pool}\n" + SOFTMAX
    table = compile_layers(pooled, head=head).table("words")
    assert table.special_tokens == (("<oov>", 48), ("<cls>", 49))
    assert table.special_ids == {"<oov>": 48, "<cls>": 49}
    assert compile_layers(pooled).table("words").special_tokens == ()

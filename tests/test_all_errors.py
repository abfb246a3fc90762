"""Every problem of a spec in one run (schema, table rules, pretrained names, graph), deduplicated
and ordered by position; case-insensitive "did you mean"."""

from __future__ import annotations

from typer.testing import CliRunner

from nnspec.checks import check_text, ordered
from nnspec.cli import app
from nnspec.spec import Problem

MULTI = """\
nnspec: 1
name: multi
inputs:
  tokens: {length: 20}
embeddings:
  words:
    vocab_size: 100
    dim: 50
    padding: {index: 0}
    pretrained: {vectors: glove-6b-5d}
  other:
    vocab_size: -3
    dim: 8
    pretrained: {vectors: glove-6b-50d}
model:
  layers:
    - {type: embedding, table: words}
    - {type: GRU, units: 4}
    - {type: dense, units: 3, activation: softmx}
training:
  loss: mse
  optimizer: {type: adamm}
  batch_size: 0
"""


def lines(text: str) -> list[str]:
    _, _, problems = check_text(text, "s.yaml")
    return [str(p) for p in problems]


def test_schema_errors_do_not_hide_table_and_pretrained_checks():
    assert lines(MULTI) == [
        "s.yaml:10:27: embeddings.words.pretrained.vectors: unknown packaged vectors "
        "'glove-6b-5d' (did you mean 'glove-6b-50d'?); known: glove-6b-50d, or a file ending "
        "in .txt, .vec, .bin (each optionally .gz) or .npy",
        "s.yaml:12:17: embeddings.other.vocab_size: input should be greater than 0",
        # the table is invalid, its pretrained part is checked anyway
        "s.yaml:14:27: embeddings.other.pretrained.vectors: 'glove-6b-50d' has 50-dimensional "
        "vectors but the table's dim is 8",
        "s.yaml:18:7: model.layers.1: unknown type 'GRU' (did you mean 'gru'?); expected one "
        "of: embedding, flatten, dense, dropout, global_average_pool, global_max_pool, "
        "attention_pool, conv1d, max_pool1d, average_pool1d, lstm, gru, layer_norm, batch_norm, "
        "add, multiply, concatenate, self_attention, transformer_encoder, memory_network",
        "s.yaml:19:43: model.layers.2.activation: got 'softmx', expected one of: linear, relu, "
        "gelu, tanh, sigmoid, softmax (did you mean 'softmax'?)",
        "s.yaml:22:14: training.optimizer: unknown type 'adamm' (did you mean 'adam'?); expected "
        "one of: sgd, adam, adamw",
        "s.yaml:23:15: training.batch_size: input should be greater than 0",
    ]


def test_graph_errors_reported_with_schema_errors_outside_the_graph():
    text = (
        MULTI.replace("type: GRU", "type: gru")
        .replace("softmx", "softmax")
        .replace("vocab_size: -3", "vocab_size: 30")
        .replace(
            "- {type: gru, units: 4}",
            "- {type: gru, units: 4}\n    - {type: add, inputs: [nope, tokens]}",
        )
    )
    assert lines(text) == [
        "s.yaml:10:27: embeddings.words.pretrained.vectors: unknown packaged vectors "
        "'glove-6b-5d' (did you mean 'glove-6b-50d'?); known: glove-6b-50d, or a file ending "
        "in .txt, .vec, .bin (each optionally .gz) or .npy",
        "s.yaml:14:27: embeddings.other.pretrained.vectors: 'glove-6b-50d' has 50-dimensional "
        "vectors but the table's dim is 8",
        "s.yaml:19:28: model.layers.2.inputs.0: unknown layer or input 'nope'",
        "s.yaml:23:14: training.optimizer: unknown type 'adamm' (did you mean 'adam'?); expected "
        "one of: sgd, adam, adamw",
        "s.yaml:24:15: training.batch_size: input should be greater than 0",
    ]


def test_graph_errors_reported_with_table_rule_errors():
    text = """\
nnspec: 1
name: t
inputs: {tokens: {length: 8}}
embeddings:
  words: {vocab_size: 10, dim: 4, padding: {index: 12}}
model:
  layers:
    - {type: embedding, table: wordz}
    - {type: dense, units: 2}
training: {loss: mse}
"""
    found = lines(text)
    assert found[0] == (
        "s.yaml:5:52: embeddings.words.padding.index: pad index 12 is outside the table "
        "(vocab_size 10)"
    )
    assert found[1:] == [
        "s.yaml:8:32: model.layers.0.table: unknown table 'wordz' (did you mean 'words'?); "
        "known: words"
    ]


def test_graph_not_resolved_past_schema_errors_inside_it():
    # An invalid layer: the graph's shapes cannot be trusted, so no graph error is invented.
    text = MULTI.replace("- {type: embedding, table: words}", "- {type: embedding, table: nope}")
    found = lines(text)
    assert not any("nope" in line for line in found)
    assert len(found) == len(lines(MULTI))


def test_valid_spec_gets_its_program_and_lint_warnings_only():
    text = MULTI.split("embeddings:")[0] + (
        "embeddings: {words: {vocab_size: 10, dim: 4, padding: {index: 0}}}\n"
        "model:\n  layers:\n    - {type: embedding, table: words}\n    - {type: flatten}\n"
        "    - {type: dense, units: 3, activation: relu}\n"
        "training: {loss: sparse_categorical_crossentropy}\n"
    )
    program, doc, problems = check_text(text, "s.yaml")
    assert program is not None and doc is not None
    assert program.trainable_count == 10 * 4 + 20 * 4 * 3 + 3
    assert [(p.level, p.code, p.line) for p in problems] == [("warning", "NN101", 10)]


def test_case_insensitive_hints_for_types_and_values():
    text = MULTI.replace("activation: softmx", "activation: ReLU")
    assert any(
        "got 'ReLU', expected one of" in x and "(did you mean 'relu'?)" in x for x in lines(text)
    )
    text = MULTI.replace("type: adamm", "type: AdamW")
    assert any("unknown type 'AdamW' (did you mean 'adamw'?)" in x for x in lines(text))


def test_ordered_deduplicates_and_sorts_by_position():
    a = Problem("f", 3, 1, ("b",), "x")
    b = Problem("f", 1, 5, ("a",), "y")
    assert ordered([a, b, a, Problem("f", 3, 1, ("b",), "x")]) == [b, a]


def test_cli_reports_all_stages_in_one_run(tmp_path):
    spec = tmp_path / "multi.yaml"
    spec.write_text(MULTI)
    result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 1
    assert "7 problem(s)" in result.output
    assert "glove-6b-5d" in result.output and "'GRU' (did you mean 'gru'?)" in result.output
    for command in ("compile", "summary"):
        result = CliRunner().invoke(app, [command, str(spec)])
        assert result.exit_code == 1
        assert result.output.count(str(spec)) == 7, result.output


def test_graph_errors_reported_past_errors_no_shape_depends_on():
    text = """\
nnspec: 1
name: m2
inputs:
  tokens: {length: 20}
embeddings:
  words: {vocab_size: 100, dim: 8, padding: {index: 0}, trainable: maybe, colour: red}
model:
  layers:
    - {type: embedding, table: words}
    - {type: dense, units: 4, activation: softmx, kernel_initializer: {type: nope}}
    - {type: dropout, rate: 3}
    - {type: add, inputs: [dense, missing_one]}
    - {type: dense, units: 3, activation: softmax}
training: {loss: sparse_categorical_crossentropy, optimizer: {type: adamm}}
"""
    found = lines(text)
    assert [line.split(": ")[0] + ": " + line.split(": ")[1] for line in found] == [
        "s.yaml:6:68: embeddings.words.trainable",
        "s.yaml:6:75: embeddings.words.colour",
        "s.yaml:10:43: model.layers.1.activation",
        "s.yaml:10:71: model.layers.1.kernel_initializer",
        "s.yaml:11:29: model.layers.2.rate",
        "s.yaml:12:35: model.layers.3.inputs.1",
        "s.yaml:14:62: training.optimizer",
    ]
    assert found[5] == "s.yaml:12:35: model.layers.3.inputs.1: unknown layer or input 'missing_one'"
    # An error in something shapes depend on (a layer's size) stops the graph checks.
    assert not any("missing_one" in line for line in lines(text.replace("units: 4,", "units: -4,")))

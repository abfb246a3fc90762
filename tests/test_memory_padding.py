"""A memory network's pad id: what the layer says, else what the tables looked up in the same
ids say, else the ``nnspec prepare`` layout (pad 0, words from 1) -- and lint ``NN205`` wherever
nothing says it, the tables disagree, or they contradict the layer."""

from __future__ import annotations

from typer.testing import CliRunner

from nnspec import backends
from nnspec.cli import app
from nnspec.compiler import compile_spec, ir
from nnspec.spec import load_string

LM = """nnspec: 1
name: lm
inputs:
  context: {shape: [4, 1]}
model:
  layers:
    - {type: memory_network, vocab_size: 10, dim: 4, hops: 1, tying: layerwise, query: constant%s}
training: {loss: sparse_categorical_crossentropy, optimizer: {type: adam}}
"""

# A memory network whose question ids are also looked up in a table (a second branch).
QA = """nnspec: 1
name: qa
inputs:
  memories: {shape: [4, 3]}
  question: {length: 3}
embeddings:
  words: {vocab_size: 10, dim: 4%s}
  other: {vocab_size: 10, dim: 4%s}
model:
  layers:
    - {type: memory_network, name: mem, inputs: [memories, question], vocab_size: 10, dim: 4,
       hops: 1, activation: linear%s}
    - {type: embedding, table: words, input: question, name: q}
    - {type: embedding, table: other, input: question, name: o}
    - {type: add, inputs: [q, o]}
    - {type: global_average_pool}
    - {type: dense, units: 10, name: qd}
    - {type: add, inputs: [mem, qd]}
    - {type: dense, units: 10, activation: softmax}
training: {loss: sparse_categorical_crossentropy, optimizer: {type: adam}}
"""


def compiled(text: str) -> ir.Program:
    return compile_spec(*load_string(text, "case.yaml"))


def memory(program: ir.Program) -> ir.MemoryNetwork:
    (op,) = [n.op for n in program.nodes if isinstance(n.op, ir.MemoryNetwork)]
    return op


def nn205(program: ir.Program) -> list[ir.Diagnostic]:
    return [d for d in program.diagnostics if d.code == "NN205"]


def test_unsaid_padding_takes_the_prepare_layout_and_is_linted_at_the_layer(tmp_path):
    program = compiled(LM % "")
    assert memory(program).pad_index == 0
    (finding,) = nn205(program)
    assert finding.level == "warning" and finding.path == ("model", "layers", 0)
    assert "padding: null" in finding.message and "id 0 is taken as the pad" in finding.message
    spec = tmp_path / "lm.yaml"
    spec.write_text(LM % "")
    result = CliRunner().invoke(app, ["validate", "--strict", str(spec)])
    assert result.exit_code == 1
    assert f"{spec}:7:7: model.layers.0: " in result.output and "NN205" in result.output


def test_said_padding_is_kept_and_not_linted():
    assert memory(compiled(LM % ", padding: null")).pad_index is None
    assert memory(compiled(LM % ", padding: {index: 3}")).pad_index == 3
    explicit = compiled(LM % ", padding: {index: 0}")
    assert memory(explicit).pad_index == 0
    assert not nn205(explicit) and not nn205(compiled(LM % ", padding: null"))


def test_the_default_generates_the_code_of_an_explicit_pad_0():
    """The default (the prepare layout) changed no generated code: the same as `index: 0`."""
    unsaid, said = compiled(LM % ""), compiled(LM % ", padding: {index: 0}")
    for name, backend in backends.available().items():
        assert backend.generate(unsaid) == backend.generate(said), name


def test_unsaid_padding_follows_the_tables_of_the_same_ids():
    padded = compiled(QA % (", padding: {index: 2}", ", padding: {index: 2}", ""))
    assert memory(padded).pad_index == 2 and not nn205(padded)
    unpadded = compiled(QA % ("", "", ""))
    assert memory(unpadded).pad_index is None and not nn205(unpadded)


def test_tables_that_disagree_leave_the_layout_and_a_warning():
    program = compiled(QA % (", padding: {index: 0}", "", ""))
    assert memory(program).pad_index == 0
    (finding,) = nn205(program)
    assert finding.path == ("model", "layers", 0)
    assert "table 'words' has pad id 0, table 'other' has no padding" in finding.message


def test_said_padding_contradicted_by_a_table_is_linted_at_the_padding():
    program = compiled(QA % (", padding: {index: 0}", ", padding: {index: 0}", ", padding: null"))
    assert memory(program).pad_index is None
    (finding,) = nn205(program)
    assert finding.path == ("model", "layers", 0, "padding")
    assert "has no padding but the same ids" in finding.message

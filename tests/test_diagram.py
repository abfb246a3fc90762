"""``nnspec diagram``: Mermaid and Graphviz DOT of the model graph (SVG through Graphviz)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from nnspec import diagram
from nnspec.checks import check_text
from nnspec.cli import app

SPEC = """\
nnspec: 1
name: two_towers
inputs:
  query: {length: 12}
  doc: {length: 40}
embeddings:
  words:
    vocab_size: 1000
    dim: 16
    padding: {index: 0}
    special_tokens: ["<oov>", "<q>"]
    trainable: {special_tokens: true}
    positional: {type: learned}
    scale: sqrt_dim
    pretrained: {vectors: vectors.txt}
model:
  layers:
    - {name: q_emb, type: embedding, table: words, input: query}
    - {name: q_pool, type: global_average_pool}
    - {name: d_emb, type: embedding, table: words, input: doc}
    - {name: d_pool, type: global_max_pool}
    - {name: both, type: concatenate, inputs: [q_pool, d_pool]}
    - {name: out, type: dense, units: 3, activation: softmax}
training: {loss: sparse_categorical_crossentropy}
"""


def program():
    compiled, _, problems = check_text(SPEC, "two_towers.yaml")
    assert compiled is not None, problems
    return compiled


def test_mermaid_shows_types_shapes_counts_and_policies():
    text = diagram.mermaid(program())
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    assert '    input_query[/"query<br/>input (None, 12) int32"/]' in lines
    assert (
        '    table_words[("table words: 1,000 x 16<br/>pad id 0 -#gt; 0.0<br/>rows 998..999 '
        "train (2 of 1,000)<br/>positional learned (max length 40)<br/>scale x4<br/>"
        'special #lt;oov#gt;=998 #lt;q#gt;=999<br/>pretrained vectors.txt")]'
    ) in lines
    # the table's 1,000 x 16 rows: 2 x 16 trainable, 998 x 16 frozen; the learned positions
    # (40 x 16) train and are counted at their first lookup
    assert (
        '    layer_q_emb["<b>q_emb</b><br/>embedding, pretrained vectors.txt<br/>(None, 12, 16)'
        '<br/>672 trainable, 15,968 frozen"]'
    ) in lines
    assert '    layer_out["<b>out</b><br/>dense<br/>(None, 3)<br/>99 params"]' in lines
    edges = [line.strip() for line in lines if "-->" in line or "-.->" in line]
    assert edges == [
        "input_query --> layer_q_emb",
        "table_words -.-> layer_q_emb",
        "layer_q_emb --> layer_q_pool",
        "input_doc --> layer_d_emb",
        "table_words -.-> layer_d_emb",
        "layer_d_emb --> layer_d_pool",
        "layer_q_pool --> layer_both",
        "layer_d_pool --> layer_both",
        "layer_both --> layer_out",
    ]
    assert "    class layer_out output" in lines


def test_dot_is_valid_graphviz():
    text = diagram.dot(program())
    assert text.startswith('digraph "two_towers" {\n')
    assert "    table_words -> layer_d_emb [style=dashed];" in text
    assert 'layer_out [label="out\\ndense\\n(None, 3)\\n99 params", peripheries=2];' in text
    if shutil.which("dot") is None:
        pytest.skip("Graphviz is not installed")
    result = subprocess.run(["dot", "-Tsvg"], input=text, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count('<g id="node') == 2 + 1 + 6


def test_labels_are_escaped():
    assert diagram._mermaid_text('a "b" <c> & d') == "a #quot;b#quot; #lt;c#gt; #amp; d"
    assert diagram._dot_text('a "b" \\n') == 'a \\"b\\" \\\\n'


def test_cli_formats_and_files(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(app, ["diagram", str(spec)])
    assert result.exit_code == 0
    assert result.output == diagram.mermaid(program())
    result = CliRunner().invoke(
        app, ["diagram", str(spec), "--format", "dot", "--out", str(tmp_path / "g.dot")]
    )
    assert result.exit_code == 0 and result.output == f"wrote {tmp_path / 'g.dot'}\n"
    assert (tmp_path / "g.dot").read_text() == diagram.dot(program())


def test_svg_needs_graphviz(tmp_path, monkeypatch):
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    result = CliRunner().invoke(app, ["diagram", str(spec), "--format", "svg"])
    assert result.exit_code == 2
    assert result.output.startswith("error: SVG needs Graphviz's `dot` on PATH")


def test_svg_with_graphviz(tmp_path):
    if shutil.which("dot") is None:
        pytest.skip("Graphviz is not installed")
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(
        app, ["diagram", str(spec), "--format", "svg", "--out", str(tmp_path / "g.svg")]
    )
    assert result.exit_code == 0
    svg = (tmp_path / "g.svg").read_text()
    assert "<svg" in svg and "table words: 1,000 x 16" in svg


def test_bad_spec_is_located_errors():
    result = CliRunner().invoke(app, ["diagram", "tests/bad_specs/bad_activation.yaml"])
    assert result.exit_code == 1
    assert result.output.startswith("tests/bad_specs/bad_activation.yaml:")


def test_readme_diagram_is_what_the_command_prints():
    from nnspec.cli import app as cli_app
    from tests.conftest import EXAMPLES, ROOT

    readme = (ROOT / "README.md").read_text()
    block = readme.split("```mermaid\n", 1)[1].split("```", 1)[0]
    spec = EXAMPLES / "glove_special_tokens" / "spec.yaml"
    result = CliRunner().invoke(cli_app, ["diagram", str(spec)])
    assert result.exit_code == 0
    assert block == result.output

"""The spec language: good specs load, every kind of bad spec gives one clear located error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnspec.compiler import compile_file, compile_spec
from nnspec.spec import SpecError, json_schema, json_schema_text, load_string
from tests.conftest import EXAMPLE_NAMES, EXAMPLES, ROOT

BAD = sorted((Path(__file__).parent / "bad_specs").glob("*.yaml"))

MINIMAL = """\
nnspec: 1
name: tiny
inputs:
  tokens: {length: 6}
embeddings:
  words: {vocab_size: 20, dim: 4, padding: {index: 0}}
model:
  layers:
    - {type: embedding, table: words}
    - {type: flatten}
    - {type: dense, units: 3, activation: softmax}
training:
  loss: sparse_categorical_crossentropy
"""


def compile_text(text: str):
    spec, doc = load_string(text, "spec.yaml")
    return compile_spec(spec, doc)


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_examples_are_valid(name):
    program, _ = compile_file(EXAMPLES / name / "spec.yaml")
    assert program.diagnostics == ()


def test_bad_specs_are_many():
    assert len(BAD) >= 15


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_spec_gives_one_located_error(path):
    expected = path.read_text().splitlines()[0].removeprefix("# expect: ")
    with pytest.raises(SpecError) as info:
        compile_file(path)
    problems = info.value.problems
    assert len(problems) == 1, [str(p) for p in problems]
    assert str(problems[0]) == f"{path}:{expected}"


def test_every_error_is_reported_not_only_the_first():
    text = MINIMAL.replace("dim: 4", "dim: -4").replace("units: 3", "units: 3, colour: red")
    with pytest.raises(SpecError) as info:
        compile_text(text)
    messages = [f"{p.line}:{p.column}: {'.'.join(map(str, p.path))}" for p in info.value.problems]
    assert messages == ["6:32: embeddings.words.dim", "11:31: model.layers.2.colour"]


def test_json_specs_load_with_positions():
    data = {
        "nnspec": 1,
        "name": "tiny",
        "inputs": {"tokens": {"length": 6}},
        "embeddings": {"words": {"vocab_size": 20, "dim": 4}},
        "model": {"layers": [{"type": "embedding", "table": "words"}, {"type": "flaten"}]},
        "training": {"loss": "mse"},
    }
    text = json.dumps(data, indent=2)
    with pytest.raises(SpecError) as info:
        compile_text(text)
    (problem,) = info.value.problems
    line = text.splitlines().index('        "type": "flaten"') + 1
    assert (problem.line, problem.path) == (line - 1, ("model", "layers", 1))
    assert "did you mean 'flatten'" in problem.message


def test_row_selection_resolves_ids_ranges_and_special_tokens():
    text = MINIMAL.replace(
        "padding: {index: 0}}",
        "padding: {index: 0}, special_tokens: [a, b, c],\n"
        "          trainable: {ids: [3, 4], ranges: [[0, 2], {start: 9, stop: 12}],"
        " special_tokens: [b]}}",
    )
    program = compile_text(text)
    weight = program.weight("words.embeddings")
    # Row 0 (padding) is cut out of the range [0, 2); special token b is id 18.
    assert weight.trainable == "rows"
    assert weight.trainable_rows == ((1, 2), (3, 5), (9, 12), (18, 19))
    assert weight.trainable_count == 7 * 4
    assert weight.frozen_count == 13 * 4
    assert weight.zero_rows == (0,)


def test_trainable_false_and_counts():
    program = compile_text(MINIMAL.replace("padding: {index: 0}}", "trainable: false}"))
    assert program.frozen_count == 80
    assert program.trainable_count == 6 * 4 * 3 + 3


def test_positional_defaults_to_input_length_and_scale():
    program = compile_text(
        MINIMAL.replace(
            "padding: {index: 0}}",
            "padding: {index: 0}, positional: {type: learned}, scale: sqrt_dim}",
        )
    )
    table = program.table("words")
    assert table.positional.max_length == 6
    assert table.scale == 2.0
    assert program.weight("words.positional").shape == (6, 4)


def test_lint_warns_about_relu_under_cross_entropy():
    program = compile_text(MINIMAL.replace("activation: softmax", "activation: relu"))
    (finding,) = program.diagnostics
    assert finding.code == "NN101" and finding.level == "warning"
    assert finding.path == ("model", "layers", 2, "activation")


def test_lint_warns_about_unpadded_flatten():
    program = compile_text(MINIMAL.replace(", padding: {index: 0}", ""))
    assert [d.code for d in program.diagnostics] == ["NN201"]


def test_spec_hash_ignores_formatting_and_comments():
    a = compile_text(MINIMAL)
    b = compile_text("# a comment\n" + MINIMAL.replace("{length: 6}", "\n    length: 6"))
    c = compile_text(MINIMAL.replace("units: 3", "units: 4"))
    assert a.spec_hash == b.spec_hash != c.spec_hash


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\ufeff",
        "\x00\x01",
        "[",
        "{a: 1, a: 2}",
        "nnspec: 1\n\tname: x",
        "- 1\n- 2",
        "nnspec: [1]",
    ],
)
def test_garbage_gives_a_located_error(text):
    with pytest.raises(SpecError) as info:
        load_string(text, "g.yaml")
    for problem in info.value.problems:
        assert str(problem).startswith("g.yaml:")


def test_checked_in_schema_is_current():
    path = ROOT / "schema" / "nnspec.schema.json"
    assert path.read_text() == json_schema_text(), "stale schema: run `make regen`"


def test_schema_names_have_the_identifier_pattern():
    """Editors reject a name such as '2fast' (the rule of check_identifier, keywords aside),
    for the spec's name, layer names and the keys naming inputs and tables alike."""
    import re

    schema = json_schema()
    patterns: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            for sub in node.get("allOf", []):
                if "pattern" in sub:
                    patterns.append(sub["pattern"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    assert set(patterns) == {r"^(?!__)[A-Za-z_][A-Za-z0-9_]{0,63}$"}
    (pattern,) = set(patterns)
    for name, ok in [
        ("2fast", False),
        ("fast2", True),
        ("_x", True),
        ("__x", False),
        ("a" * 64, True),
        ("a" * 65, False),
        ("bad-name", False),
        ("", False),
    ]:
        assert bool(re.search(pattern, name)) is ok, name
    assert schema["properties"]["name"]["allOf"][0]["pattern"] == pattern
    inputs = schema["properties"]["inputs"]
    assert inputs["propertyNames"]["allOf"][0]["pattern"] == pattern
    assert inputs["additionalProperties"] == {"$ref": "#/$defs/InputSpec"}
    assert schema["properties"]["embeddings"]["propertyNames"]["allOf"][0]["pattern"] == pattern


@pytest.mark.parametrize(
    ("layer", "limit"),
    [
        ("{type: lstm, units: 4, num_layers: N}", 16),
        ("{type: transformer_encoder, heads: 2, ff_dim: 8, num_layers: N}", 64),
    ],
)
def test_stack_depth_limits_hold(layer, limit):
    """The documented upper bounds of repeated layers are enforced, not only documented."""
    text = (
        "nnspec: 1\nname: t\ninputs: {tokens: {length: 4}}\n"
        "embeddings: {w: {vocab_size: 10, dim: 4}}\n"
        "model:\n  layers:\n    - {type: embedding, table: w}\n    - LAYER\n"
        "    - {type: global_average_pool}\n    - {type: dense, units: 2, activation: softmax}\n"
        "training: {loss: sparse_categorical_crossentropy}\n"
    )
    load_string(text.replace("LAYER", layer.replace("N", str(limit))), "t.yaml")
    with pytest.raises(SpecError, match=f"less than or equal to {limit}"):
        load_string(text.replace("LAYER", layer.replace("N", str(limit + 1))), "t.yaml")


def test_memory_hops_limit_holds():
    text = (
        "nnspec: 1\nname: t\ninputs: {m: {shape: [3, 2]}}\n"
        "model:\n  layers:\n    - {type: memory_network, vocab_size: 5, dim: 4, hops: H,"
        " query: constant}\n"
        "training: {loss: sparse_categorical_crossentropy}\n"
    )
    load_string(text.replace("H", "16"), "t.yaml")
    with pytest.raises(SpecError, match="less than or equal to 16"):
        load_string(text.replace("H", "17"), "t.yaml")

"""Fuzzing: random and mutated specs never crash the tool — they compile or give located
errors."""

from __future__ import annotations

import copy
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnspec.compiler import compile_spec
from nnspec.spec import SpecError, load_string
from nnspec.spec.errors import Problem
from tests.conftest import EXAMPLES

BASE = json.loads(
    json.dumps(
        {
            "nnspec": 1,
            "name": "fuzz",
            "inputs": {"tokens": {"length": 8}},
            "embeddings": {
                "words": {
                    "vocab_size": 30,
                    "dim": 4,
                    "padding": {"index": 0},
                    "special_tokens": ["oov"],
                    "trainable": {"ids": [3], "ranges": [[5, 9]], "special_tokens": True},
                    "positional": {"type": "learned"},
                }
            },
            "model": {
                "layers": [
                    {"type": "embedding", "table": "words"},
                    {"type": "global_average_pool"},
                    {"type": "dense", "units": 3, "activation": "softmax"},
                ]
            },
            "training": {"loss": "sparse_categorical_crossentropy", "optimizer": {"type": "adam"}},
        }
    )
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["dense", "flatten", "sinusoidal", "adam", "words", "tokens", "__init__"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def paths(data, prefix=()):
    yield prefix
    if isinstance(data, dict):
        for k, v in data.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from paths(v, (*prefix, i))


ALL_PATHS = [p for p in paths(BASE) if p]


def outcome(text: str) -> None:
    """Compile ``text``; the only acceptable failure is a SpecError with located problems."""
    try:
        spec, doc = load_string(text, "fuzz.yaml")
        compile_spec(spec, doc)
    except SpecError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert isinstance(problem, Problem)
            assert problem.line >= 1 and problem.column >= 1
            assert str(problem).startswith("fuzz.yaml:")


def set_at(data, path, value):
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def delete_at(data, path):
    target = data
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]


mutation = st.tuples(
    st.sampled_from(["replace", "delete", "add_key"]), st.sampled_from(ALL_PATHS), values
)

SETTINGS = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.lists(mutation, min_size=1, max_size=3), st.booleans())
def test_mutated_specs_never_crash(mutations, as_json):
    data = copy.deepcopy(BASE)
    for kind, path, value in mutations:
        try:
            if kind == "replace":
                set_at(data, path, value)
            elif kind == "delete":
                delete_at(data, path)
            else:
                parent = data
                for key in path[:-1]:
                    parent = parent[key]
                if isinstance(parent, dict):
                    parent[str(value)[:10]] = value
        except (KeyError, IndexError, TypeError):
            continue
    text = json.dumps(data, default=str) if as_json else _yaml(data)
    outcome(text)


def _yaml(data) -> str:
    import yaml

    try:
        return yaml.safe_dump(data, allow_unicode=True)
    except yaml.YAMLError:
        return json.dumps(data, default=str)


@SETTINGS
@given(values)
def test_random_structures_never_crash(data):
    outcome(json.dumps(data, default=str))


@settings(max_examples=800, deadline=None)
@given(st.text(max_size=200))
def test_random_text_never_crashes(text):
    outcome(text)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash(tmp_path_factory, data):
    from nnspec.compiler import compile_file

    path = tmp_path_factory.mktemp("fuzz") / "spec.yaml"
    path.write_bytes(data)
    try:
        compile_file(path)
    except SpecError as exc:
        assert all(p.line >= 1 for p in exc.problems)


def test_example_specs_with_every_line_truncated_never_crash():
    text = (EXAMPLES / "glove_special_tokens" / "spec.yaml").read_text()
    lines = text.splitlines()
    for n in range(len(lines)):
        outcome("\n".join(lines[:n]))

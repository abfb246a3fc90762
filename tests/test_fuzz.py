"""Fuzzing: random, mutated and assembled specs never crash the tool. Each either gives located
errors (inside the file, shown without raw control characters) or compiles, and then every
backend generates code that parses.

Several thousand cases run by default; ``NNSPEC_FUZZ_SCALE=10`` runs ten times as many.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import json
import os
import sys
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnspec import backends
from nnspec.compiler import compile_spec
from nnspec.spec import SpecError, load_string
from nnspec.spec.errors import Problem
from nnspec.spec.loader import load_text
from tests.conftest import EXAMPLE_NAMES, EXAMPLES

SCALE = float(os.environ.get("NNSPEC_FUZZ_SCALE", "1"))


def examples(n: int) -> int:
    """``n`` scaled by ``NNSPEC_FUZZ_SCALE``."""
    return max(1, int(n * SCALE))


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


def unformatted():
    """Generation without the ruff subprocess (the fuzz checks that the code parses, and a
    formatter run per case would dominate the test's time)."""
    backends.available()  # imports every module that formats
    stack = contextlib.ExitStack()
    for name, module in list(sys.modules.items()):
        if name.startswith("nnspec.backends") and hasattr(module, "format_source"):
            stack.enter_context(mock.patch.object(module, "format_source", lambda source: source))
    return stack


def outcome(text: str) -> None:
    """Compile ``text``; the only acceptable failure is a SpecError with located problems. A spec
    that compiles generates parsing code in every backend."""
    lines = text.count("\n") + 2
    try:
        spec, doc = load_string(text, "fuzz.yaml")
        program = compile_spec(spec, doc)
    except SpecError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert isinstance(problem, Problem)
            assert 1 <= problem.line <= lines and problem.column >= 1, str(problem)
            shown = str(problem)
            assert shown.startswith("fuzz.yaml:")
            assert shown.isprintable(), shown
        return
    with unformatted():
        for name, backend in backends.available().items():
            for rel, source in backend.generate(program).items():
                ast.parse(source, filename=f"{name}/{rel}")


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

SETTINGS = settings(
    max_examples=examples(1500), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


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


@settings(max_examples=examples(800), deadline=None)
@given(st.text(max_size=200))
def test_random_text_never_crashes(text):
    outcome(text)


@settings(max_examples=examples(400), deadline=None)
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


EXAMPLE_DATA = {
    name: load_text((EXAMPLES / name / "spec.yaml").read_text()).data for name in EXAMPLE_NAMES
}
SMALL_VALUES = st.one_of(
    scalars,
    st.sampled_from([0, 1, 2, 3, 7, -1, 10**9, 0.5, 1e-12, "sum", "concat", "causal", "same"]),
)


@settings(max_examples=examples(1200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(EXAMPLE_NAMES), st.data())
def test_mutated_examples_never_crash(name, data):
    """One to three replacements or deletions anywhere in a real example."""
    spec = copy.deepcopy(EXAMPLE_DATA[name])
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from([p for p in paths(spec) if p]))
        try:
            if data.draw(st.booleans()):
                set_at(spec, path, data.draw(SMALL_VALUES))
            else:
                delete_at(spec, path)
        except (KeyError, IndexError, TypeError):
            continue
    outcome(_yaml(spec))


DIMS = st.sampled_from([2, 4, 6, 8])


@st.composite
def table(draw, length: int) -> dict:
    """An embedding table with a random mix of policies."""
    vocab = draw(st.integers(4, 40))
    out: dict = {"vocab_size": vocab, "dim": draw(DIMS)}
    if draw(st.booleans()):
        out["padding"] = {"index": 0}
    if draw(st.booleans()):
        out["special_tokens"] = ["<oov>", "<bos>"][: draw(st.integers(1, 2))]
    out["trainable"] = draw(
        st.sampled_from(
            [True, False, {"ids": [1, 2]}, {"ranges": [[1, 3]]}]
            + ([{"special_tokens": True}] if "special_tokens" in out else [])
        )
    )
    if draw(st.booleans()):
        out["scale"] = draw(st.sampled_from(["sqrt_dim", "none", 2.0]))
    kind = draw(st.sampled_from([None, "sinusoidal", "learned", "rotary"]))
    if kind:
        out["positional"] = {"type": kind}
        if kind == "learned" and draw(st.booleans()):
            out["positional"]["max_length"] = length + draw(st.integers(-1, 3))
    return out


SEQUENCE_LAYERS = st.one_of(
    st.just({"type": "layer_norm"}),
    st.just({"type": "batch_norm"}),
    st.builds(lambda r: {"type": "dropout", "rate": r}, st.sampled_from([0.0, 0.1, 0.5])),
    st.builds(
        lambda f, k, p: {"type": "conv1d", "filters": f, "kernel_size": k, "padding": p},
        st.integers(1, 6),
        st.integers(1, 3),
        st.sampled_from(["valid", "same", "causal"]),
    ),
    st.builds(
        lambda t, u, b: {"type": t, "units": u, "return_sequences": True, "bidirectional": b},
        st.sampled_from(["lstm", "gru"]),
        st.integers(1, 5),
        st.booleans(),
    ),
    st.builds(
        lambda h, rot: {"type": "self_attention", "heads": h, "rotary": rot},
        st.sampled_from([1, 2]),
        st.booleans(),
    ),
    st.builds(
        lambda h, f: {"type": "transformer_encoder", "heads": h, "ff_dim": f},
        st.sampled_from([1, 2]),
        st.integers(1, 8),
    ),
    st.just({"type": "max_pool1d", "pool_size": 2}),
)
REDUCERS = st.one_of(
    st.sampled_from([{"type": t} for t in ("global_average_pool", "global_max_pool", "flatten")]),
    st.builds(lambda s: {"type": "attention_pool", "scale": s}, st.booleans()),
    st.builds(
        lambda t, u: {"type": t, "units": u}, st.sampled_from(["lstm", "gru"]), st.integers(1, 4)
    ),
)
FEATURE_LAYERS = st.one_of(
    st.builds(lambda u: {"type": "dense", "units": u, "activation": "relu"}, st.integers(1, 6)),
    st.just({"type": "dropout", "rate": 0.2}),
    st.just({"type": "layer_norm"}),
)


@st.composite
def assembled_spec(draw) -> dict:
    """A spec built from scratch: an input, a table, sequence layers, a reduction, feature
    layers and a softmax; sometimes with one layer moved out of place (to be refused)."""
    length = draw(st.integers(1, 10))
    layers: list = [{"type": "embedding", "table": "words"}]
    layers += draw(st.lists(SEQUENCE_LAYERS, max_size=3))
    layers.append(draw(REDUCERS))
    layers += draw(st.lists(FEATURE_LAYERS, max_size=2))
    layers.append({"type": "dense", "units": draw(st.integers(2, 4)), "activation": "softmax"})
    if draw(st.integers(0, 9)) == 0:
        moved = layers.pop(draw(st.integers(1, len(layers) - 1)))
        layers.insert(draw(st.integers(1, len(layers))), moved)
    return {
        "nnspec": 1,
        "name": "assembled",
        "inputs": {"tokens": {"length": length}},
        "embeddings": {"words": draw(table(length))},
        "model": {"layers": layers},
        "training": {
            "loss": "sparse_categorical_crossentropy",
            "optimizer": draw(st.sampled_from([{"type": "adam"}, {"type": "sgd", "lr": 0.1}])),
        },
    }


@settings(max_examples=examples(250), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(assembled_spec(), st.booleans())
def test_assembled_specs_compile_or_give_located_errors(spec, as_json):
    outcome(json.dumps(spec) if as_json else _yaml(spec))


def test_assembled_specs_are_often_valid():
    """The assembler is useful only if many of its specs compile: count a fixed sample."""
    valid = 0
    sample = st.lists(assembled_spec(), min_size=60, max_size=60)

    @settings(max_examples=1, deadline=None, database=None, derandomize=True)
    @given(sample)
    def count(specs):
        nonlocal valid
        for spec in specs:
            try:
                compile_spec(*load_string(json.dumps(spec), "a.json"))
                valid += 1
            except SpecError:
                pass

    count()
    assert valid >= 30, valid

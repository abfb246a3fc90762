"""Nothing injected: names from a spec become identifiers only after validation, other strings
never reach generated code; every valid spec compiles to code that parses, in every backend."""

from __future__ import annotations

import ast
import json
import keyword

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnspec import backends
from nnspec.compiler import compile_spec
from nnspec.spec import SpecError, load_string
from nnspec.spec.reserved import RESERVED_NAMES

ALLOWED_IMPORTS = {
    "__future__",
    "argparse",
    "collections",
    "contextlib",
    "csv",
    "dataclasses",
    "datetime",
    "functools",
    "importlib",
    "io",
    "jax",
    "json",
    "keras",
    "logging",
    "math",
    "matplotlib",
    "numpy",
    "onnxruntime",
    "os",
    "pathlib",
    "random",
    "re",
    "safetensors",
    "shutil",
    "sys",
    "tempfile",
    "tensorflow",
    "time",
    "torch",
    "tqdm",
    "typing",
    "warnings",
    "model",
}
FORBIDDEN_FUNCTIONS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_METHODS = {"system", "popen", "spawn", "rmtree"}
HOSTILE_TEXT = '"""\nimport os; os.system("rm -rf /")  # \'\'\' {{ 7*7 }} {% raw %}\x00'

TEMPLATE = """\
nnspec: 1
name: {name}
description: {description}
inputs:
  {inp}: {{length: 6}}
embeddings:
  {table}: {{vocab_size: 20, dim: 4, padding: {{index: 0}}, special_tokens: [{token}],
            trainable: {{special_tokens: true}}}}
model:
  layers:
    - {{name: {l1}, type: embedding, table: {table}}}
    - {{name: {l2}, type: global_average_pool}}
    - {{name: {l3}, type: dense, units: 3, activation: softmax}}
training:
  loss: sparse_categorical_crossentropy
"""


def render(**names) -> str:
    quoted = {k: json.dumps(v) if k in ("description", "token") else v for k, v in names.items()}
    return TEMPLATE.format(**quoted)


def generated_trees(text: str) -> dict[str, ast.Module]:
    spec, doc = load_string(text, "hostile.yaml")
    program = compile_spec(spec, doc)
    trees = {}
    for name, backend in backends.available().items():
        for rel, source in backend.generate(program).items():
            if rel == "spec.json":  # the spec itself, as JSON: data, not code
                continue
            assert "rm -rf" not in source and "{{" not in source
            trees[f"{name}/{rel}"] = ast.parse(source)
    return trees


def assert_clean(tree: ast.Module, where: str) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots = {(node.module or "").split(".")[0]}
        else:
            roots = set()
        assert roots <= ALLOWED_IMPORTS, (where, roots)
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name):
                assert func.id not in FORBIDDEN_FUNCTIONS, (where, func.id)
            elif isinstance(func, ast.Attribute):
                assert func.attr not in FORBIDDEN_METHODS, (where, func.attr)


def test_hostile_strings_never_reach_code():
    text = render(
        name="victim",
        description=HOSTILE_TEXT,
        inp="tokens",
        table="words",
        token=HOSTILE_TEXT,
        l1="lookup",
        l2="pool",
        l3="out",
    )
    for where, tree in generated_trees(text).items():
        assert_clean(tree, where)


@pytest.mark.parametrize(
    "bad",
    [
        "os.system",
        "x;y",
        "__class__",
        "import",
        "a b",
        "print(1)",
        "ñ",
        "self",
        "1x",
        "x" * 65,
    ],
)
def test_hostile_names_are_rejected(bad):
    text = render(
        name="victim",
        description="d",
        inp="tokens",
        table="words",
        token="t",
        l1="lookup",
        l2="pool",
        l3=json.dumps(bad),
    )
    with pytest.raises(SpecError) as info:
        spec, doc = load_string(text, "hostile.yaml")
        compile_spec(spec, doc)
    assert info.value.problems[0].path[:3] == ("model", "layers", 2)


identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,11}", fullmatch=True).filter(
    lambda s: (
        not keyword.iskeyword(s)
        and not keyword.issoftkeyword(s)
        and s not in RESERVED_NAMES
        and not s.startswith("__")
    )
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(identifiers, min_size=6, max_size=6, unique=True),
    st.text(max_size=40),
    st.text(min_size=1, max_size=20),
)
def test_any_valid_names_compile_to_parsing_clean_code(names, description, token):
    name, inp, table, l1, l2, l3 = names
    text = render(
        name=name, description=description, inp=inp, table=table, token=token, l1=l1, l2=l2, l3=l3
    )
    try:
        trees = generated_trees(text)
    except SpecError as exc:
        # Only the free-text fields may be refused (e.g. control characters YAML rejects).
        assert all(p.path[:1] in (("description",), ("embeddings",), ()) for p in exc.problems), exc
        return
    for where, tree in trees.items():
        assert_clean(tree, where)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("_0", "Spec0Model"),
        ("_", "SpecModel"),
        ("_3_layers", "Spec3LayersModel"),
        ("m_2", "M2Model"),
    ],
)
def test_class_names_are_identifiers_whatever_the_spec_is_called(name, expected):
    from nnspec.compiler import class_name

    assert class_name(name) == expected
    assert expected.isidentifier()


def test_underscore_names_compile():
    text = render(
        name="_m", description="d", inp="_ids", table="_t", token="t", l1="_l", l2="_p", l3="_o"
    )
    for where, tree in generated_trees(text).items():
        assert_clean(tree, where)

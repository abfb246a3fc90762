"""Hostile spec files, as an untrusted pull request could bring them to `nnspec validate`: each is
answered with located errors, in bounded time and memory, and nothing from the file reaches the
terminal or a CI log unescaped."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from nnspec.cli import github_annotation
from nnspec.spec import SpecError, load_string
from nnspec.spec.errors import Problem
from nnspec.spec.loader import MAX_DEPTH, MAX_FILE_BYTES, MAX_VALUES

VALID = textwrap.dedent(
    """\
    nnspec: 1
    name: tiny
    inputs:
      tokens: {length: 6}
    embeddings:
      words: {vocab_size: 20, dim: 4, padding: {index: 0}}
    model:
      layers:
        - {type: embedding, table: words}
        - {type: layer_norm}
        - {type: global_average_pool}
        - {type: dense, units: 3, activation: softmax}
    training:
      loss: sparse_categorical_crossentropy
      optimizer: {type: adam}
      clip_norm: 1.0
      early_stopping: {monitor: val_loss, patience: 2}
    """
)


def problems(text: str) -> list[Problem]:
    """The problems of ``text`` (which must not load)."""
    with pytest.raises(SpecError) as info:
        load_string(text, "hostile.yaml")
    return info.value.problems


def where(problem: Problem) -> str:
    return f"{problem.line}:{problem.column}: {'.'.join(map(str, problem.path))}"


def alias_bomb(levels: int) -> str:
    """``levels`` nested lists of nine aliases each: 9**levels values once expanded."""
    lines = ["nnspec: 1", "lol0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels + 1):
        lines.append(f"lol{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_valid_spec_loads():
    spec, _ = load_string(VALID, "ok.yaml")
    assert spec.training.clip_norm == 1.0


def test_alias_bomb_stops_at_the_value_budget_before_expanding():
    (problem,) = problems(alias_bomb(9))
    # Level k holds 9**(k+1) values; the running total first passes the budget inside lol6.
    assert MAX_VALUES < 9**7
    assert where(problem).startswith("8:") and problem.path[0] == "lol6"
    assert f"more than {MAX_VALUES:,} values with its aliases expanded" in problem.message


def test_aliases_within_budget_still_work():
    text = VALID.replace("padding: {index: 0}", "padding: &pad {index: 0}").replace(
        "optimizer: {type: adam}", "optimizer: {type: adam}\n  seed: 3"
    )
    spec, _ = load_string(text, "ok.yaml")
    assert spec.embeddings["words"].padding.index == 0


def test_self_referencing_anchor_is_an_error_not_a_cycle():
    (problem,) = problems("nnspec: 1\nname: &a [1, *a]\n")
    assert (
        where(problem) == "2:14: name.1"
        and "unknown alias *a: an alias must come after" in problem.message
    )


def test_deep_nesting_is_cut_at_the_depth_limit():
    (problem,) = problems("nnspec: 1\nx: " + "[" * 10_000 + "]" * 10_000 + "\n")
    assert problem.line == 2 and problem.column > 1
    assert "nest" in problem.message


def test_nesting_just_past_the_limit_is_located():
    (problem,) = problems("nnspec: 1\nx: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    assert where(problem).startswith(f"2:{MAX_DEPTH + 3}: x")
    assert f"nested more than {MAX_DEPTH} levels deep" in problem.message


@pytest.mark.parametrize(
    ("text", "expected", "message"),
    [
        ("nnspec: 1\n? {a: [1]}\n: c\n", "2:3: ", "keys must be strings, got a mapping or list"),
        ("nnspec: 1\nembeddings: {3: x}\n", "2:14: embeddings", "keys must be strings, got '3'"),
        ("nnspec: 1\nname: !!binary aGVsbG8=\n", "2:7: name", "'!!binary' are not allowed"),
        ("nnspec: 1\nname: !!python/object:os.system x\n", "2:7: name", "'!!python/object"),
        ("nnspec: 1\nx: &a {b: 1}\ny: {<<: *a}\n", "3:5: y", "merge keys (<<) are not allowed"),
        ("nnspec: 1\nname: " + "9" * 5000 + "\n", "2:7: name", "5000 digits is too large"),
        ("nnspec: 1\nname: a\x1bb\n", "2:8: ", "'\\x1b' (U+001B)"),
        ("nnspec: 1\nname: a\x7fb\n", "2:8: ", "'\\x7f' (U+007F)"),
        ("nnspec: 1\nname: ab\x9b\n", "2:9: ", "'\\x9b' (U+009B)"),
        ("nnspec: 1\nname: ok\n\ud800: 1\n", "3:1: ", "'\\ud800' (U+D800)"),
        ('nnspec: 1\n"\\ud800": 1\n', "2:", "invalid Unicode character escape"),
        ("nnspec: 1\n---\nnnspec: 1\n", "2:1: ", "more than one YAML document"),
    ],
)
def test_malformed_files_give_one_located_error(text, expected, message):
    (problem,) = problems(text)
    assert where(problem).startswith(expected), str(problem)
    assert message in problem.message, str(problem)


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ("{type: layer_norm}", "{type: layer_norm, epsilon: .inf}", "model.layers.1.epsilon"),
        ("{type: layer_norm}", "{type: layer_norm, epsilon: .nan}", "model.layers.1.epsilon"),
        ("{type: adam}", "{type: adam, eps: .inf}", "training.optimizer.eps"),
        ("{type: adam}", "{type: adamw, weight_decay: .inf}", "training.optimizer.weight_decay"),
        ("clip_norm: 1.0", "clip_norm: .inf", "training.clip_norm"),
        ("patience: 2}", "patience: 2, min_delta: .nan}", "training.early_stopping.min_delta"),
        ("clip_norm: 1.0", "clip_norm: -.inf", "training.clip_norm"),
    ],
)
def test_infinite_and_nan_numbers_are_refused(old, new, path):
    (problem,) = problems(VALID.replace(old, new))
    assert ".".join(map(str, problem.path)) == path
    assert problem.line > 1 and "finite number" in problem.message


def test_infinite_query_value_of_a_memory_network_is_refused():
    text = VALID.replace(
        "    - {type: embedding, table: words}\n    - {type: layer_norm}\n",
        "    - {type: memory_network, vocab_size: 20, dim: 4, query_value: .inf}\n",
    )
    found = problems(text)
    assert any(
        p.path[-1] == "query_value" and "finite number" in p.message and p.line == 9 for p in found
    ), [str(p) for p in found]


@pytest.mark.parametrize(
    ("units", "message"),
    [
        ("true", "valid integer, got True"),
        ('"3"', "valid integer, got '3'"),
        ("3.0", "valid integer, got 3.0"),
        ("0x3", "valid integer, got '0x3'"),
        ("1e3", "valid integer, got 1000.0"),
    ],
)
def test_integers_are_taken_as_written(units, message):
    (problem,) = problems(VALID.replace("units: 3", f"units: {units}"))
    assert where(problem) == f"12:{VALID.splitlines()[11].index('3') + 1}: model.layers.3.units"
    assert message in problem.message


def test_strings_and_bools_are_not_numbers():
    (problem,) = problems(VALID.replace("clip_norm: 1.0", 'clip_norm: "1.0"'))
    assert where(problem) == "16:14: training.clip_norm" and "valid number" in problem.message
    (problem,) = problems(VALID.replace("{type: adam}", "{type: adam, lr: true}"))
    assert where(problem) == "15:31: training.optimizer.lr"


def test_a_date_where_a_number_belongs_is_located_at_the_field():
    (problem,) = problems(VALID.replace("vocab_size: 20", "vocab_size: 2024-01-01"))
    assert where(problem) == "6:23: embeddings.words.vocab_size"


FORGED_KEY = '"\\e[2J\\e[31mfake\\nspecs/ok.yaml:1:1: all good"'


def test_terminal_escapes_and_line_breaks_are_shown_escaped_in_every_format(tmp_path):
    path = tmp_path / "forge.yaml"
    path.write_text(VALID + f"{FORGED_KEY}: 1\n")
    for fmt in ("text", "github", "json"):
        result = subprocess.run(
            [sys.executable, "-m", "nnspec", "validate", str(path), "--format", fmt],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1, result.stderr
        output = result.stdout + result.stderr
        assert "\x1b" not in output, fmt
        assert not any(line.startswith("specs/ok.yaml") for line in output.splitlines()), fmt
        if fmt == "json":
            (problem,) = json.loads(result.stdout)["problems"]
            assert "\x1b[2J" in problem["path"]  # the data itself, JSON-escaped on the wire
        else:
            assert "\\x1b[2J\\x1b[31mfake\\nspecs/ok.yaml" in output, fmt


def test_github_annotations_escape_properties_and_keep_the_lint_code():
    problem = Problem("gh/a,b:c%.yaml", 3, 4, ("x",), "50% bad\r\nnext", code="NN101")
    line = github_annotation(problem, "warning")
    assert (
        line == "::warning file=gh/a%2Cb%3Ac%25.yaml,line=3,col=4::x: [NN101] 50%25 bad\\r\\nnext"
    )


# Inputs at the size cap, measured in a child process so that time and peak memory are its own.
MEASURE = """
import sys, time
from nnspec.compiler import compile_file
from nnspec.spec import SpecError
start = time.perf_counter()
try:
    compile_file(sys.argv[1])
    outcome = "valid"
except SpecError as exc:
    outcome = str(exc.problems[0])
seconds = time.perf_counter() - start
# Peak resident memory of this process only: ru_maxrss would include the parent's peak, which
# Linux carries across exec (a pytest worker holding TensorFlow would be counted).
status = open("/proc/self/status").read().split("VmHWM:")[1]
print(seconds, int(status.split()[0]) / 1024, outcome, sep="\\n")
"""


def measure(path) -> tuple[float, float, str]:
    """Seconds and peak resident MB of loading, validating and compiling ``path``, and the first
    problem (or ``"valid"``)."""
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    seconds, megabytes, outcome = result.stdout.splitlines()[:3]
    return float(seconds), float(megabytes), outcome


def big_flow_lists() -> str:
    line = "  - [i, i, i, i]\n"
    return "nnspec: 1\nx:\n" + line * ((MAX_FILE_BYTES - 20) // len(line))


def deep_valid_spec() -> str:
    """A valid spec of 100,000 layers (about 3 MB)."""
    head = VALID.split("    - {type: layer_norm}")[0]
    layers = "    - {type: flatten}\n" + "    - {type: dense, units: 2}\n" * 99_998
    return head + layers + "training:\n  loss: mse\n"


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("valid_100k_layers", deep_valid_spec, "valid"),
        ("alias_bomb", lambda: alias_bomb(9), "values with its aliases expanded"),
        ("flow_lists_5mb", big_flow_lists, f"more than {MAX_VALUES:,} values"),
        ("deep_20kb", lambda: "nnspec: 1\nx: " + "[" * 10_000 + "]" * 10_000, "nest"),
    ],
)
def test_inputs_at_the_cap_are_answered_in_bounded_time_and_memory(tmp_path, name, make, expected):
    """Goal: <= 5 s and <= 300 MB for any input under the cap, <= 10 s for a valid spec of
    100,000 layers (before: alias bomb 30 s and 1.6 GB, 5 MB of flow lists 108 s and 873 MB, deep
    nesting 7-9 s, the 100,000-layer spec 33 s and 507 MB). Memory is asserted at the
    goal; time at a wide margin (the exact numbers are in the closing notes of the hardening
    work), so a loaded CI machine cannot fail it while a quadratic pass still would."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(make())
    assert path.stat().st_size <= MAX_FILE_BYTES
    seconds, megabytes, outcome = measure(path)
    assert outcome == "valid" if expected == "valid" else expected in outcome
    assert megabytes <= 300, f"{name}: {megabytes:.0f} MB"
    assert seconds <= (40 if expected == "valid" else 20), f"{name}: {seconds:.1f} s"
    print(f"{name}: {seconds:.2f} s, {megabytes:.0f} MB")

"""Every compiler pass is linear (or n log n): doubling the input about doubles the time.

Each shape of input that was once quadratic (issue 11) is built in memory as plain data, parsed
(``nnspec.spec.validate.parse``, not the loader) and then the compiler is timed at ``n`` and
``2n`` in one run. The assertion is on the ratio (a quadratic pass gives ~4), never on an
absolute time, with ``n`` large enough that the pass, not noise, dominates; each time is the
minimum of a few repeats, with the garbage collector paused while timing.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable
from typing import Any

import pytest

from nnspec.compiler import compile_spec
from nnspec.compiler.summary import summarize
from nnspec.spec import Spec, SpecError
from nnspec.spec.loader import Document
from nnspec.spec.validate import MAX_HINTS, did_you_mean, hint_budget, parse

MAX_RATIO = 3.0
REPEATS = 5


def _spec(layers: list[dict[str, Any]], **model: Any) -> dict[str, Any]:
    return {
        "nnspec": 1,
        "name": "scaling",
        "inputs": {"tokens": {"length": 4}},
        "embeddings": {"words": {"vocab_size": 10, "dim": 2, "padding": {"index": 0}}},
        "model": {"layers": layers, **model},
        "training": {"loss": "mse", "optimizer": {"type": "adam", "lr": 0.001}},
    }


def wide_concatenate(n: int) -> dict[str, Any]:
    """One ``concatenate`` reading the same layer ``n`` times."""
    return _spec(
        [
            {"type": "embedding", "table": "words", "name": "e"},
            {"type": "concatenate", "inputs": ["e"] * n},
            {"type": "global_average_pool"},
            {"type": "dense", "units": 1},
        ]
    )


def wide_add(n: int) -> dict[str, Any]:
    """One ``add`` reading the same layer ``n`` times."""
    spec = wide_concatenate(n)
    spec["model"]["layers"][1]["type"] = "add"
    return spec


def unknown_names(n: int) -> dict[str, Any]:
    """``n`` layers each reading an unknown ``zzN`` (n errors, each a "did you mean" lookup)."""
    layers = [{"type": "embedding", "table": "words", "name": "e"}]
    layers += [
        {"type": "dense", "units": 2, "name": f"d{i}", "inputs": [f"zz{i}"]} for i in range(n)
    ]
    return _spec(layers)


def share_chain(n: int) -> dict[str, Any]:
    """``dN`` shares ``dN-1``'s weights, ``n`` long."""
    layers = [
        {"type": "embedding", "table": "words", "name": "e"},
        {"type": "flatten"},
        {"type": "dense", "units": 8, "name": "d0"},
    ]
    layers += [
        {"type": "dense", "units": 8, "name": f"d{i}", "share": f"d{i - 1}"} for i in range(1, n)
    ]
    return _spec(layers)


def deep_chain(n: int) -> dict[str, Any]:
    """A valid spec: an embedding, flatten and ``n`` small dense layers."""
    layers = [{"type": "embedding", "table": "words"}, {"type": "flatten"}]
    layers += [{"type": "dense", "units": 2} for _ in range(n)]
    return _spec(layers)


def _parsed(data: dict[str, Any]) -> tuple[Spec, Document]:
    doc = Document(file="scaling.yaml", data=data)
    return parse(doc), doc


def _compile(spec: Spec, doc: Document) -> None:
    with contextlib.suppress(SpecError):
        compile_spec(spec, doc)


def _compile_and_summarize(spec: Spec, doc: Document) -> None:
    summarize(compile_spec(spec, doc))


def _seconds(run: Callable[[], None]) -> float:
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        run()
        return time.perf_counter() - start
    finally:
        gc.enable()


def _best_pair(small: Callable[[], None], large: Callable[[], None]) -> tuple[float, float]:
    """The minimum time of each over :data:`REPEATS` rounds, the two interleaved so that a burst
    of load on a shared machine hits both sizes alike."""
    best_small = best_large = float("inf")
    for _ in range(REPEATS):
        best_small = min(best_small, _seconds(small))
        best_large = min(best_large, _seconds(large))
    return best_small, best_large


CASES = [
    pytest.param(wide_concatenate, 80_000, _compile, id="concatenate-inputs"),
    pytest.param(wide_add, 80_000, _compile, id="add-inputs"),
    pytest.param(unknown_names, 2_000, _compile, id="unknown-names"),
    pytest.param(share_chain, 3_000, _compile, id="share-chain"),
    pytest.param(deep_chain, 4_000, _compile_and_summarize, id="deep-compile-summary"),
]


@pytest.mark.parametrize(("shape", "n", "step"), CASES)
def test_compiler_time_grows_linearly(
    shape: Callable[[int], dict[str, Any]], n: int, step: Callable[[Spec, Document], None]
) -> None:
    small, large = _parsed(shape(n)), _parsed(shape(2 * n))
    step(*small)  # warm up (imports, caches)
    t_small, t_large = _best_pair(lambda: step(*small), lambda: step(*large))
    ratio = t_large / t_small
    assert ratio < MAX_RATIO, (
        f"{shape.__name__}: {n} -> {t_small:.3f}s, {2 * n} -> {t_large:.3f}s: ratio {ratio:.2f} "
        f"(a linear pass gives ~2, a quadratic one ~4)"
    )


def test_parse_time_grows_linearly() -> None:
    """Pydantic validation of a long layer list (no loader involved)."""
    n = 10_000
    small, large = deep_chain(n), deep_chain(2 * n)
    parse(Document(file="x", data=small))
    t_small, t_large = _best_pair(
        lambda: parse(Document(file="x", data=small)),
        lambda: parse(Document(file="x", data=large)),
    )
    assert t_large / t_small < MAX_RATIO, (t_small, t_large)


@pytest.mark.parametrize(
    "line",
    ["    - {type: dense, units: 2}\n", "    - [i, i, i, i]\n", "    - &a [x, [y, z]]\n"],
    ids=["layers", "flow-lists", "anchors"],
)
def test_loading_time_grows_linearly(line: str) -> None:
    """The loader (libyaml events -> data and positions) on ``n`` and ``2n`` lines of text."""
    from nnspec.spec.loader import load_text

    def text(n: int) -> str:
        return "nnspec: 1\nmodel:\n  layers:\n" + line * n

    small, large = text(20_000), text(40_000)
    load_text(small)
    t_small, t_large = _best_pair(lambda: load_text(small), lambda: load_text(large))
    assert t_large / t_small < MAX_RATIO, (t_small, t_large)


# ----------------------------------------------------------------------------- what stays right


def test_wide_merges_compile_to_one_node() -> None:
    program = compile_spec(*_parsed(wide_concatenate(1000)))
    node = program.node("concatenate")
    assert len(node.inputs) == 1000 and node.shape == (None, 4, 2000)
    program = compile_spec(*_parsed(wide_add(1000)))
    assert program.node("add").shape == (None, 4, 2)


def test_share_chain_uses_the_first_layers_weights() -> None:
    program = compile_spec(*_parsed(share_chain(50)))
    dense = [w.name for w in program.weights if not w.name.startswith("words.")]
    assert dense == ["d0.kernel", "d0.bias"]
    assert all(program.node(f"d{i}").layer_name == "d0" for i in range(50))


def test_share_errors_are_reported_once() -> None:
    data = share_chain(6)
    data["model"]["layers"][2]["share"] = "d5"  # d0 -> d5 -> d4 -> ... -> d0: a circle
    with pytest.raises(SpecError) as exc:
        compile_spec(*_parsed(data))
    paths = [p.path for p in exc.value.problems]
    assert paths == [("model", "layers", i, "share") for i in (2, 7, 6, 5, 4, 3)]
    assert {p.message for p in exc.value.problems} == {"layers share in a circle"}
    data = share_chain(6)
    data["model"]["layers"][2]["share"] = "d_0"
    with pytest.raises(SpecError) as exc:
        compile_spec(*_parsed(data))
    [problem] = exc.value.problems
    assert problem.path == ("model", "layers", 2, "share")
    assert problem.message == "unknown layer 'd_0' (did you mean 'd0'?)"


def test_hints_only_for_the_first_unknown_names() -> None:
    data = unknown_names(3 * MAX_HINTS)
    for layer in data["model"]["layers"][1:]:
        layer["inputs"] = [layer["name"] + "x"]  # d7x: close to d7
    with pytest.raises(SpecError) as exc:
        compile_spec(*_parsed(data))
    problems = exc.value.problems
    assert len(problems) == 3 * MAX_HINTS
    hinted = [p for p in problems if "did you mean" in p.message]
    assert hinted == problems[:MAX_HINTS]
    assert "unknown layer or input 'd0x' (did you mean 'd0'?)" in problems[0].message


def test_did_you_mean_over_a_long_list_is_bounded_and_still_useful() -> None:
    names = [f"dense_layer_{i}" for i in range(200_000)]
    start = time.perf_counter()
    hint = did_you_mean("dense_layr_5512", names)
    assert time.perf_counter() - start < 2.0
    assert hint == " (did you mean 'dense_layer_5512'?)"
    assert did_you_mean("x" * 100_000, names) == ""
    with hint_budget(1):
        assert did_you_mean("flaten", ["flatten", "dense"]) == " (did you mean 'flatten'?)"
        assert did_you_mean("flaten", ["flatten", "dense"]) == ""
    assert did_you_mean("flaten", ["flatten", "dense"]) == " (did you mean 'flatten'?)"

"""The Python API: nnspec.load / compile / build / summary, errors carrying diagnostics, lazy
re-exports."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import nnspec
from tests.conftest import EXAMPLES, ROOT

LSTM = EXAMPLES / "glove_lstm" / "spec.yaml"


def test_load_from_path_and_from_text_agree():
    from_path = nnspec.load(LSTM)
    from_str_path = nnspec.load(str(LSTM))
    from_text = nnspec.load(LSTM.read_text(), file="lstm.yaml")
    assert from_path.name == "glove_lstm"
    assert from_path.program.spec_hash == from_text.program.spec_hash == "7300f8b58f6b7211"
    assert from_str_path.document.file == str(LSTM)
    assert from_text.document.file == "lstm.yaml"
    assert from_path.warnings == ()


def test_errors_raise_spec_error_with_every_located_problem():
    with pytest.raises(nnspec.SpecError) as caught:
        nnspec.load(
            "nnspec: 1\nname: x\ninputs: {t: {length: 4}}\nmodel: {layers: [{type: GRU}]}\n"
        )
    lines = [str(p) for p in caught.value.problems]
    assert len(lines) == 2
    assert lines[0] == "<string>:1:1: training: missing required field"
    assert lines[1].startswith(
        "<string>:4:18: model.layers.0: unknown type 'GRU' (did you mean 'gru'?)"
    )
    assert str(caught.value) == "\n".join(lines)
    with pytest.raises(FileNotFoundError):
        nnspec.load("no/such/spec.yaml")


def test_compile_gives_the_files_compile_writes(tmp_path):
    from typer.testing import CliRunner

    from nnspec.cli import app

    spec = nnspec.load(LSTM)
    files = nnspec.compile(spec, "torch")
    assert sorted(files) == ["export.py", "model.py", "predict.py", "spec.json", "train.py"]
    result = CliRunner().invoke(
        app, ["compile", str(LSTM), "--backend", "torch", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    for rel, text in files.items():
        assert text == (tmp_path / rel).read_text(), rel
    assert "class GloveLstmModel(nn.Module):" in files["model.py"]
    assert nnspec.compile(LSTM, "torch") == files  # a path works too
    with pytest.raises(KeyError, match="unknown backend 'jax'"):
        nnspec.compile(spec, "jax")


def test_summary_counts_and_text():
    summary = nnspec.summary(LSTM)
    assert (summary.total, summary.trainable, summary.frozen) == (288_788, 38_938, 249_850)
    assert [(r.name, r.type, r.output_shape) for r in summary.rows] == [
        ("glove_lookup", "embedding", (None, 60, 50)),
        ("lstm", "recurrent", (None, 96)),
        ("dropout", "dropout", (None, 96)),
        ("dense", "dense", (None, 4)),
    ]
    text = str(summary)
    assert text.splitlines()[0] == 'Model: "glove_lstm"'
    assert "│ lstm (recurrent)         │ (None, 96)     │    38,400 │       0 │" in text
    assert text.endswith("Non-trainable params: 249,850")
    # A bare pydantic Spec (built or edited in Python) compiles the same.
    assert nnspec.summary(nnspec.load(LSTM).spec).total == 288_788


def test_build_makes_a_live_torch_model_without_files(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    model = nnspec.build(LSTM, backend="torch", dtype="float64")
    assert list(tmp_path.iterdir()) == []
    assert isinstance(model, torch.nn.Module)
    assert sum(p.numel() for p in model.parameters()) == 288_788
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 38_938
    ids = torch.tensor(np.array([[5, 7, 9] + [0] * 57, [1] * 60]), dtype=torch.long)
    model.eval()
    out = model(tokens=ids)
    assert out.shape == (2, 4) and out.dtype == torch.float64
    assert bool(torch.isfinite(out).all())
    program = nnspec.load(LSTM).program
    state = model.canonical_state()
    assert {name: tuple(v.shape) for name, v in state.items()} == {
        w.name: tuple(w.shape) for w in program.weights
    }
    module = sys.modules[type(model).__module__]
    assert callable(module.loss_fn) and callable(module.make_optimizer)


def test_build_without_the_framework_names_the_extra():
    code = (
        "import sys\nsys.modules['torch'] = None\nimport nnspec\n"
        f"try:\n    nnspec.build({str(LSTM)!r}, 'torch')\n"
        "except ModuleNotFoundError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == (
        "the torch backend needs torch, which is not installed: pip install 'nnspec[torch]'"
    ), out.stderr


def test_import_nnspec_is_lazy():
    code = (
        "import sys, nnspec\n"
        "assert 'pydantic' not in sys.modules and 'nnspec.api' not in sys.modules\n"
        "nnspec.load\n"
        "assert 'nnspec.api' in sys.modules\n"
        "print(sorted(n for n in nnspec.__all__ if not n.startswith('_')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(
        ["LoadedSpec", "SpecError", "Summary", "SummaryRow", "build", "compile", "load", "summary"]
    )
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        nnspec.nope  # noqa: B018


def test_readme_python_api_block_runs():
    pytest.importorskip("torch")
    readme = (ROOT / "README.md").read_text()
    (block,) = [
        b.split("```", 1)[0] for b in readme.split("```python\n")[1:] if "import nnspec\n" in b
    ]
    out = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "38938",
        "<string>:1:1: inputs: missing required field",
        "<string>:1:1: model: missing required field",
        "<string>:1:1: training: missing required field",
    ]

"""Release plumbing: built-in examples from a wheel or a checkout, one-line errors for missing
extras, the ruff range, the version's one home, the pre-commit hooks and the GitHub Action."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import nnspec
from nnspec import builtin_examples, cli, extras
from nnspec.cli import app, is_spec_file
from nnspec.validate_command import expand
from tests.conftest import EXAMPLES, ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
BIN = Path(sys.executable).parent


def test_examples_come_from_the_checkout_without_a_packaged_copy():
    assert builtin_examples.examples_dir() == EXAMPLES
    assert builtin_examples.example_names() == sorted(
        p.name for p in EXAMPLES.iterdir() if (p / "spec.yaml").exists()
    )
    assert "newsgroups_flat" in builtin_examples.example_names()


def test_a_packaged_copy_wins(tmp_path, monkeypatch):
    (tmp_path / "examples" / "only_here").mkdir(parents=True)
    (tmp_path / "examples" / "only_here" / "spec.yaml").write_text("nnspec: 1\n")
    monkeypatch.setattr(builtin_examples, "_PACKAGE", tmp_path)
    assert builtin_examples.example_names() == ["only_here"]
    assert builtin_examples.example_spec("only_here") == tmp_path / "examples/only_here/spec.yaml"


def test_the_build_copies_every_example_spec_and_the_sdist_carries_them():
    setup = (ROOT / "setup.py").read_text()
    assert '(ROOT / "examples").glob("*/spec.yaml")' in setup
    assert "include examples/*/spec.yaml" in (ROOT / "MANIFEST.in").read_text().splitlines()
    data = PYPROJECT["tool"]["setuptools"]["package-data"]["*"]
    assert {"templates/*.j2", "templates/**/*.j2", "py.typed"} <= set(data)
    assert (ROOT / "nnspec" / "py.typed").exists()
    assert (ROOT / "nnspec/examples/").as_posix().split("/")[-2] + "/examples/" in (
        ROOT / ".gitignore"
    ).read_text()


def test_unknown_demo_example_lists_the_built_in_ones():
    result = CliRunner().invoke(app, ["demo", "--example", "nope"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: unknown example 'nope'; built-in: " + ", ".join(builtin_examples.example_names())
    )


def test_install_hints_name_the_extra():
    assert extras.install_hint("torch.nn") == "pip install 'nnspec[torch]'"
    assert extras.install_hint("tensorflow") == "pip install 'nnspec[keras]'"
    assert extras.install_hint("pyarrow") == "pip install 'nnspec[data]'"
    assert extras.install_hint("safetensors") == "pip install 'nnspec[torch]' (or 'nnspec[keras]')"
    assert extras.install_hint("yaml") is None
    assert extras.backends_hint(["keras", "torch"]) == "pip install 'nnspec[all]'"
    assert extras.backends_hint(["torch"]) == "pip install 'nnspec[torch]'"
    # Every module named is in the extra it points to.
    optional = PYPROJECT["project"]["optional-dependencies"]
    for module, extra in extras.EXTRA_OF.items():
        names = " ".join(optional[extra]).replace("-", "_").lower()
        assert module.split(".")[0] in names or module == "keras", (module, extra)


def test_a_missing_framework_is_one_line_not_a_traceback(monkeypatch, capsys):
    def missing() -> None:
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    monkeypatch.setattr(cli, "app", missing)
    with pytest.raises(SystemExit) as exit_:
        cli.run()
    assert exit_.value.code == 1
    assert capsys.readouterr().err == "error: torch is not installed: pip install 'nnspec[torch]'\n"

    def other() -> None:
        raise ModuleNotFoundError("No module named 'nnspec_private'", name="nnspec_private")

    monkeypatch.setattr(cli, "app", other)
    with pytest.raises(ModuleNotFoundError):  # a bug, not a missing extra: not hidden
        cli.run()


def test_demo_without_frameworks_names_the_extra(tmp_path):
    code = (
        "import sys\n"
        "for m in ('torch', 'tensorflow'):\n    sys.modules[m] = None\n"
        "import importlib.util\n"
        "real = importlib.util.find_spec\n"
        "gone = ('torch', 'tensorflow')\n"
        "importlib.util.find_spec = lambda n, *a: None if n in gone else real(n, *a)\n"
        "sys.argv = ['nnspec', 'demo', '--workdir', sys.argv[1]]\n"
        "from nnspec.cli import run\nrun()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 1
    assert out.stderr.strip() == (
        "error: nnspec demo trains with keras and torch; not installed: tensorflow, torch: "
        "pip install 'nnspec[all]'"
    )
    assert list(tmp_path.iterdir()) == []


def test_ruff_is_a_range_whose_lower_end_ci_checks():
    deps = PYPROJECT["project"]["dependencies"]
    (ruff,) = [d for d in deps if d.startswith("ruff")]
    assert re.fullmatch(r"ruff>=0\.\d+\.\d+,<0\.\d+", ruff), ruff
    smoke = (ROOT / ".ci" / "wheel-smoke").read_text()
    assert "ruff==$RUFF_LOWEST" in smoke and "compile --check --beside examples/" in smoke
    lowest = re.search(r'"ruff>=([0-9.]*),', (ROOT / "pyproject.toml").read_text())
    assert lowest is not None and lowest.group(1) == ruff.split(">=")[1].split(",")[0]


def test_version_has_one_home():
    assert PYPROJECT["project"]["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "nnspec.__version__"}
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{nnspec.__version__}]" in changelog
    result = CliRunner().invoke(app, ["--version"])
    assert result.output == f"nnspec {nnspec.__version__}\n"


def test_ci_runs_the_wheel_and_pre_commit_smoke_tests():
    run = (ROOT / ".ci" / "run").read_text()
    assert ".ci/wheel-smoke" in run and ".ci/pre-commit-smoke" in run
    for script in ("wheel-smoke", "pre-commit-smoke"):
        assert os.access(ROOT / ".ci" / script, os.X_OK)
    dev = " ".join(PYPROJECT["project"]["optional-dependencies"]["dev"])
    assert "build" in dev and "pre-commit" in dev


def test_help_shows_no_type_beside_flags():
    for args in ([], ["validate"]):
        result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "120"})
        assert result.exit_code == 0
        assert "--version" in result.output or args
        assert "<bool>" not in result.output
        assert "<text|json|github>" in result.output or not args


def test_demo_help_is_whole_sentences():
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    (line,) = [x for x in result.output.splitlines() if "│ demo " in x]
    assert "Run the main job on a built-in example." in line


# ----------------------------------------------------------------------------- pre-commit


def test_spec_files_are_told_from_other_yaml(tmp_path):
    cases = {
        "spec.yaml": "# comment\nnnspec: 1\nname: x\n",
        "bom.yaml": "\ufeffnnspec: 1\n",
        "flow.yaml": "{nnspec: 1, name: x}\n",
        "quoted.yml": '"nnspec": 1\n',
        "spec.json": '{"name": "x", "nnspec": 1}',
        "workflow.yml": "name: ci\non: [push]\njobs:\n  nnspec: {runs-on: x}\n",
        "nested.yaml": "tool:\n  nnspec: 1\n",
        "other.json": '{"tool": {"nnspec": 1}}',
        "broken.json": '{"nnspec": 1,',
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
    found = sorted(n for n in cases if is_spec_file(tmp_path / n))
    assert found == ["bom.yaml", "broken.json", "flow.yaml", "quoted.yml", "spec.json", "spec.yaml"]


def test_only_specs_skips_other_yaml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(EXAMPLES / "glove_lstm" / "spec.yaml", "good.yaml")
    Path("ci.yml").write_text("name: ci\non: [push]\n")
    result = CliRunner().invoke(app, ["validate", "--only-specs", "good.yaml", "ci.yml"])
    assert result.exit_code == 0
    assert result.output == "1 file(s) checked: all valid\n"
    result = CliRunner().invoke(app, ["validate", "--only-specs", "ci.yml"])
    assert (result.exit_code, result.output) == (0, "no nnspec spec among 1 path(s)\n")
    result = CliRunner().invoke(app, ["validate", "ci.yml"])  # without it, as before
    assert result.exit_code == 1 and "ci.yml:1:1: <root>: missing required field" in result.output
    result = CliRunner().invoke(app, ["compile", "--check", "--beside", "--only-specs", "ci.yml"])
    assert (result.exit_code, result.output) == (0, "")


def test_generated_spec_copies_are_not_specs(tmp_path, monkeypatch):
    """``compile --beside`` writes a canonical ``spec.json`` next to the code; a folder walk, a
    pattern and ``--only-specs`` leave it out (else checking it looks for code beside it)."""
    monkeypatch.chdir(tmp_path)
    Path("lstm").mkdir()
    shutil.copy(EXAMPLES / "glove_lstm" / "spec.yaml", "lstm")
    assert CliRunner().invoke(app, ["compile", "--beside", "lstm/spec.yaml"]).exit_code == 0
    copies = [Path("lstm/keras/spec.json"), Path("lstm/torch/spec.json")]
    assert all(c.exists() and not is_spec_file(c) for c in copies)
    assert expand([Path("lstm")]) == [Path("lstm/spec.yaml")]
    assert expand([Path("lstm/*/spec.json"), Path("lstm/*.yaml")]) == [Path("lstm/spec.yaml")]
    result = CliRunner().invoke(app, ["compile", "--check", "--beside", "lstm"])
    assert (result.exit_code, result.output) == (0, "lstm/spec.yaml: generated code is current\n")
    result = CliRunner().invoke(app, ["validate", "--only-specs", *map(str, copies)])
    assert (result.exit_code, result.output) == (0, "no nnspec spec among 2 path(s)\n")
    # A spec.json of the user's own (no generated model.py beside it) is still a spec.
    Path("mine").mkdir()
    shutil.copy(copies[0], "mine/spec.json")
    assert is_spec_file(Path("mine/spec.json"))
    assert expand([Path("mine")]) == [Path("mine/spec.json")]


def test_hooks_validate_only_specs():
    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert set(hooks) == {"nnspec-validate", "nnspec-compile-check"}
    for hook in hooks.values():
        assert "--only-specs" in hook["entry"].split()
        assert hook["language"] == "python"
        pattern = re.compile(hook["files"])
        assert (
            pattern.search("specs/a.yaml") and pattern.search("b.yml") and pattern.search("c.json")
        )
        assert not pattern.search("setup.py")


# ----------------------------------------------------------------------------- GitHub Action


def _action_steps() -> list[dict]:
    return yaml.safe_load((ROOT / "action.yml").read_text())["runs"]["steps"]


def test_action_is_composite_and_installs_nnspec():
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    assert set(action["inputs"]) == {
        "path",
        "strict",
        "check-generated",
        "python-version",
        "install",
    }
    install = _action_steps()[1]
    assert (
        "pip install" in install["run"]
        and install["env"]["NNSPEC_SOURCE"] == "${{ github.action_path }}"
    )


def run_action(path: str, cwd: Path, strict: str = "true", check: str = "true") -> list:
    """The action's nnspec steps as the runner runs them (bash, inputs in the environment), with
    this environment's nnspec on PATH instead of the install step."""
    results = []
    for step in _action_steps()[2:]:
        if step.get("if") == "inputs.check-generated == 'true'" and check != "true":
            continue
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        for key, value in step.get("env", {}).items():
            value = value.replace("${{ inputs.path }}", path).replace(
                "${{ inputs.strict }}", strict
            )
            env[key] = value
        results.append(
            subprocess.run(
                ["bash", "-eo", "pipefail", "-c", step["run"]],
                env=env,
                cwd=cwd,
                capture_output=True,
                text=True,
            )
        )
    return results


def test_action_validates_and_checks_a_folder(tmp_path):
    specs = tmp_path / "specs"
    (specs / "lstm").mkdir(parents=True)
    shutil.copy(EXAMPLES / "glove_lstm" / "spec.yaml", specs / "lstm")
    compiled = CliRunner().invoke(app, ["compile", "--beside", str(specs / "lstm" / "spec.yaml")])
    assert compiled.exit_code == 0, compiled.output
    (specs / "workflow.yml").write_text("name: ci\non: [push]\n")
    validate, check = run_action("specs", tmp_path)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert validate.stdout == ""
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout == "specs/lstm/spec.yaml: generated code is current\n"
    (specs / "bad.yaml").write_text("nnspec: 1\nname: b\n")
    (validate,) = run_action("specs", tmp_path, check="false")
    assert validate.returncode == 1
    assert (
        "::error file=specs/bad.yaml,line=1,col=1::inputs: missing required field"
        in validate.stdout
    )

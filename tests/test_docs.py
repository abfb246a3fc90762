"""The documentation site cannot rot: every block of every page is checked or run.

Rules for the fenced blocks of ``docs/**/*.md`` (every block must have one of these languages):

* ``yaml``: a whole spec that validates and compiles without lint warnings. With a ``title``
  that is a file of the repository (``examples/x/spec.yaml``) it must equal that file, comments
  and blank lines left out; with another title it is written to the page's working folder
  under that name for the commands after it.
* ``bash``: run, in order, in a fresh working folder per page (``examples`` and ``docs`` linked
  into it, the project's virtual environment first on ``PATH``), and must exit 0. Two kinds of
  line are checked instead of run: ``make TARGET`` runs ``make -n TARGET`` (the target exists
  and its commands parse; running the whole test suite from a test would recurse), and
  ``pip install`` checks that every extra it names is defined in ``pyproject.toml``.
* ``python``: run as a script in the same folder; must exit 0 (the tutorials' claims are
  ``assert`` statements).
* ``text``: right after a ``bash`` or ``python`` block (nothing but blank lines between them)
  it is that block's output: every line of it must appear in what the block printed
  (whitespace runs count as one space). Elsewhere it is an illustration (a formula, a
  signature) and is not checked.
* ``json``: must parse.
* ``mermaid``: a model graph; it must be exactly what ``nnspec diagram`` draws for the spec of
  the nearest ``yaml`` block before it.

Also: the generated reference pages and CLI page are current, every spec model and command is
documented, the framework-difference page quotes the measured numbers, ``mkdocs build
--strict`` passes, and nothing refers to documents outside the repository.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from nnspec.compiler import compile_spec, problems_of
from nnspec.spec import load_string

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
LANGUAGES = {"yaml", "bash", "python", "text", "json", "mermaid"}
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```\s*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int
    language: str
    title: str | None
    text: str
    adjacent: bool  # only blank lines between this block and the one before it

    def where(self) -> str:
        """``page:line`` for messages."""
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page``, in order."""
    source = page.read_text()
    found = []
    previous_end = None
    for match in FENCE.finditer(source):
        info = match["info"].strip()
        language = info.split()[0] if info else ""
        title = re.search(r'title="([^"]+)"', info)
        line = source.count("\n", 0, match.start()) + 1
        adjacent = previous_end is not None and not source[previous_end : match.start()].strip()
        found.append(Block(page, line, language, title and title[1], match["body"], adjacent))
        previous_end = match.end()
    return found


def load_generator():
    """The reference generator ``docs/gen_reference.py`` as a module."""
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def spec_body(text: str) -> list[str]:
    """The lines of a spec without comments and blank lines."""
    lines = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            lines.append(line.rstrip())
    return lines


def normalized(text: str) -> str:
    """``text`` with every run of whitespace as one space."""
    return " ".join(text.split())


# ----------------------------------------------------------------------------- static checks


def test_the_site_has_its_pages():
    names = {str(p.relative_to(DOCS)) for p in PAGES}
    for name in (
        "index.md",
        "getting-started.md",
        "policies.md",
        "backends.md",
        "cli.md",
        "api.md",
        "tutorials/pad-zeroing.md",
        "tutorials/glove-special-tokens.md",
        "tutorials/memn2n-temporal.md",
        "reference/index.md",
        "reference/embeddings.md",
        "reference/model.md",
        "reference/training.md",
    ):
        assert name in names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_every_block_has_a_checked_language(page):
    for block in blocks(page):
        assert block.language in LANGUAGES, f"{block.where()}: fence language {block.language!r}"


def test_reference_pages_are_current():
    generator = load_generator()
    for path, text in generator.render_all().items():
        assert path.exists() and path.read_text() == text, (
            f"stale {path.relative_to(ROOT)}: run `python docs/gen_reference.py`"
        )


def test_every_spec_model_and_field_is_documented():
    generator = load_generator()
    assert generator.all_models() <= generator.documented_models()
    reference = "\n".join(p.read_text() for p in (DOCS / "reference").glob("*.md"))
    for model in generator.all_models():
        assert f"{{#{model.__name__.lower()}}}" in reference
        for name in generator.own_fields(model):
            assert f"| `{name}` |" in reference, f"{model.__name__}.{name} is not documented"


def test_cli_reference_covers_every_command_and_option():
    import typer

    from nnspec.cli import app

    page = (DOCS / "cli.md").read_text()
    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        assert f"## `nnspec {name}`" in page
        for param in command.params:
            for flag in param.opts:
                assert f"`{flag}`" in page, f"nnspec {name} {flag} is not documented"


def test_api_reference_covers_every_public_name():
    import nnspec

    page = (DOCS / "api.md").read_text()
    for name in nnspec.__all__:
        if not name.startswith("_"):
            assert f"## `nnspec.{name}`" in page, f"nnspec.{name} is not documented"


def test_reference_examples_are_valid_values():
    generator = load_generator()
    for model in generator.all_models():
        for name, info in generator.own_fields(model).items():
            if name != "type":
                generator.check_example(model, name, generator.example_of(model, name, info))


def test_backends_page_quotes_the_measured_numbers():
    facts = json.loads((DOCS / "facts" / "measured.json").read_text())["facts"]
    page = (DOCS / "backends.md").read_text()
    for name, fact in facts.items():
        assert f"`{fact['value']:.4g}`" in page, f"backends.md does not quote {name}"


def test_nothing_refers_to_documents_outside_the_repository():
    texts = [p.read_text() for p in PAGES] + [(ROOT / "mkdocs.yml").read_text()]
    texts += [p.read_text() for p in DOCS.rglob("*.py")]
    for text in texts:
        # Spelled in pieces, so that this file does not name them either.
        for word in ("DESIG" + "N", "FACT" + "S.md", "../" + "shared", "share" + "d/"):
            assert word not in text


@pytest.mark.parametrize(
    "block",
    [b for page in PAGES for b in blocks(page) if b.language == "yaml"],
    ids=lambda b: b.where(),
)
def test_yaml_blocks_are_valid_specs(block):
    spec, doc = load_string(block.text, block.where())
    program = compile_spec(spec, doc)
    assert not list(problems_of(program, doc)) or block.title == "plain.yaml", block.where()
    if block.title and (ROOT / block.title).is_file():
        assert spec_body(block.text) == spec_body((ROOT / block.title).read_text()), (
            f"{block.where()} differs from {block.title}"
        )


def diagram_cases() -> list[tuple[Block, Block]]:
    """``(mermaid block, the yaml block it draws)`` for every diagram in the docs."""
    cases = []
    for page in PAGES:
        spec = None
        for block in blocks(page):
            if block.language == "yaml":
                spec = block
            elif block.language == "mermaid":
                assert spec is not None, f"{block.where()}: a diagram without a spec before it"
                cases.append((block, spec))
    return cases


@pytest.mark.parametrize("case", diagram_cases(), ids=lambda case: case[0].where())
def test_mermaid_blocks_are_the_specs_diagrams(case, tmp_path):
    diagram, spec = case
    path = tmp_path / "spec.yaml"
    path.write_text(spec.text)
    result = subprocess.run(
        [sys.executable, "-m", "nnspec", "diagram", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == diagram.text.strip(), f"{diagram.where()}: stale diagram"


def test_json_blocks_parse():
    for page in PAGES:
        for block in blocks(page):
            if block.language == "json":
                json.loads(block.text)


# ----------------------------------------------------------------------------- running pages


def extras_defined() -> set[str]:
    """The optional-dependency extras of ``pyproject.toml``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return set(project["optional-dependencies"])


def shell_script(block: Block) -> str:
    """The bash to run for ``block``: ``make`` lines dry-run, ``pip install`` lines checked."""
    lines = []
    for line in block.text.splitlines():
        command = line.split("#", 1)[0].strip()
        if command.startswith("make "):
            target = command.split()[1]
            lines.append(f"make -n -C {ROOT} {target} > /dev/null")
        elif command.startswith("pip install"):
            for extras in re.findall(r"\[([a-z,]+)\]", command):
                for extra in extras.split(","):
                    assert extra in extras_defined(), f"{block.where()}: no extra {extra!r}"
            lines.append(":")
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def run_page(page: Path, workdir: Path) -> None:
    """Run the page's blocks in order in ``workdir`` and check what they print."""
    for name in ("examples", "docs"):
        (workdir / name).symlink_to(ROOT / name)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "NO_COLOR": "1",
        "COLUMNS": "120",
    }
    output: str | None = None
    for index, block in enumerate(blocks(page)):
        if block.language == "yaml" and block.title and not (ROOT / block.title).exists():
            (workdir / block.title).write_text(block.text)
        if block.language == "bash":
            command = ["bash", "-eo", "pipefail", "-c", shell_script(block)]
        elif block.language == "python":
            script = workdir / f"_block_{index}.py"
            script.write_text(block.text)
            command = [sys.executable, script.name]
        else:
            if block.language == "text" and block.adjacent and output is not None:
                printed = normalized(output)
                for line in block.text.splitlines():
                    if line.strip():
                        assert normalized(line) in printed, (
                            f"{block.where()}: {line!r} is not in the output:\n{output}"
                        )
            output = None
            continue
        result = subprocess.run(
            command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{block.where()} failed ({result.returncode}):\n{output}"


RUNNABLE = [p for p in PAGES if any(b.language in ("bash", "python") for b in blocks(p))]


@pytest.mark.parametrize("page", RUNNABLE, ids=lambda p: str(p.relative_to(DOCS)))
def test_page_runs_as_written(page, tmp_path):
    run_page(page, tmp_path)


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is in the dev extra")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "reference" / "model" / "index.html").exists()
    shutil.rmtree(tmp_path, ignore_errors=True)

"""``nnspec validate`` without typer or rich, so that the command pre-commit runs on every commit
starts fast.

:func:`validate_paths` is the whole command (``nnspec.cli.validate`` is a typer wrapper around
it), and :func:`fast_args` recognizes a plain ``validate`` command line that the entry point
(:mod:`nnspec.entry`) can run without importing typer at all; anything else (``--help``, an
unknown or malformed option) goes through typer, which explains it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

SPEC_SUFFIXES = (".yaml", ".yml", ".json")
FORMATS = ("text", "json", "github")

# A top-level `nnspec:` key (block or flow style; quoted or not) at the start of a line.
_SPEC_KEY = re.compile(rb"""^(?:\{\s*)?["']?nnspec["']?\s*:""", re.MULTILINE)


class UsageError(Exception):
    """A command line that cannot run (exit 2): a missing file, a pattern matching nothing."""


def say(text: str, stderr: bool = False) -> None:
    """Print one line as it is (already escaped)."""
    stream = sys.stderr if stderr else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def is_generated_copy(path: Path) -> bool:
    """Whether ``path`` is the ``spec.json`` that ``nnspec compile`` writes beside the code it
    generates: a copy of a spec (read by the run folders), not a spec of its own. Recognised by
    its name and a generated ``model.py`` beside it."""
    from nnspec.writer import is_generated

    return path.name == "spec.json" and is_generated(path.with_name("model.py"))


def is_spec_file(path: Path) -> bool:
    """Whether ``path`` looks like an nnspec spec: YAML with a top-level ``nnspec:`` key, or a
    JSON object with an ``"nnspec"`` key, and not a copy nnspec generated. Unreadable files
    count as specs (reading them again reports the error). Used by ``--only-specs``, so that
    pre-commit hooks and folder-wide runs skip a project's other YAML files."""
    if is_generated_copy(path):
        return False
    try:
        data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark
    except OSError:
        return True
    if path.suffix == ".json":
        try:
            loaded = json.loads(data)
        except ValueError:
            return b'"nnspec"' in data
        return isinstance(loaded, dict) and "nnspec" in loaded
    return _SPEC_KEY.search(data) is not None


def expand(paths: list[Path]) -> list[Path]:
    """Files as given; directories searched recursively for spec files; globs expanded. A
    directory or a pattern leaves out the ``spec.json`` copies written beside generated code.
    :class:`UsageError` for a missing file or a pattern that matches nothing."""
    found: list[Path] = []
    for path in paths:
        if any(ch in str(path) for ch in "*?["):
            matches = sorted(Path().glob(str(path)))
            if not matches:
                raise UsageError(f"{path}: no file matches this pattern")
            found.extend(p for p in matches if not is_generated_copy(p))
        elif path.is_dir():
            found.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.suffix in SPEC_SUFFIXES and not is_generated_copy(p)
                )
            )
        elif path.exists():
            found.append(path)
        else:
            raise UsageError(f"{path}: no such file")
    return found


def github_annotation(problem: Any, level: str) -> str:
    """A GitHub Actions workflow command for ``problem``: the file property and the message
    escaped as GitHub's runner requires (``%``, CR, LF; also ``:`` and ``,`` in properties), and
    terminal escapes shown as text."""
    from nnspec.spec.errors import dotted, escaped

    def data(text: str) -> str:
        return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    def prop(text: str) -> str:
        return data(escaped(text)).replace(":", "%3A").replace(",", "%2C")

    code = f"[{problem.code}] " if problem.code else ""
    message = data(f"{dotted(problem.path)}: {code}{escaped(problem.message)}")
    where = f"file={prop(problem.file)},line={problem.line},col={problem.column}"
    return f"::{level} {where}::{message}"


def _json(report: dict[str, Any]) -> None:
    say(json.dumps(report, indent=2, ensure_ascii=False))


def validate_paths(
    files: list[Path], strict: bool = False, format: str = "text", only_specs: bool = False
) -> int:
    """Run ``nnspec validate``: print every problem of every file and return the exit code
    (0 valid, 1 invalid, 2 unreadable). :class:`UsageError` for a bad command line."""
    from nnspec.checks import check_file

    paths = expand(files)
    if only_specs:
        paths = [p for p in paths if is_spec_file(p)]
        if not paths:
            if format == "text":
                say(f"no nnspec spec among {len(files)} path(s)")
            elif format == "json":
                _json({"files": 0, "valid": True, "problems": []})
            return 0
    if not paths:
        raise UsageError("no spec files found")
    problems = []
    unreadable = False
    for path in paths:
        try:
            problems.extend(check_file(path)[2])
        except OSError as exc:
            unreadable = True
            say(f"error: {path}: cannot read: {exc.strerror or exc}", stderr=True)
    failed = [p for p in problems if p.level == "error" or strict]
    if format == "json":
        _json(
            {
                "files": len(paths),
                "valid": not failed,
                "problems": [
                    {
                        "file": p.file,
                        "line": p.line,
                        "column": p.column,
                        "path": ".".join(map(str, p.path)),
                        "level": p.level,
                        "code": p.code,
                        "message": p.message,
                    }
                    for p in problems
                ],
            }
        )
    else:
        for p in problems:
            if format == "github":
                level = "error" if p.level == "error" or strict else "warning"
                say(github_annotation(p, level))
            else:
                say(str(p), stderr=p.level == "error" or strict)
        if format == "text":
            summary = f"{len(paths)} file(s) checked: "
            summary += "all valid" if not failed else f"{len(failed)} problem(s)"
            say(summary, stderr=bool(failed))
    if unreadable:
        return 2
    return 1 if failed else 0


def fast_args(argv: list[str]) -> dict[str, Any] | None:
    """The keyword arguments of :func:`validate_paths` for a plain ``validate`` command line
    (files and the options ``--strict``, ``--no-strict``, ``--only-specs``, ``--format X``), or
    ``None`` for anything typer should parse (help, other commands, unknown options)."""
    if not argv or argv[0] != "validate":
        return None
    kwargs: dict[str, Any] = {"files": [], "strict": False, "format": "text", "only_specs": False}
    rest = iter(argv[1:])
    for arg in rest:
        if arg in ("--strict", "--no-strict"):
            kwargs["strict"] = arg == "--strict"
        elif arg == "--only-specs":
            kwargs["only_specs"] = True
        elif arg == "--format" or arg.startswith("--format="):
            value = arg.partition("=")[2] if "=" in arg else next(rest, None)
            if value not in FORMATS:
                return None
            kwargs["format"] = value
        elif arg.startswith("-") or not arg:
            return None
        else:
            kwargs["files"].append(Path(arg))
    return kwargs if kwargs["files"] else None

"""The ``nnspec`` command: validate | compile | summary | diagram | schema | parity | prepare |
demo.

Exit codes: 0 success, 1 invalid spec (or stale code, or parity over tolerance), 2 usage error
(missing or unreadable file, unknown option). Bad input never produces a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from nnspec import __version__
from nnspec.validate_command import UsageError, expand, is_spec_file, validate_paths
from nnspec.validate_command import github_annotation as github_annotation  # re-exported

if TYPE_CHECKING:
    from rich.console import Console

app = typer.Typer(
    name="nnspec",
    help="Compile declarative model specs to readable PyTorch and Keras code.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class _LazyConsole:
    """A ``rich`` console made on first use: importing rich costs ~30 ms, which ``validate``
    (run by pre-commit on every commit) does not pay when it has nothing to print."""

    def __init__(self, stderr: bool) -> None:
        object.__setattr__(self, "_stderr", stderr)
        object.__setattr__(self, "_console", None)

    def _get(self) -> Console:
        console = object.__getattribute__(self, "_console")
        if console is None:
            from rich.console import Console

            stderr = object.__getattribute__(self, "_stderr")
            console = Console(stderr=stderr, highlight=False, soft_wrap=True)
            object.__setattr__(self, "_console", console)
        return console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._get(), name, value)


out = cast("Console", _LazyConsole(stderr=False))
err = cast("Console", _LazyConsole(stderr=True))


def Table(*args: Any, **kwargs: Any) -> Any:
    """``rich.table.Table(*args, **kwargs)``, imported on first use."""
    from rich.table import Table as RichTable

    return RichTable(*args, **kwargs)


def _hide_flag_types() -> None:
    """Flags take no value, so the help shows no ``<bool>`` type beside them (typer >= 0.20
    shows one for every option; ``--version <bool>`` read as if it took an argument)."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_nnspec_flags_hidden", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        """No type for a flag; typer's own for every other option."""
        if getattr(self, "is_flag", False) and not getattr(self, "count", False):
            return None
        return shown(self, ctx)

    display_type_rich._nnspec_flags_hidden = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_hide_flag_types()


class Format(StrEnum):
    """Output formats of ``validate``."""

    text = "text"
    json = "json"
    github = "github"


def _version(value: bool) -> None:
    if value:
        out.print(f"nnspec {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """nnspec: one validated spec in, readable PyTorch and Keras code out."""


def _usage_error(message: str) -> typer.Exit:
    err.print(f"error: {message}", markup=False)
    return typer.Exit(2)


ONLY_SPECS_HELP = "Skip files without a top-level `nnspec:` key (other YAML in a repository)."


def _expand(paths: list[Path]) -> list[Path]:
    """Files as given; directories searched recursively for spec files; globs expanded."""
    try:
        return expand(paths)
    except UsageError as exc:
        raise _usage_error(str(exc)) from None


def _compile(path: Path):  # -> (Program, Document, problems)
    """Load, validate and compile one file; exits 1 with every located error (all stages:
    :mod:`nnspec.checks`), 2 if unreadable."""
    from nnspec.checks import check_file

    try:
        program, doc, problems = check_file(path)
    except OSError as exc:
        raise _usage_error(f"{path}: cannot read: {exc.strerror or exc}") from None
    if program is None or doc is None:
        for problem in problems:
            err.print(str(problem), markup=False)
        raise typer.Exit(1)
    return program, doc


def _print_warnings(program, doc) -> int:
    from nnspec.compiler import problems_of

    warnings = problems_of(program, doc)
    for problem in warnings:
        err.print(str(problem), markup=False)
    return len(warnings)


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Spec files, directories or globs.")],
    strict: Annotated[bool, typer.Option(help="Fail on lint warnings too.")] = False,
    format: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.text,
    only_specs: Annotated[bool, typer.Option("--only-specs", help=ONLY_SPECS_HELP)] = False,
) -> None:
    """Check specs: exit 0 if all are valid, 1 otherwise; errors as FILE:LINE:COL: path: message.

    Every problem of every file is reported in one run, ordered by position.
    """
    # The command itself is nnspec.validate_command, which a plain `nnspec validate` command
    # line runs without typer (nnspec.entry).
    try:
        code = validate_paths(files, strict, format.value, only_specs)
    except UsageError as exc:
        raise _usage_error(str(exc)) from None
    if code:
        raise typer.Exit(code)


def _backends(name: str) -> list[str]:
    from nnspec import backends

    known = list(backends.available())
    if name == "all":
        return known
    if name not in known:
        raise _usage_error(f"unknown backend {name!r}; choose from: {', '.join(known)}, all")
    return [name]


@app.command("compile")
def compile_(
    files: Annotated[list[Path], typer.Argument(help="Spec files.")],
    backend: Annotated[str, typer.Option(help="torch, keras or all.")] = "all",
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Output folder for one spec (with --backend all: <out>/<backend>). "
            "Default: <name>_<backend>.",
        ),
    ] = None,
    beside: Annotated[
        bool, typer.Option(help="Write into <spec folder>/<backend>/ (the examples' layout).")
    ] = False,
    check: Annotated[
        bool, typer.Option(help="Write nothing; exit 1 with a diff if files on disk are stale.")
    ] = False,
    force: Annotated[bool, typer.Option(help="Overwrite files nnspec did not generate.")] = False,
    only_specs: Annotated[bool, typer.Option("--only-specs", help=ONLY_SPECS_HELP)] = False,
) -> None:
    """Generate the model module and training script for each backend.

    FILES may be spec files, directories (searched for spec files) or globs.
    """
    if out_dir is not None and (beside or len(files) > 1):
        raise _usage_error("--out takes one spec and cannot be combined with --beside")
    files = _expand(files)
    if only_specs:
        files = [f for f in files if is_spec_file(f)]
    names = _backends(backend)
    failed = False
    for file in files:
        try:
            _compile_one(file, names, backend == "all", out_dir, beside, check, force)
        except typer.Exit as exc:
            if exc.exit_code == 2:
                raise
            failed = True
    if failed:
        raise typer.Exit(1)


def _compile_one(
    file: Path,
    names: list[str],
    all_backends: bool,
    out_dir: Path | None,
    beside: bool,
    check: bool,
    force: bool,
) -> None:
    """Compile one spec for ``names``; exits 1 on a bad spec, stale code or a refused write."""
    from nnspec import backends
    from nnspec.backends.base import UnsupportedOpError
    from nnspec.writer import WriteRefused, stale, write_trees

    program, doc = _compile(file)
    _print_warnings(program, doc)
    outputs: dict[str, tuple[Path, dict[str, str]]] = {}
    for name in names:
        try:
            generated = backends.get(name).generate(program)
        except UnsupportedOpError as exc:
            err.print(f"{file}: error: {exc}", markup=False)
            raise typer.Exit(1) from None
        if beside:
            target = file.parent / name
        elif out_dir is None:
            target = Path(f"{program.name}_{name}")
        else:
            target = out_dir / name if all_backends else out_dir
        outputs[name] = (target, generated)
    if check:
        diffs = {}
        for target, generated in outputs.values():
            diffs.update({str(target / rel): d for rel, d in stale(generated, target).items()})
        for diff in diffs.values():
            out.print(diff, markup=False, end="")
        if diffs:
            how = " --beside" if beside else (f" --out {out_dir}" if out_dir else "")
            err.print(
                f"{file}: {len(diffs)} generated file(s) are stale; "
                f"run: nnspec compile {file}{how}",
                markup=False,
            )
            raise typer.Exit(1)
        out.print(f"{file}: generated code is current", markup=False)
        return
    # All backends' files are checked, then written, together: a refusal writes nothing.
    try:
        written = write_trees(list(outputs.values()), force=force)
    except WriteRefused as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(1) from None
    except OSError as exc:
        where = exc.filename or ", ".join(str(target) for target, _ in outputs.values())
        raise _usage_error(f"{where}: cannot write: {exc.strerror or exc}") from None
    for name, paths in zip(outputs, written, strict=True):
        out.print(f"{name}: wrote {', '.join(str(p) for p in paths)}", markup=False)


@app.command()
def summary(file: Annotated[Path, typer.Argument(help="The spec file.")]) -> None:
    """Layers, output shapes and trainable / frozen parameter counts (no framework needed)."""
    from nnspec.compiler.summary import format_shape, pretrained_sources, summarize

    program, doc = _compile(file)
    _print_warnings(program, doc)
    rows = [
        (f"{row.name} ({row.op})", format_shape(row.shape), f"{row.trainable:,}", f"{row.frozen:,}")
        for row in summarize(program)
    ]
    out.print(f'Model: "{program.name}"', markup=False)
    headers = ("Layer (type)", "Output shape", "Trainable", "Frozen")
    # One write: rich's per-call cost would dominate on a model of 100,000 layers.
    out.file.write("\n".join(box_table(headers, rows, right=(False, False, True, True))) + "\n")
    total = program.trainable_count + program.frozen_count
    out.print(f"Total params: {total:,}", markup=False)
    out.print(f"Trainable params: {program.trainable_count:,}", markup=False)
    out.print(f"Non-trainable params: {program.frozen_count:,}", markup=False)
    for line in pretrained_sources(program):
        out.print(f"Pretrained rows of {line}", markup=False)


def box_table(
    headers: tuple[str, ...], rows: Sequence[tuple[str, ...]], right: tuple[bool, ...]
) -> list[str]:
    """Lines of a boxed text table (the look of ``rich``'s default table, drawn directly: rich
    takes minutes on the 100,000 rows of a very deep model, this takes linear time)."""
    from nnspec.spec.errors import escaped

    rows = [tuple(escaped(cell) for cell in row) for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: tuple[str, ...], bar: str) -> str:
        padded = (
            cell.rjust(width) if align else cell.ljust(width)
            for cell, width, align in zip(cells, widths, right, strict=True)
        )
        return f"{bar} " + f" {bar} ".join(padded) + f" {bar}"

    def rule(left: str, fill: str, middle: str, end: str) -> str:
        return left + middle.join(fill * (width + 2) for width in widths) + end

    return [
        rule("┏", "━", "┳", "┓"),
        line(headers, "┃"),
        rule("┡", "━", "╇", "┩"),
        *(line(row, "│") for row in rows),
        rule("└", "─", "┴", "┘"),
    ]


class DiagramFormat(StrEnum):
    """Output formats of ``diagram``."""

    mermaid = "mermaid"
    dot = "dot"
    svg = "svg"


@app.command()
def diagram(
    file: Annotated[Path, typer.Argument(help="The spec file.")],
    format: Annotated[
        DiagramFormat,
        typer.Option(
            "--format", help="mermaid (GitHub markdown), dot (Graphviz), svg (needs dot)."
        ),
    ] = DiagramFormat.mermaid,
    output: Annotated[Path | None, typer.Option("--out", help="Write to this file.")] = None,
) -> None:
    """Draw the model graph: layer types, output shapes, parameter counts, table policies.

    Mermaid renders in GitHub markdown inside a ```mermaid fence; SVG runs Graphviz's dot.
    """
    from nnspec.diagram import GraphvizMissing, render

    program, _ = _compile(file)
    try:
        text = render(program, format.value)
    except GraphvizMissing as exc:
        raise _usage_error(str(exc)) from None
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text)
    except OSError as exc:
        raise _usage_error(f"{output}: cannot write: {exc.strerror or exc}") from None
    out.print(f"wrote {output}", markup=False)


@app.command()
def schema(
    output: Annotated[Path | None, typer.Option("--out", help="Write to this file.")] = None,
) -> None:
    """Print the JSON Schema of the spec language (for editors and CI)."""
    from nnspec.spec import json_schema_text

    text = json_schema_text()
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)


@app.command()
def parity(
    file: Annotated[Path, typer.Argument(help="The spec file.")],
    dtype: Annotated[str, typer.Option(help="float32, float64 or both.")] = "both",
    steps: Annotated[int, typer.Option(min=0, help="Optimizer steps to compare.")] = 5,
    batch: Annotated[int, typer.Option(min=1, help="Batch size of the random batches.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of weights and batches.")] = 0,
    backend: Annotated[
        list[str] | None,
        typer.Option(
            "--backend",
            help="Run only this backend or engine (repeatable; the first is the baseline), "
            "e.g. torch, keras, keras-jax. Default: every installed one.",
        ),
    ] = None,
) -> None:
    """Run every installed backend, and Keras on each installed engine (keras-jax,
    keras-torch), on the same canonical weights and batches: outputs against the numpy
    reference, gradients and trained weights against each other; exit 1 if over tolerance."""
    from nnspec.parity import compare, installed, participants, resolve

    dtypes = ["float32", "float64"] if dtype == "both" else [dtype]
    if any(d not in ("float32", "float64") for d in dtypes):
        raise _usage_error(f"unknown dtype {dtype!r}; use float32, float64 or both")
    names = participants()
    for name in backend or []:
        try:
            resolve(name)
        except KeyError as exc:
            raise _usage_error(str(exc.args[0])) from None
        if name not in names:
            raise _usage_error(
                f"{name} is not installed here; installed: {', '.join(names) or 'none'}"
            )
    if backend:
        names = tuple(dict.fromkeys(backend))
    program, _ = _compile(file)
    if not installed():
        from nnspec import backends
        from nnspec.extras import backends_hint

        hint = backends_hint(sorted(backends.available()))
        err.print(f"no backend is installed: nothing to compare ({hint})")
        raise typer.Exit(1)
    ok = True
    for d in dtypes:
        try:
            report = compare(program, dtype=d, names=names, steps=steps, batch=batch, seed=seed)
        except RuntimeError as exc:  # an engine's subprocess failed: say which and why
            err.print(f"error: {exc}", markup=False, highlight=False)
            raise typer.Exit(1) from None
        print_report(report)
        ok &= report.ok
    if not ok:
        raise typer.Exit(1)


def print_report(report) -> None:
    """Print a :class:`~nnspec.parity.ParityReport` as a table: one row per compared tensor, one
    column per backend and the reference; in each row ``base`` marks what the others are
    compared with, and a difference over the tolerance reads ``FAIL``."""
    from rich.measure import Measurement

    from nnspec.parity import REFERENCE

    table = Table(
        title=f"Parity, {report.dtype}: outputs against the {REFERENCE}, gradients and training "
        f"against {report.baseline} (max |diff| / max(1, max |base|))",
        title_justify="left",
    )
    columns = [REFERENCE, *report.backends]
    table.add_column("Compared")
    table.add_column("Tensor", overflow="fold")
    for column in columns:
        table.add_column(column, justify="right")
    table.add_column("Tolerance", justify="right")
    rows = list(report.rows())
    # float32 training: each tolerance is derived from both backends' own float32 rounding
    # (their distance to the float64 run of the same recipe), shown beside it.
    derived = any(c.rounding for *_, cells in rows for c in cells.values())
    if derived:
        table.add_column("Own rounding (base + other)", justify="right")
    for what, name, against, cells in rows:
        row = [what, name]
        for column in columns:
            c = cells.get(column)
            if column == against:
                row.append("base")
            elif c is None:
                row.append("")
            else:
                row.append(f"{c.diff:.2e}" if c.ok else f"[red]FAIL {c.diff:.2e}[/]")
        tolerances = dict.fromkeys(f"{c.tolerance:.3g}" for c in cells.values())
        row.append(" / ".join(tolerances))
        if derived:
            own = [
                f"{c.rounding[0]:.2e} + {c.rounding[1]:.2e}" for c in cells.values() if c.rounding
            ]
            row.append(" / ".join(own))
        table.add_row(*row)
    # Never squeezed to the terminal: a wrapped or truncated number would misread.
    natural = Measurement.get(out, out.options.update_width(10_000), table).maximum
    width = out.width
    out.width = max(width, natural)
    try:
        out.print(table)
    finally:
        out.width = width
    verdict = "agree" if report.ok else "DISAGREE"
    who = ", ".join(report.backends)
    out.print(f"{who} and the {REFERENCE} {verdict} in {report.dtype}", markup=False)


class Task(StrEnum):
    """What ``prepare`` makes."""

    classify = "classify"
    language_model = "language-model"


class SideChoice(StrEnum):
    """A padding / truncation side."""

    pre = "pre"
    post = "post"


class SplitChoice(StrEnum):
    """How ``prepare`` splits text into tokens."""

    words = "words"
    whitespace = "whitespace"


@app.command()
def prepare(
    source: Annotated[
        str,
        typer.Argument(help="Training data: a file (.txt .csv .tsv .jsonl .tab) or NAME:SPLIT."),
    ],
    out_file: Annotated[Path, typer.Option("--out", help="The .npz to write.")],
    val: Annotated[str | None, typer.Option(help="Validation data (file or NAME:SPLIT).")] = None,
    test: Annotated[str | None, typer.Option(help="Test data (file or NAME:SPLIT).")] = None,
    spec: Annotated[
        Path | None, typer.Option(help="Take length, vocab size and special tokens from a spec.")
    ] = None,
    input_name: Annotated[
        str | None, typer.Option("--input", help="The spec input (default: its only one).")
    ] = None,
    task: Annotated[
        Task | None,
        typer.Option(help="Default: from the spec; else language-model for unlabelled text."),
    ] = None,
    max_length: Annotated[
        int | None, typer.Option(min=1, help="Ids per text (default: spec, else the longest).")
    ] = None,
    vocab_size: Annotated[
        int | None,
        typer.Option(min=2, help="Exact ids incl. pad and specials (default: spec, else all)."),
    ] = None,
    min_count: Annotated[int, typer.Option(min=1, help="Fewest occurrences for a word.")] = 1,
    special: Annotated[
        list[str] | None,
        typer.Option(help="A special token (repeat; highest ids, in order). Default: <oov>."),
    ] = None,
    oov: Annotated[
        str, typer.Option(help="The special token unknown words become; '' drops them.")
    ] = "<oov>",
    lowercase: Annotated[
        bool | None,
        typer.Option(
            "--lowercase/--no-lowercase", help="Default: lowercase for classify, not for LMs."
        ),
    ] = None,
    split: Annotated[
        SplitChoice | None,
        typer.Option(help="Tokenizer. Default: words for classify, whitespace for LMs."),
    ] = None,
    padding: Annotated[SideChoice, typer.Option(help="Pads after (post) or before.")] = (
        SideChoice.post
    ),
    truncating: Annotated[
        SideChoice, typer.Option(help="Cut long texts at the end (post) or start.")
    ] = SideChoice.post,
    text_column: Annotated[
        str | None, typer.Option(help="Text column (or JSON key); default 'text'.")
    ] = None,
    label_column: Annotated[
        str | None, typer.Option(help="Label column (or JSON key); default 'label'.")
    ] = None,
    memory: Annotated[
        int | None, typer.Option(min=1, help="LM: previous words per example (default 16).")
    ] = None,
    eos: Annotated[
        str, typer.Option(help="LM: token appended to every line ('' for none).")
    ] = "<eos>",
    vocab_out: Annotated[
        Path | None, typer.Option(help="Vocabulary file (default: <out>.vocab.txt).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite existing output files.")] = False,
) -> None:
    """Turn raw text into the token-id .npz (and vocabulary file) a generated train.py reads.

    Built-in sources: 20newsgroups, reuters-r8, reuters-r52 (:train|test), ptb (:train|valid|test).

    Values from --spec are defaults; explicit ones must agree with it.

    Exit codes: 0 written; 1 invalid spec or data, or existing output without --force; 2 usage.
    """
    import time

    from nnspec import datasets
    from nnspec.prepare import OutputExists, PrepareError, prepare_sources
    from nnspec.spec import SpecError

    started = time.perf_counter()
    try:
        result = prepare_sources(
            source,
            out_file,
            val=val,
            test=test,
            spec=spec,
            input_name=input_name,
            task=task.value if task else None,
            max_length=max_length,
            memory=memory,
            text_column=text_column,
            label_column=label_column,
            lowercase=lowercase,
            split=split.value if split else None,
            padding=padding.value,
            truncating=truncating.value,
            eos=eos or None,
            vocab_size=vocab_size,
            min_count=min_count,
            specials=special or None,
            oov=oov or None,
            vocab_out=vocab_out,
            force=force,
        )
    except SpecError as exc:
        for problem in exc.problems:
            err.print(str(problem), markup=False)
        raise typer.Exit(1) from None
    except OSError as exc:
        where = exc.filename or spec or out_file
        raise _usage_error(f"{where}: {exc.strerror or exc}") from None
    except datasets.SourceError as exc:
        raise _usage_error(str(exc)) from None
    except (datasets.DataError, OutputExists) as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(1) from None
    except PrepareError as exc:
        raise _usage_error(str(exc)) from None
    _print_prepared(result, time.perf_counter() - started)
    if spec is not None:
        _print_coverage(spec, result.vocabulary)


def _print_coverage(spec: Path, vocabulary) -> None:
    """How well the pretrained vectors of ``spec``'s tables cover the new vocabulary (the same
    report the generated ``train.py`` prints when it loads them)."""
    import numpy as np

    from nnspec.backends.pretrained_files import pretrained_settings
    from nnspec.compiler import compile_file
    from nnspec.vectors import table_rows

    program, _ = compile_file(spec)
    tokens = list(vocabulary.tokens)
    for name, settings in pretrained_settings(program).items():
        table = program.table(name)
        if table.vocab_size != len(tokens) or settings["vocabulary"] != "vocabulary":
            continue
        try:
            _, coverage = table_rows(settings, tokens, np.zeros((len(tokens), table.dim)), seed=0)
        except (OSError, ValueError) as exc:
            err.print(f"warning: pretrained vectors of table {name!r}: {exc}", markup=False)
            continue
        out.print(coverage.format(), markup=False)


def _print_prepared(result, seconds: float) -> None:
    """The summary of a :class:`~nnspec.prepare.Prepared`."""
    classify = result.task == "classify"
    table = Table(title=f"Prepared {result.task} data", title_justify="left")
    for column in ("Split", "Examples", "Tokens", "OOV", *(["Truncated"] if classify else [])):
        table.add_column(column, justify="left" if column == "Split" else "right")
    for s in result.splits.values():
        row = [s.name, f"{s.examples:,}", f"{s.tokens:,}", f"{s.oov_share:.2%}"]
        table.add_row(*row, *([f"{s.truncated_share:.1%}"] if classify else []))
    out.print(table)
    vocab = result.vocabulary
    words = len(vocab) - len(vocab.specials) - 1
    specials = ", ".join(f"{t}={i}" for t, i in vocab.special_ids.items()) or "none"
    out.print(
        f"vocabulary: {len(vocab):,} ids: pad 0, words 1..{words}, specials {specials}",
        markup=False,
    )
    shape = "x".join(map(str, result.input_shape))
    classes = f", {len(result.label_names)} classes" if classify else ""
    out.print(f"input {result.input_name}: {shape} ids per example{classes}", markup=False)
    for warning in result.warnings:
        err.print(f"warning: {warning}", markup=False)
    arrays = ", ".join(f"{k} {tuple(shape)} {dtype}" for k, (shape, dtype) in result.arrays.items())
    out.print(f"wrote {result.data}: {arrays}", markup=False)
    out.print(f"wrote {result.vocabulary_file} in {seconds:.1f} s", markup=False)


@app.command()
def demo(
    example: Annotated[str, typer.Option(help="Built-in example to run.")] = "newsgroups_flat",
    workdir: Annotated[Path, typer.Option(help="Where to write code, data and runs.")] = Path(
        "runs/demo"
    ),
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs per backend.")] = 2,
) -> None:
    """Run the main job on a built-in example.

    Validates the example, compiles it for both backends, trains each briefly on project-made
    data and prints the parity report. Needs both frameworks: pip install 'nnspec[all]'.
    """
    from nnspec import backends, demo
    from nnspec.builtin_examples import example_names
    from nnspec.extras import backends_hint, missing_modules

    known = example_names()
    if example not in known:
        raise _usage_error(f"unknown example {example!r}; built-in: {', '.join(known)}")
    names = list(backends.available())
    missing = missing_modules(names)
    if missing:
        err.print(
            f"error: nnspec demo trains with {' and '.join(names)}; not installed: "
            f"{', '.join(missing)}: {backends_hint(names)}",
            markup=False,
        )
        raise typer.Exit(1)
    if not demo.run_demo(example, workdir, epochs, out):
        raise typer.Exit(1)


@app.command("import")
def import_model(
    model: Annotated[Path, typer.Argument(help="A .keras, Keras 2 .h5 or JSON model config.")],
    spec_out: Annotated[Path, typer.Option("--out", help="Where to write the spec (YAML).")],
    weights: Annotated[
        Path | None, typer.Option(help="Write the weights here, canonical safetensors.")
    ] = None,
    check: Annotated[
        bool, typer.Option(help="Compare the Keras model with the spec on every backend.")
    ] = False,
    name: Annotated[str | None, typer.Option(help="Spec name (default: the file's stem).")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite existing output files.")] = False,
    trust_lambda: Annotated[
        bool,
        typer.Option(
            help="Run the model's Lambda layers (code from the file) to check a Lambda-made "
            "pad mask on probe ids."
        ),
    ] = False,
) -> None:
    """Import a Keras model as a spec, and its weights in canonical form.

    MODEL is a Keras 3 .keras file, a Keras 2 / tf.keras .h5 file or a JSON model config
    (model.to_json(), no weights). Sequential and functional models are read (several inputs,
    shared layers), without running any of their code. Every layer or option without an exact
    spec form (Lambda, custom layers, regularizers, ...) is an error naming the layer and its
    class: exit 1, nothing written. --check compares the Keras model's outputs with the spec's
    on every installed backend (float32 within 1e-5, float64 within 1e-12); exit 1 over
    tolerance, nothing written."""
    from nnspec.importers import ConfigError, ImportFailed, import_keras

    if not model.is_file():
        raise _usage_error(f"{model}: no such file")
    for target in (spec_out, weights):
        if target is not None and target.exists() and not force:
            raise _usage_error(f"{target} exists (--force to overwrite)")
    try:
        wanted = weights is not None or check
        imported = import_keras(
            model, name=name, weights=wanted, file=str(spec_out), trust_lambda=trust_lambda
        )
    except ConfigError as exc:
        raise _usage_error(str(exc)) from None
    except ImportFailed as exc:
        for problem in exc.problems:
            err.print(f"{model}: {problem}", markup=False)
        err.print(f"{model}: not imported ({len(exc.problems)} problem(s))", markup=False)
        raise typer.Exit(1) from None
    if weights is not None and not imported.has_weights:
        raise _usage_error(f"{model} holds no weights (a JSON config): leave out --weights")
    for note in imported.notes:
        err.print(f"note: {note}", markup=False)
    for warning in imported.warnings:  # lint of the imported spec, e.g. a table without padding
        err.print(warning, markup=False)
    if check and not _import_check(model, imported, trust_lambda):
        raise typer.Exit(1)
    spec_out.write_text(imported.text)
    out_lines = [f"wrote {spec_out}"]
    if weights is not None and imported.weights is not None:
        from safetensors.numpy import save_file

        save_file(imported.weights, str(weights))
        out_lines.append(f"wrote {weights} ({len(imported.weights)} canonical weights)")
    out.print("\n".join(out_lines), markup=False)


def _import_check(model: Path, imported, trust_lambda: bool = False) -> bool:
    """Run and print ``--check`` in float32 and float64; whether every backend agrees with the
    Keras model in both."""
    import nnspec
    from nnspec.importers import converted_weights, load_keras_model
    from nnspec.importers.check import check

    loaded = nnspec.load(imported.text)
    keras_model = load_keras_model(model, safe_mode=not trust_lambda)
    state = imported.weights
    if state is None:  # a JSON config: the Keras model's fresh weights
        state = converted_weights(keras_model, imported.mapped, loaded.program)
    ok = True
    for dtype in ("float32", "float64"):
        report = check(keras_model, loaded.program, state, dtype=dtype)
        _print_import_report(report)
        ok &= report.ok
    return ok


def _print_import_report(report) -> None:
    """One table row per compared output: each backend's scaled difference from the Keras
    model (``FAIL`` over the tolerance)."""
    from nnspec.importers.check import KERAS_ORIGINAL

    table = Table(
        title=f"Import check, {report.dtype}: outputs against the {KERAS_ORIGINAL} model "
        "(max |diff| / max(1, max |keras|), worst of the batches)",
        title_justify="left",
    )
    for column in ("Compared", "Tensor", KERAS_ORIGINAL, *report.backends[1:], "Tolerance"):
        table.add_column(column, justify="left" if column in ("Compared", "Tensor") else "right")
    for what, name, _, cells in report.rows():
        row = [what, name, "base"]
        for backend in report.backends[1:]:
            c = cells[backend]
            row.append(f"{c.diff:.2e}" if c.ok else f"[red]FAIL {c.diff:.2e}[/]")
        row.append(f"{next(iter(cells.values())).tolerance:.3g}")
        table.add_row(*row)
    out.print(table)
    verdict = "agree" if report.ok else "DISAGREE"
    who = ", ".join(report.backends[1:])
    out.print(f"{who} and the {KERAS_ORIGINAL} model {verdict} in {report.dtype}", markup=False)


def run() -> None:
    """Entry point: Ctrl-C exits 130 and a missing optional framework or data package exits 1
    with one line naming the ``pip install`` command, never with a traceback."""
    # nnspec's own pydantic models need no pydantic plugin; looking for them reads the metadata
    # of every installed distribution.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        sys.exit(130)
    except ModuleNotFoundError as exc:
        from nnspec.extras import install_hint

        hint = install_hint(exc.name or "")
        if hint is None:
            raise
        err.print(f"error: {exc.name} is not installed: {hint}", markup=False)
        sys.exit(1)


if __name__ == "__main__":
    run()

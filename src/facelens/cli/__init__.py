"""The ``facelens`` command line: ``facelens COMMAND --help`` explains each command."""

from __future__ import annotations

import argparse
import glob
import math
import sys
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import __version__


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    from .. import bench
    from ..eval import card
    from ..serve import cli as serve_cli
    from . import analyze, batch, evaluate
    from . import experiments as experiments_cli
    from . import explain as explain_cli

    parser = argparse.ArgumentParser(
        prog="facelens",
        description="Offline face analysis: find faces and tell age, gender, ethnicity and facial attributes.",
        epilog="Run 'facelens COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"facelens {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    analyze.register(sub)
    evaluate.register(sub)
    bench.register(sub)
    batch.register(sub)
    card.register(sub)
    serve_cli.register(sub)
    explain_cli.register(sub)
    experiments_cli.register(sub)
    _register_train(sub)
    return parser


def _register_train(sub: argparse._SubParsersAction) -> None:
    """Training commands live in facelens.train (needs the [train] extra); registered only if importable."""
    try:
        from ..train import cli as train_cli
    except ImportError:
        return
    train_cli.add_subcommands(sub)


def number(
    kind: type[int] | type[float], *, low: float | None = None, high: float | None = None, above: bool = False
) -> Callable[[str], int | float]:
    """An argparse ``type`` that reads an int or a finite float and checks its range.

    Args:
        kind: ``int`` or ``float``.
        low: Smallest allowed value (``None``: no lower bound).
        high: Largest allowed value (``None``: no upper bound).
        above: The value must be strictly greater than ``low``.

    Returns:
        A converter that raises :class:`argparse.ArgumentTypeError` (so argparse prints the usage and exits 2).
    """
    what = "an integer" if kind is int else "a number"
    if low is not None and high is not None:
        rule = f"{what} between {low:g} and {high:g}"
    elif low is not None:
        rule = f"{what} {'>' if above else '>='} {low:g}"
    else:
        rule = what

    def convert(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {rule}, not {text!r}") from None
        bad = not math.isfinite(value) or (low is not None and (value <= low if above else value < low))
        if bad or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {rule}, not {text!r}")
        return value

    convert.__name__ = kind.__name__
    return convert


def head_names(text: str) -> list[str]:
    """An argparse ``type`` for ``--heads``: comma-separated model names or ``.onnx`` paths.

    Used with ``action="extend"``, so ``--heads a,b`` and ``--heads a --heads b`` give the same list.
    """
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected NAME[,NAME...] without empty names, not {text!r}")
    return names


def expand_paths(items: Sequence[str], *, must_exist: bool = False) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Expand PATH arguments (files, folders, glob patterns) as :func:`facelens.io.expand_inputs` does.

    Args:
        items: The PATH arguments, in order.
        must_exist: Report a path that does not exist (or a pattern that matches nothing) as a problem instead
            of passing it on (``facelens analyze`` passes it on, to report it as that input's error).

    Returns:
        ``(files, problems)``: each file with its path relative to the folder given (or the fixed leading part
        of the glob pattern; a file given by name: its name), and one message per argument that yields no file.
    """
    from ..io import expand_inputs, link_problem

    files: list[tuple[Path, Path]] = []
    problems: list[str] = []
    for item in items:
        found = list(expand_inputs([item]))
        if must_exist:
            found = [f for f in found if f.exists()]
            if not found and not Path(item).exists() and (not glob.has_magic(item) or not glob.glob(item)):
                why = link_problem(item)
                problems.append(f"{shown(item)}: {why}" if why else f"path not found: {shown(item)}")
                continue
        if not found:
            problems.append(f"no images or videos found in {shown(item)}")
            continue
        base = _base_folder(item)
        for f in found:
            try:
                rel = f.relative_to(base) if base is not None else Path(f.name)
            except ValueError:
                rel = Path(f.name)
            files.append((f, rel if rel.parts and ".." not in rel.parts else Path(f.name)))
    return files, problems


_LINE_BREAKERS = frozenset({"Cc", "Cs", "Zl", "Zp"})
"""Unicode categories that break a line of text output: control characters (newline, tab, escape, DEL...),
lone surrogates (undecodable bytes of a file name) and the line and paragraph separators."""


def shown(text: str) -> str:
    r"""A file name (or message) as printed on one line of human-readable output.

    Ordinary text, including spaces and non-ASCII letters, is returned unchanged. Text with a control character
    (a newline, tab, escape sequence...) is shown as a Python string literal instead, ``'a\nb.jpg'``, so one
    result stays on one line and cannot drive the terminal. JSON and CSV quote by their own rules.

    Args:
        text: The text to print.

    Returns:
        ``text``, or ``repr(text)`` when it holds a character that would break the line.
    """
    return repr(text) if any(unicodedata.category(c) in _LINE_BREAKERS for c in text) else text


def _base_folder(item: str) -> Path | None:
    """The folder a PATH argument's files are named relative to: the folder itself, or a glob's fixed part."""
    if Path(item).is_dir():
        return Path(item)
    if not glob.has_magic(item):
        return None
    parts = Path(item).parts
    n = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    return Path(*parts[:n])


def prepare_output(path: Path, option: str, *, folder: bool = False) -> str | None:
    """Check that an output can be written before any work starts; missing parent folders are created.

    A file that does not exist yet is not left behind: the command creates it when it writes it.

    Args:
        path: The file or folder given on the command line.
        option: The option that named it, for the message (``-o``, ``--annotate``...).
        folder: ``path`` is a folder (``--annotate DIR``), created if missing; else a file.

    Returns:
        ``None`` if ``path`` can be written, else a one-line message naming the option and the path.
    """
    try:
        if folder:
            if path.exists() and not path.is_dir():
                return f"{option} {path}: exists and is not a folder"
            path.mkdir(parents=True, exist_ok=True)
            return None
        if path.is_dir():
            return f"{option} {path}: is a folder, not a file"
        existed = path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8"):
            pass
        if not existed:
            path.unlink()
    except OSError as exc:
        return f"{option} {path}: cannot write it ({exc.strerror or exc})"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``facelens`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what was asked for, e.g. recorded by `train`
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `facelens analyze ... | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``facelens`` command line: ``facelens COMMAND --help`` explains each command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``facelens`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
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

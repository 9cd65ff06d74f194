"""``facelens batch``: resumable bulk analysis on all cores or on Ray."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..io import DEFAULT_MAX_PIXELS


def register(sub: argparse._SubParsersAction) -> None:
    """Add the batch subcommand."""
    p = sub.add_parser(
        "batch",
        help="analyse many images into JSON Lines or Parquet; resumable; multi-process or Ray",
        description="Analyse INPUT (folders, globs, or manifests: .txt with a path per line, .csv/.parquet with "
        "a 'path' column) into OUTPUT (.jsonl file, or a .parquet folder of part files). Inputs already in OUTPUT "
        "are skipped, so an interrupted run continues where it stopped. Prints a summary (images, faces, errors "
        "by kind) as JSON at the end.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="folders, globs, files or manifests")
    p.add_argument("output", type=Path, metavar="OUTPUT", help="results.jsonl or results.parquet (a folder)")
    p.add_argument("--workers", type=int, default=None, help="processes / Ray actors (default: CPU cores)")
    p.add_argument("--engine", choices=["local", "ray"], default="local", help="local processes or Ray Data")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default: start Ray locally)")
    p.add_argument("--heads", nargs="+", metavar="NAME", help="head models to use (default: all installed)")
    p.add_argument("--detect-only", action="store_true", help="skip the attribute heads")
    p.add_argument("--min-score", type=float, default=0.6, help="minimum detection score (default 0.6)")
    p.add_argument("--max-side", type=int, default=640, help="detector working resolution (0 = full size)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="pixel limit per image")
    p.add_argument("--limit", type=int, default=None, help="process at most N new inputs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the batch job; exit status 1 if any image failed."""
    from ..batch import run_batch
    from ..errors import FaceLensError

    settings = {
        "score_threshold": args.min_score,
        "max_side": args.max_side or None,
        "max_pixels": args.max_pixels,
        "heads": () if args.detect_only else (tuple(args.heads) if args.heads else None),
    }
    try:
        summary = run_batch(
            args.inputs, args.output, settings, workers=args.workers, engine=args.engine,
            ray_address=args.ray_address, progress=not args.no_progress, limit=args.limit,
        )  # fmt: skip
    except FaceLensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary.to_dict(), indent=2))
    return 1 if summary.errors else 0

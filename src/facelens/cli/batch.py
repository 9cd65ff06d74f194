"""``facelens batch``: resumable bulk analysis on all cores or on Ray."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..io import DEFAULT_MAX_PIXELS
from . import head_names, number


def register(sub: argparse._SubParsersAction) -> None:
    """Add the batch subcommand."""
    p = sub.add_parser(
        "batch",
        help="analyse many images into JSON Lines or Parquet; resumable; multi-process or Ray",
        description="Analyse INPUT (folders, globs, or manifests: .txt with a path per line, .csv/.parquet with "
        "a 'path' column) into OUTPUT (.jsonl file, or a .parquet folder of part files). Inputs already in OUTPUT "
        "are skipped, so an interrupted run continues where it stopped; an existing OUTPUT that does not hold "
        "batch results is refused. Video files found in folders are skipped (use 'facelens analyze VIDEO'). "
        "Prints a summary (images, faces, errors by kind) as JSON at the end; the exit status is 1 if any image "
        "failed, 2 for a usage or setup error (nothing is written then).",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="folders, globs, files or manifests")
    p.add_argument("output", type=Path, metavar="OUTPUT", help="results.jsonl or results.parquet (a folder)")
    p.add_argument(
        "--workers", type=number(int, low=1), default=None, help="processes / Ray actors (default: the CPU cores)"
    )
    p.add_argument(
        "--engine", choices=["local", "ray"], default="local", help="local processes or Ray Data (default: local)"
    )
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default: start Ray locally)")
    p.add_argument(
        "--heads", type=head_names, action="extend", metavar="NAME[,NAME...]",
        help="head models to use, comma-separated or the flag repeated (default: all installed)",
    )  # fmt: skip
    p.add_argument("--detect-only", action="store_true", help="skip the attribute heads")
    p.add_argument(
        "--min-score",
        type=number(float, low=0.0, high=1.0),
        default=0.6,
        help="minimum detection score, 0-1 (default: 0.6)",
    )
    p.add_argument(
        "--max-side", type=number(int, low=0), default=640,
        help="detector working resolution, longest side in px (default: 640; 0 = full size)",
    )  # fmt: skip
    p.add_argument(
        "--max-pixels", type=number(int, low=1), default=DEFAULT_MAX_PIXELS,
        help=f"refuse images with more pixels than this (default: {DEFAULT_MAX_PIXELS:,})",
    )  # fmt: skip
    p.add_argument(
        "--limit",
        type=number(int, low=0),
        default=None,
        metavar="N",
        help="process at most N new inputs (default: all)",
    )
    p.add_argument(
        "--retry-errors", action="store_true",
        help="re-run inputs whose result in OUTPUT is an error (their error results are removed first)",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the batch job; exit status 1 if any image failed, 2 if the job could not start."""
    from ..batch import run_batch
    from ..errors import FaceLensError

    heads = args.heads or None
    settings = {
        "score_threshold": args.min_score,
        "max_side": args.max_side or None,
        "max_pixels": args.max_pixels,
        "heads": () if args.detect_only else (tuple(heads) if heads else None),
    }
    try:
        summary = run_batch(
            args.inputs, args.output, settings, workers=args.workers, engine=args.engine,
            ray_address=args.ray_address, progress=not args.no_progress, limit=args.limit,
            retry_errors=args.retry_errors,
        )  # fmt: skip
    except FaceLensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if summary.videos_skipped:
        print(
            f"note: skipped {summary.videos_skipped} video file(s) found in folders; batch analyses images "
            "(use 'facelens analyze VIDEO' for videos)",
            file=sys.stderr,
        )
    print(json.dumps(summary.to_dict(), indent=2))
    return 1 if summary.errors else 0

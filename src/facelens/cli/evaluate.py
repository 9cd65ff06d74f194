"""``facelens eval``: measure detection and head quality on datasets."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the eval subcommand and its datasets."""
    p = sub.add_parser("eval", help="evaluate detection or the heads on a dataset; prints JSON metrics")
    esub = p.add_subparsers(dest="dataset", metavar="DATASET")
    w = esub.add_parser(
        "widerface",
        help="detection AP (easy/medium/hard) with the official WIDER FACE protocol",
        description="Runs the detector on every image under ROOT/WIDER_val/images and computes easy/medium/hard "
        "AP (IoU 0.5, ignore lists from ROOT/ground_truth/*.mat) over the images present.",
    )
    w.add_argument("--root", type=Path, required=True, help="WIDER FACE root (with WIDER_val/, ground_truth/)")
    w.add_argument("--max-side", type=int, default=0, help="detector working resolution (0 = original scale)")
    w.add_argument("--upscale", type=float, default=1.0, help="enlarge images before detection")
    w.add_argument("--min-score", type=float, default=0.3, help="detection score threshold (default 0.3)")
    w.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    w.add_argument("-o", "--output", type=Path, help="also write the JSON here")
    w.set_defaults(func=run_widerface)
    p.set_defaults(func=lambda a: (p.print_help(sys.stderr), 2)[1])
    _register_head_evals(esub)


def _register_head_evals(esub: argparse._SubParsersAction) -> None:
    try:
        from ..train import evaluate as head_eval
    except ImportError:
        return
    register = getattr(head_eval, "register", None)
    if register is not None:
        register(esub)


def run_widerface(args: argparse.Namespace) -> int:
    """Evaluate the detector on WIDER FACE and print the JSON result."""
    import time

    from ..detect import create_detector
    from ..errors import FaceLensError
    from ..eval.widerface import evaluate_widerface

    det = create_detector(
        "yunet", score_threshold=args.min_score, max_side=args.max_side or None, upscale=args.upscale, pad="never"
    )

    def detect(image):  # noqa: ANN001, ANN202
        return [(d.box.x1, d.box.y1, d.box.x2, d.box.y2, d.score) for d in det.detect(image)]

    t0 = time.perf_counter()
    try:
        res = evaluate_widerface(args.root, detect, limit=args.limit, progress=sys.stderr.isatty())
    except FaceLensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = res.to_dict()
    out["settings"] = {"detector": "yunet", "max_side": args.max_side or None, "upscale": args.upscale,
                       "min_score": args.min_score}  # fmt: skip
    out["seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(out, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0

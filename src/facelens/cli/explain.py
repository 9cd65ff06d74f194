"""``facelens explain``: Grad-CAM heatmaps and feature maps of a trained checkpoint on one image."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the explain subcommand."""
    p = sub.add_parser(
        "explain",
        help="Grad-CAM heatmaps, feature maps and training curves of a trained checkpoint (needs [train])",
        description="Detect and align the faces of IMAGE as the checkpoint's training did, then write to OUT: the "
        "Grad-CAM heatmap of the chosen head over each aligned face and warped back onto the photo, grids of the "
        "first convolutions' feature maps, explain.json, and training_curves.png when the run folder has a "
        "history.jsonl. HEAD is gender, race or attributes, optionally with :NAME (a class or attribute; default "
        "the top one), or age (the expected age).",
    )
    p.add_argument("image", type=Path, metavar="IMAGE", help="photo to explain")
    p.add_argument(
        "--checkpoint", required=True, type=Path, metavar="CKPT", help="a .pt from 'facelens train' or its run folder"
    )
    p.add_argument(
        "--head", default="gender", metavar="HEAD", help="gender|age|race|attributes[:NAME] (default gender)"
    )
    p.add_argument("--out", type=Path, default=Path("explain"), metavar="DIR", help="output folder (default explain)")
    p.add_argument("--layer", default=None, help="Grad-CAM feature map inside the backbone (default: last conv block)")
    p.add_argument("--feature-layers", type=int, default=3, help="first convolutions to save as grids (default 3)")
    p.add_argument("--no-curves", action="store_true", help="do not plot the training curves")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the explanation; exit status 1 when no face was found, 2 on errors."""
    from ..errors import FaceLensError

    try:
        from ..explain import explain_image

        result = explain_image(
            args.image,
            args.checkpoint,
            head=args.head,
            out_dir=args.out,
            feature_layers=args.feature_layers,
            layer=args.layer,
            curves=not args.no_curves,
        )
    except ImportError as exc:
        print(f"error: facelens explain needs the [train] extra ({exc})", file=sys.stderr)
        return 2
    except (FaceLensError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for f in result.faces:
        prob = "" if f.cam.probability is None else f" (p={f.cam.probability:.3f})"
        print(f"face {f.index}: {f.cam.task} -> {f.cam.target} score {f.cam.score:.3f}{prob}")
    print(f"wrote {len(result.files)} files to {args.out}")
    if not result.faces:
        print("no face found", file=sys.stderr)
        return 1
    return 0

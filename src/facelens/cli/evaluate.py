"""``facelens eval``: measure detection and head quality on datasets."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import expand_paths, number, prepare_output


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
    w.add_argument("--detector", default="yunet", help="detector backend: yunet (default) or trained")
    w.add_argument(
        "--detector-option", dest="detector_options", action="append", default=[], metavar="KEY=VALUE",
        help="backend option, e.g. checkpoint=runs/detector/detector.pt for --detector trained (repeatable)",
    )  # fmt: skip
    w.add_argument(
        "--images", type=Path, help="evaluate only the image paths listed in this file (e.g. a held-out list)"
    )
    w.add_argument(
        "--max-side", type=number(int, low=0), default=0, metavar="PX",
        help="yunet only: working resolution, longest side in px (default 0 = original scale)",
    )  # fmt: skip
    w.add_argument(
        "--upscale", type=number(float, low=0, above=True), default=1.0, metavar="F",
        help="yunet only: enlarge images by F before detection (default 1)",
    )  # fmt: skip
    w.add_argument(
        "--extra-scales", type=number(float, low=0, above=True), nargs="*", default=[], metavar="S",
        help="yunet only: also scan at these scales and merge by box voting, e.g. 0.5 2 (default: none)",
    )  # fmt: skip
    w.add_argument(
        "--accurate", action="store_true", help="yunet only: the accurate mode, same as --extra-scales 0.5 2"
    )
    w.add_argument(
        "--min-score", type=number(float, low=0, high=1), default=0.3, metavar="X",
        help="detection score threshold, 0 to 1 (default 0.3)",
    )  # fmt: skip
    w.add_argument(
        "--limit", type=number(int, low=1), default=None, metavar="N",
        help="evaluate only the first N images (default: all)",
    )  # fmt: skip
    w.add_argument("-o", "--output", type=Path, metavar="FILE", help="also write the JSON to FILE")
    w.set_defaults(func=run_widerface)
    r = esub.add_parser(
        "detection-rate",
        help="share of images in which at least one face is found (e.g. dataset face chips)",
        description="Runs the detector as 'facelens analyze' does (padding tight crops) on every image under the "
        "given folders and prints the share with at least one face and the time per image.",
    )
    r.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders or globs")
    r.add_argument(
        "--min-score", type=number(float, low=0, high=1), default=0.6, metavar="X",
        help="detection score threshold, 0 to 1 (default 0.6)",
    )  # fmt: skip
    r.add_argument(
        "--limit", type=number(int, low=1), default=None, metavar="N",
        help="use only the first N images, sorted by name (default: all)",
    )  # fmt: skip
    r.add_argument(
        "--list-misses", type=Path, metavar="FILE", help="write the paths of the images without a face to FILE"
    )
    r.set_defaults(func=run_detection_rate)
    p.set_defaults(func=lambda a: (p.print_help(sys.stderr), 2)[1])
    _register_head_evals(esub)


_HEAD_EVAL_HELP = {
    "utkface": "age MAE (by decade), age groups, 80% interval coverage, gender, ethnicity, fairness views",
    "celeba": "40-attribute accuracy and ROC-AUC, gender (from the Male attribute)",
    "fgnet": "age MAE by decade and age groups",
    "fairface": "Adience-8 age groups from the FairFace age ranges, gender, ethnicity, fairness views",
    "adience": "Adience-8 exact and 1-off age-group accuracy, gender",
    "lfw": "no labels: detection rate and predicted gender distribution",
}


def _add_split_options(p: argparse.ArgumentParser, what: str) -> None:
    """The options every head evaluation shares: which held-out images, which model."""
    p.add_argument(
        "--recipe", type=Path,
        help="training recipe whose held-out split to reproduce (default: the split settings the exporter stored in "
        "the model, from its actual training run; for older models the recipe named in its metadata). Refused "
        "(exit 2) if it splits the dataset differently from the settings stored in the model",
    )  # fmt: skip
    p.add_argument("--model", help=f"{what} model name or .onnx path (default: every installed model)")
    p.add_argument(
        "--limit", type=number(int, low=1), default=None, metavar="N",
        help="use a seeded random subset of N images (default: all)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the --limit subset (default 0)")
    p.add_argument("-o", "--output", type=Path, help="also write the JSON here")


def _register_head_evals(esub: argparse._SubParsersAction) -> None:
    """Add ``facelens eval utkface|celeba|fgnet|fairface|adience|lfw`` and ``facelens eval peer``."""
    from ..eval.heads import DATASET_NAMES
    from ..eval.peer import INSTALL_HINT, PEER_REQUIREMENT

    for name in DATASET_NAMES:
        about = _HEAD_EVAL_HELP[name]
        p = esub.add_parser(
            name,
            help=f"heads on {name}: {about}".replace("%", "%%"),
            description=f"Runs the full pipeline (detect with padding, align, heads) on every image of a {name} "
            f"split and prints JSON metrics: {about}. Reproduces the model's training split from the settings stored "
            "in it at export (or from --recipe). Every output (-o, --plots, --predictions) is checked before the run.",
        )
        p.add_argument("--root", type=Path, required=True, help=f"{name} dataset folder (reader layout)")
        p.add_argument(
            "--split", choices=("val", "test", "all"), default=None,
            help="which split (default: test for training datasets, val if test is empty; else all)",
        )  # fmt: skip
        _add_split_options(p, "head")
        p.add_argument("--plots", type=Path, help="folder for PNG plots (default: beside -o FILE)")
        p.add_argument(
            "--predictions", type=Path, metavar="FILE.csv",
            help="also write one CSV row per image: labels, face found or error, every answer and its probabilities",
        )  # fmt: skip
        p.add_argument("--no-progress", action="store_true", help="no progress bar (shown only on a terminal)")
        p.set_defaults(func=run_head_eval, eval_dataset=name)
    p = esub.add_parser(
        "peer",
        help=f"facelens vs the PyPI peer {PEER_REQUIREMENT} on the same UTKFace images (age MAE, gender, speed)",
        description=f"Runs facelens and {PEER_REQUIREMENT} (optional; install with: {INSTALL_HINT}) on the same "
        "held-out UTKFace images and prints age MAE, gender accuracy, faces found and ms per image side by side.",
    )
    p.add_argument("--root", type=Path, required=True, help="UTKFace folder")
    p.add_argument(
        "--split", choices=("val", "test", "all"), default="test",
        help="which split (default: test, the held-out split the model card and README report)",
    )  # fmt: skip
    _add_split_options(p, "facelens head")
    p.set_defaults(func=run_peer, eval_dataset="peer")


def command_line(args: argparse.Namespace, split: str) -> str:
    """The canonical ``facelens eval`` command that reproduces a run (stored in the JSON, quoted by the card)."""
    import shlex

    parts = ["facelens", "eval", args.eval_dataset, "--root", str(args.root), "--split", split]
    for flag, value in (("--recipe", args.recipe), ("--model", args.model), ("--limit", args.limit)):
        if value is not None:
            parts += [flag, str(value)]
    if args.seed:
        parts += ["--seed", str(args.seed)]
    if args.output is not None:
        parts += ["-o", str(args.output)]
    return shlex.join(parts)


def _check_outputs(args: argparse.Namespace) -> list[str]:
    """Problems with the output paths of a head or peer evaluation, found before any work (``prepare_output``)."""
    named = {"-o": args.output, "--predictions": getattr(args, "predictions", None)}
    files = {option: path for option, path in named.items() if path is not None}
    problems = [msg for option, path in files.items() if (msg := prepare_output(path, option))]
    if len(files) == 2 and args.output.resolve() == args.predictions.resolve():
        problems.append(f"-o and --predictions name the same file {args.output}")
    if getattr(args, "plots", None) is not None and (msg := prepare_output(args.plots, "--plots", folder=True)):
        problems.append(msg)
    return problems


def _refuse(problems: list[str]) -> int:
    for msg in problems:
        print(f"error: {msg}", file=sys.stderr)
    return 2


def _write_json(text: str, output: Path | None) -> None:
    print(text)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text + "\n", encoding="utf-8")


def run_head_eval(args: argparse.Namespace) -> int:
    """Handler of ``facelens eval DATASET``: print the JSON report; 2 on a dataset or model error."""
    from dataclasses import replace

    from ..errors import FaceLensError
    from ..eval.heads import evaluate_dataset

    if problems := _check_outputs(args):
        return _refuse(problems)
    plots = args.plots or (args.output.parent if args.output is not None else None)
    prefix = args.output.stem if args.output is not None else None
    try:
        report = evaluate_dataset(
            args.eval_dataset, args.root, split=args.split, recipe=args.recipe, model=args.model,
            limit=args.limit, seed=args.seed, plots=plots, plot_prefix=prefix,
            progress=sys.stderr.isatty() and not args.no_progress, predictions=args.predictions,
        )  # fmt: skip
    except FaceLensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = replace(report, command=command_line(args, report.split.split))
    _write_json(json.dumps(report.to_dict(), indent=2), args.output)
    d = report.detection
    if d.errors:
        print(f"{d.errors} of {d.images} image(s) could not be analysed", file=sys.stderr)
    return 1 if d.images and d.errors == d.images else 0


def run_peer(args: argparse.Namespace) -> int:
    """Handler of ``facelens eval peer``: JSON on stdout, the side-by-side table on stderr."""
    from ..errors import FaceLensError
    from ..eval.peer import compare_age_gender

    if problems := _check_outputs(args):
        return _refuse(problems)
    try:
        res = compare_age_gender(
            args.root, split=args.split, recipe=args.recipe, model=args.model, limit=args.limit, seed=args.seed,
            progress=sys.stderr.isatty(), command=command_line(args, args.split),
        )  # fmt: skip
    except FaceLensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _write_json(json.dumps(res.to_dict(), indent=2), args.output)
    print(res.table(), file=sys.stderr)
    return 0


def _parse_options(items: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` strings -> keyword arguments; values that read as numbers or booleans are converted."""
    out: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"detector option {item!r} is not KEY=VALUE")
        value: object = text
        for convert in (int, float):
            try:
                value = convert(text)
                break
            except ValueError:
                continue
        out[key] = {"true": True, "false": False}.get(text.lower(), value)
    return out


def run_widerface(args: argparse.Namespace) -> int:
    """Evaluate the detector on WIDER FACE and print the JSON result."""
    import time

    from ..detect import create_detector
    from ..detect.yunet import ACCURATE_SCALES
    from ..errors import FaceLensError
    from ..eval.widerface import evaluate_widerface

    if args.output and (msg := prepare_output(args.output, "-o")):
        print(f"error: {msg}", file=sys.stderr)
        return 2
    try:
        options = _parse_options(args.detector_options)
        if args.detector == "yunet":
            options = {
                "max_side": args.max_side or None,
                "upscale": args.upscale,
                "pad": "never",
                "extra_scales": ACCURATE_SCALES if args.accurate else tuple(args.extra_scales),
                **options,
            }
        elif args.max_side or args.upscale != 1.0 or args.extra_scales or args.accurate:
            raise FaceLensError("--max-side, --upscale, --extra-scales and --accurate apply to --detector yunet only")
        det = create_detector(args.detector, score_threshold=args.min_score, **options)
        images = None
        if args.images:
            images = [line.strip() for line in args.images.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (FaceLensError, OSError, TypeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def detect(image):  # noqa: ANN001, ANN202
        return [(d.box.x1, d.box.y1, d.box.x2, d.box.y2, d.score) for d in det.detect(image)]

    t0 = time.perf_counter()
    try:
        res = evaluate_widerface(args.root, detect, limit=args.limit, images=images, progress=sys.stderr.isatty())
    except FaceLensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = res.to_dict()
    out["settings"] = {
        "detector": args.detector,
        "detector_options": args.detector_options,
        "images": str(args.images) if args.images else None,
        "max_side": args.max_side or None,
        "upscale": args.upscale,
        "extra_scales": list(ACCURATE_SCALES) if args.accurate else args.extra_scales,
        "min_score": args.min_score,
    }
    out["seconds"] = round(time.perf_counter() - t0, 1)
    _write_json(json.dumps(out, indent=2), args.output)
    return 0


def run_detection_rate(args: argparse.Namespace) -> int:
    """Print the share of images with at least one detected face; 2 if a PATH has no image or an output fails."""
    import time

    from ..detect import create_detector
    from ..errors import FaceLensError
    from ..io import load_image

    files, problems = expand_paths(args.paths, must_exist=True)
    if args.list_misses and (msg := prepare_output(args.list_misses, "--list-misses")):
        problems.append(msg)
    if problems:
        for msg in problems:
            print(f"error: {msg}", file=sys.stderr)
        return 2
    det = create_detector("yunet", score_threshold=args.min_score)
    paths = [f for f, _ in files][: args.limit]
    found = errors = 0
    misses: list[str] = []
    t_detect = 0.0
    for p in paths:
        try:
            img = load_image(p)
        except FaceLensError:
            errors += 1
            continue
        t0 = time.perf_counter()
        n = len(det.detect(img))
        t_detect += time.perf_counter() - t0
        found += n > 0
        if n == 0:
            misses.append(str(p))
    read = len(paths) - errors
    out = {
        "images": len(paths),
        "unreadable": errors,
        "with_face": found,
        "detection_rate": round(found / read, 5) if read else 0.0,
        "ms_per_image": round(1000 * t_detect / read, 2) if read else 0.0,
        "min_score": args.min_score,
    }
    print(json.dumps(out, indent=2))
    if args.list_misses:
        args.list_misses.write_text("".join(m + "\n" for m in misses))
    return 0

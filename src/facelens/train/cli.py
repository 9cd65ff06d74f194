"""Command-line entry points of the training toolkit, for the main ``facelens`` CLI to mount.

Subcommands (each an ``add_*_arguments(parser)`` / ``run_*(args) -> int`` pair taking an argparse namespace)::

    facelens train --config recipes/NAME.yaml [--resume | --overwrite] [--out DIR] [--set key=value ...]
                   [--fast-dev-run] [--cache DIR]
    facelens preprocess --config recipes/NAME.yaml [--set key=value ...] [--force]
    facelens export CHECKPOINT --out model.onnx [--int8] [--test-time-flip] [--calibrate-interval]
                    [--model-version V]
    facelens train-detector --config recipes/detector_NAME.yaml [--resume | --overwrite] [--out DIR] [--set ...]
                            [--fast-dev-run]

:func:`add_subcommands` registers all four on an ``argparse`` sub-parser set. This module imports neither
torch nor the data readers at import time, so mounting it keeps ``facelens --help`` fast. ``python -m
facelens.train`` runs the same commands stand-alone.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from ..errors import FaceLensError

FAST_DEV_RUN_DIR = "fast-dev-run"
"""Sub-folder of the output folder that ``facelens train --fast-dev-run`` writes to (a smoke run never touches the
run in the output folder itself; it replaces an earlier smoke run in the sub-folder)."""


def _add_config_arguments(parser: argparse.ArgumentParser, example: str = "recipes/mtl_mobilenetv2.yaml") -> None:
    parser.add_argument("--config", required=True, help=f"training recipe (YAML), e.g. {example}")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value with a dotted key, e.g. --set optim.lr=0.001 (repeatable)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_run_arguments(
    parser: argparse.ArgumentParser,
    smoke: str,
    example: str = "recipes/mtl_mobilenetv2.yaml",
    resume: str = "continue from OUT/last.pt if it exists",
) -> None:
    """The recipe arguments plus ``--resume`` (help: ``resume``), ``--out`` and ``--fast-dev-run`` (help: ``smoke``)."""
    _add_config_arguments(parser, example)
    parser.add_argument("--resume", action="store_true", help=resume)
    parser.add_argument("--out", default=None, help="output folder (overrides train.out_dir)")
    parser.add_argument("--fast-dev-run", action="store_true", help=f"smoke run: {smoke}")


def _add_overwrite_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh even if OUT already holds a run (its checkpoints), replacing it; without --overwrite "
        "or --resume such a folder is refused",
    )


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``facelens train``."""
    _add_run_arguments(
        parser,
        f"1 epoch of 2 training and 2 validation batches, written to OUT/{FAST_DEV_RUN_DIR}/ (replacing an earlier "
        "smoke run there; the run in OUT itself is never touched)",
        resume="continue the run in OUT from its last.pt (if there is one) with the same recipe: only how long and "
        "where it runs may change (optim.epochs, train.max_minutes, train.patience, train.device, threads, workers...)",
    )
    _add_overwrite_argument(parser)
    parser.add_argument(
        "--cache",
        default=None,
        metavar="DIR",
        help="train on this finished cache folder (images.npy, labels.npz, meta.json, as facelens preprocess "
        "writes them) instead of building or finding the one the recipe describes: e.g. a cache copied to a GPU "
        "machine that has no raw images",
    )


def add_preprocess_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``facelens preprocess``."""
    _add_config_arguments(parser)
    parser.add_argument("--force", action="store_true", help="rebuild even if an up-to-date cache exists")


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``facelens export``."""
    parser.add_argument("checkpoint", help="a .pt checkpoint written by facelens train (best.pt)")
    parser.add_argument("--out", required=True, help="destination .onnx file")
    parser.add_argument(
        "--int8", action="store_true", help="also quantise to int8 (dynamic; MatMul/Gemm only, see DEFAULT_INT8_OPS)"
    )
    parser.add_argument(
        "--test-time-flip",
        action="store_true",
        help="mark the model so that the runtime also runs each face mirrored and averages (2x head time)",
    )
    parser.add_argument(
        "--calibrate-interval",
        action="store_true",
        help="fit the age interval on the validation faces of the checkpoint's training cache so that the 80%% "
        "intervals hold 80%% of true ages there (needs that cache; the expected age does not change)",
    )
    parser.add_argument(
        "--model-version",
        default=None,
        help="version string written into the model's metadata (default: the installed facelens version); give "
        "each retrained weight file its own, so that cached results can tell them apart",
    )


def add_train_detector_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``facelens train-detector``."""
    _add_run_arguments(
        parser,
        f"1 epoch of 2 steps, 2 held-out images, written to OUT/{FAST_DEV_RUN_DIR}/ (replacing an earlier smoke run "
        "there; the run in OUT itself is never touched)",
        "recipes/detector_fasterrcnn_mobilenetv2.yaml",
    )
    _add_overwrite_argument(parser)


def _run_flag_conflict(args: argparse.Namespace) -> str | None:
    """Why ``--resume``, ``--overwrite`` and ``--fast-dev-run`` cannot go together, or None."""
    if args.resume and args.overwrite:
        return "--resume continues the run in OUT and --overwrite replaces it: give one of them"
    if args.resume and args.fast_dev_run:
        return f"--fast-dev-run starts a fresh smoke run in OUT/{FAST_DEV_RUN_DIR}; it cannot be resumed"
    return None


def _load(args: argparse.Namespace, extra: Sequence[str] = ()):  # noqa: ANN202 - TrainConfig, lazily imported
    from .config import load_config

    return load_config(args.config, [*args.overrides, *extra])


def _fail(exc: Exception | str) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 2


def run_train(args: argparse.Namespace) -> int:
    """Run ``facelens train``; returns the process exit code."""
    if problem := _run_flag_conflict(args):
        return _fail(problem)
    extra = []
    if args.out:
        extra.append(f"train.out_dir={args.out}")
    if args.fast_dev_run:
        extra += ["train.fast_dev_run=2", "optim.epochs=1"]
    try:
        config = _load(args, extra)
        if args.fast_dev_run:
            smoke_dir = str(Path(config.train.out_dir) / FAST_DEV_RUN_DIR)
            config = replace(config, train=replace(config.train, out_dir=smoke_dir))
        from .engine import evaluate_checkpoint, train

        progress = not args.no_progress
        overwrite = args.overwrite or args.fast_dev_run  # the smoke sub-folder holds nothing but smoke runs
        argv = getattr(args, "argv", None)  # set by the entry points; export stores it as the model's train_command
        command = shlex.join(["facelens", *argv]) if argv else None
        result = train(
            config, args.resume, progress, args.cache, overwrite=overwrite, require_sources=True, command=command
        )
        summary = {
            "best_checkpoint": str(result.best_checkpoint),
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "stopped": result.stopped,
            "minutes": round(result.wall_seconds / 60.0, 1),
            "best_val": {k: round(v, 4) for k, v in result.best_metrics.items()},
        }
        if not config.train.fast_dev_run and result.best_checkpoint.is_file():
            try:
                test = evaluate_checkpoint(result.best_checkpoint, "test", config.train.device, progress)
                summary["test"] = {k: round(v, 4) for k, v in test.items()}
            except FaceLensError:
                pass  # no test split in this cache
    except (FaceLensError, OSError) as exc:
        return _fail(exc)
    print(json.dumps(summary, indent=2))
    print(f"export with: facelens export {result.best_checkpoint} --out {result.best_checkpoint.parent}/model.onnx")
    return 0


def run_preprocess(args: argparse.Namespace) -> int:
    """Run ``facelens preprocess`` (build the cache only); returns the process exit code."""
    try:
        config = _load(args)
        from .cache import build_cache

        info = build_cache(config, force=args.force, progress=not args.no_progress)
    except (FaceLensError, OSError) as exc:
        return _fail(exc)
    print(
        json.dumps(
            {
                "cache": str(info.path),
                "reused": info.reused,
                "samples": info.n_samples,
                "faces": info.n_faces,
                "no_face": info.no_face,
                "unreadable": info.unreadable,
                "seconds": round(info.seconds, 1),
            },
            indent=2,
        )
    )
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Run ``facelens export``; returns the process exit code."""
    try:
        from .export import export_onnx, read_metadata

        path = export_onnx(
            args.checkpoint,
            args.out,
            version=args.model_version,
            int8=args.int8,
            test_time_flip=args.test_time_flip,
            calibrate_interval=args.calibrate_interval,
        )
        meta = read_metadata(path)
    except (FaceLensError, OSError) as exc:
        return _fail(exc)
    print(f"wrote {path} ({meta.name} {meta.version}, input {meta.input.size}px, outputs {', '.join(meta.tasks)})")
    return 0


def run_train_detector(args: argparse.Namespace) -> int:
    """Run ``facelens train-detector``; returns the process exit code."""
    if problem := _run_flag_conflict(args):
        return _fail(problem)
    extra = [f"train.out_dir={args.out}"] if args.out else []
    if args.fast_dev_run:
        extra += ["train.fast_dev_run=2", "optim.epochs=1"]
    try:
        from .detector import load_detector_config, train_detector

        config = load_detector_config(args.config, [*args.overrides, *extra])
        if args.fast_dev_run:
            smoke_dir = str(Path(config.train.out_dir) / FAST_DEV_RUN_DIR)
            config = replace(config, train=replace(config.train, out_dir=smoke_dir))
        overwrite = args.overwrite or args.fast_dev_run  # the smoke sub-folder holds nothing but smoke runs
        result = train_detector(config, resume=args.resume, progress=not args.no_progress, overwrite=overwrite)
    except (FaceLensError, OSError) as exc:
        return _fail(exc)
    print(json.dumps({"detector": str(result.detector), "stopped": result.stopped, **result.metrics}, indent=2))
    print(
        f"evaluate with: facelens eval widerface --root {config.data.root} --images {result.holdout} "
        f"--detector trained --detector-option checkpoint={result.detector}"
    )
    return 0


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "train": ("train a multi-task face model from a recipe", add_train_arguments, run_train),
    "preprocess": (
        "detect, align and cache the training faces of a recipe",
        add_preprocess_arguments,
        run_preprocess,
    ),
    "export": (
        "export a training checkpoint to ONNX with facelens metadata",
        add_export_arguments,
        run_export,
    ),
    "train-detector": (
        "train a face detector (torchvision Faster R-CNN/FCOS) on WIDER FACE-format annotations, score it on "
        "held-out images and write a checkpoint for the 'trained' detection backend (docs/train-detector.md)",
        add_train_detector_arguments,
        run_train_detector,
    ),
}
"""Subcommand name -> (help, add-arguments function, run function)."""


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Register every command of :data:`COMMANDS` on a sub-parser set; each sets ``args.func``."""
    for name, (help_text, add, run) in COMMANDS.items():
        p = subparsers.add_parser(name, help=help_text, description=help_text)
        add(p)
        p.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (``python -m facelens.train``)."""
    parser = argparse.ArgumentParser(prog="python -m facelens.train", description="facelens training toolkit")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return int(args.func(args))

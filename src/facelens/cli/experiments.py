"""Experiment commands: ``facelens cv``, ``ablate``, ``sweep``, ``transfer`` and ``report``.

Mounted on the main CLI by :func:`register`. This module imports only the standard library; torch, optuna and
mlflow are imported when a command runs. Every command writes a run folder (``--out``, default
``runs/{cv,ablations,sweeps,transfer}/<name>``) holding the exact command (``command.txt``), and running the
same command again resumes it.
"""

from __future__ import annotations

import argparse
import functools
import json
import shlex
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import FaceLensError


def _overrides(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help_text)


def _task_options(p: argparse.ArgumentParser) -> None:
    task_help = "gender (default), race, age, age_group, or a CelebA attribute name such as Male"
    p.add_argument("--task", default="gender", help=task_help)
    p.add_argument("--age-scheme", default="utkface", help="age-group scheme for exact / 1-off (utkface, adience)")
    p.add_argument("--single-task", action="store_true", help="train and select models on the task's labels only")


def _common(p: argparse.ArgumentParser, limits: bool = True) -> None:
    p.add_argument("--config", required=True, help="training recipe (YAML)")
    _overrides(p, "override a recipe value, e.g. --set optim.epochs=3 or --set model.options.grid=3 (repeatable)")
    _task_options(p)
    _run_options(p, limits)


def _run_options(p: argparse.ArgumentParser, limits: bool = True) -> None:
    p.add_argument("--name", default="", help="experiment name (default: from the recipe and options)")
    p.add_argument("--out", default="", help="run folder (default: runs/{cv,ablations,sweeps,transfer}/<name>)")
    p.add_argument(
        "--cache",
        default=None,
        help="use this finished cache folder instead of the recipe's (only read: views go to the run folder's views/)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of folds and subsampling (default 0)")
    if limits:
        p.add_argument("--max-train", type=int, default=None, help="cap on training rows (seeded, stratified)")
        p.add_argument("--max-val", type=int, default=None, help="cap on validation rows")
        p.add_argument("--max-test", type=int, default=None, help="cap on evaluation rows")
    p.add_argument(
        "--tracking", choices=("mlflow", "none"), default="mlflow", help="experiment tracking (default mlflow)"
    )
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default sqlite:///mlruns/mlflow.db)")
    p.add_argument("--no-log-model", action="store_true", help="do not attach best.pt to the MLflow runs")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="start over in the run folder: remove what an earlier experiment wrote there (its own files only; "
        "a folder holding other files is refused) and, for a sweep, its study",
    )
    p.add_argument("--progress", action="store_true", help="show the engine's progress bars")


def add_cv_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``facelens cv``."""
    _common(p, limits=False)
    p.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    p.add_argument("--inner-val", type=float, default=0.1, help="share of training folds held out for selection")
    p.add_argument("--max-samples", type=int, default=None, help="cap on the rows entering the CV")
    p.add_argument("--no-identities", action="store_true", help="do not make folds subject-disjoint")


def add_ablate_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``facelens ablate``."""
    _common(p)
    p.add_argument(
        "--arms",
        default="",
        help="comma-separated augmentation arms (default: all of none, flip, "
        "rotation, brightness_contrast, warp, zoom, all)",
    )
    p.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="compare values of a config key instead (e.g. model.arch=mobilenet_v2,custom_cnn)",
    )


def add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``facelens sweep``."""
    _common(p)
    p.add_argument("--trials", type=int, default=10, help="finished trials to reach (default 10)")
    p.add_argument("--sampler", choices=("tpe", "grid"), default="tpe")
    p.add_argument(
        "--storage",
        default="",
        help="Optuna storage URL (default: sqlite:///OUT/study.db, in the run folder); a study of another "
        "experiment setup is refused",
    )
    p.add_argument("--no-prune", action="store_true", help="disable the median pruner")
    p.add_argument("--best-out", default="", help="also write the best recipe here")


def add_transfer_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``facelens transfer``."""
    p.add_argument("--pretrain", required=True, help="recipe A (pre-training, e.g. CelebA gender)")
    p.add_argument("--finetune", required=True, help="recipe B (fine-tuning and test data, e.g. UTKFace gender)")
    _overrides(p, "override a value in both recipes (repeatable)")
    _task_options(p)
    p.add_argument("--no-gray", action="store_true", help="skip the grayscale arm")
    p.add_argument("--max-pretrain", type=int, default=None, help="cap on recipe A's training rows")
    _run_options(p)


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``facelens report``."""
    p.add_argument("runs", nargs="+", help="experiment run folders")
    p.add_argument("-o", "--output", required=True, help="Markdown file to write (plots go to <stem>_files/)")
    p.add_argument("--title", default="", help="report title")
    p.add_argument("--note", default="", help="paragraph under the title (or @FILE to read it from a file)")


# --- helpers ------------------------------------------------------------------------------------------------


def command_line(args: argparse.Namespace) -> str:
    """The canonical command line of parsed arguments (what reproduces the run), e.g. ``facelens cv --config ...``."""
    parser: argparse.ArgumentParser = args._parser
    words = ["facelens", args._command]
    for action in parser._actions:  # noqa: SLF001 - argparse keeps no public list
        if isinstance(action, argparse._HelpAction) or action.dest.startswith("_"):  # noqa: SLF001
            continue
        value = getattr(args, action.dest, None)
        if not action.option_strings:
            words += [str(v) for v in (value if isinstance(value, list) else [value])]
            continue
        flag = max(action.option_strings, key=len)
        if isinstance(action, argparse._StoreTrueAction):  # noqa: SLF001
            if value:
                words.append(flag)
        elif isinstance(action, argparse._AppendAction):  # noqa: SLF001
            for v in value or []:
                words += [flag, str(v)]
        elif value != action.default and value is not None:
            words += [flag, str(value)]
    return shlex.join(words)


def _load(path: str, overrides: list[str]) -> Any:
    """Load a recipe and check its ``model.options`` now, before any cache is built or model trained."""
    from ..train.config import load_config
    from ..train.models import check_arch_options

    config = load_config(path, overrides)
    check_arch_options(config.model.arch, config.model.options)
    return config


def _limits(args: argparse.Namespace) -> Any:
    from ..experiments.common import Limits

    return Limits(args.max_train, args.max_val, args.max_test, args.seed)


def _out(args: argparse.Namespace, kind: str, name: str) -> Path:
    """The run folder: ``--out``, else ``runs/{cv,ablations,sweeps,transfer}/<name>``."""
    folder = {"cv": "cv", "ablation": "ablations", "sweep": "sweeps", "transfer": "transfer"}[kind]
    return Path(args.out) if args.out else Path("runs") / folder / name


def _check_options(args: argparse.Namespace) -> None:
    """Refuse an unknown ``--task`` / ``--age-scheme`` or an unfinished ``--cache`` before the folder is claimed."""
    from ..experiments.records import ExperimentError
    from ..experiments.selection import get_task

    get_task(args.task, args.age_scheme)
    if args.cache is not None and not (Path(args.cache) / "meta.json").is_file():
        raise ExperimentError(f"--cache {args.cache}: not a finished cache folder (no meta.json)")


def _begin(args: argparse.Namespace, kind: str, name: str, options: dict[str, Any], **recipes: Any) -> tuple[Path, Any]:
    """Open the run folder and the tracker (MLflow experiment ``facelens-<kind>``) of an experiment.

    The folder's setup, which a resumed run must match, is the recipes, the options and the cache. The commands
    check their options before this, so that a command refused for one claims no folder.
    """
    from ..experiments.records import begin_experiment, recipe_dict
    from ..experiments.tracking import create_tracker

    out = _out(args, kind, name)
    setup = {**{k: recipe_dict(v) for k, v in recipes.items()}, "options": options, "cache": args.cache}
    out = begin_experiment(out, kind, name, command_line(args), setup, fresh=args.fresh)
    tracker = create_tracker(args.tracking, args.tracking_uri, f"facelens-{kind}", log_model=not args.no_log_model)
    return out, tracker


def _guarded(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run a command; an error the user can cause is printed and gives exit status 2."""

    @functools.wraps(run)
    def command(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except (FaceLensError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return command


def _done(out: Path) -> int:
    print(f"results: {out / 'summary.json'}\nreport with: facelens report {out} -o docs/experiments/NAME.md")
    return 0


# --- commands -----------------------------------------------------------------------------------------------


@_guarded
def run_cv(args: argparse.Namespace) -> int:
    """Run ``facelens cv``."""
    from ..experiments.cv import CVOptions
    from ..experiments.cv import run_cv as _run

    config = _load(args.config, args.overrides)
    _check_options(args)
    opts = CVOptions(
        args.folds,
        args.task,
        args.seed,
        args.inner_val,
        args.max_samples,
        args.age_scheme,
        not args.no_identities,
        args.single_task,
    )
    name = args.name or f"{config.name}-{args.task}-k{args.folds}"
    out, tracker = _begin(args, "cv", name, asdict(opts), config=config)
    _run(config, opts, out, args.cache, tracker, args.progress)
    return _done(out)


@_guarded
def run_ablate(args: argparse.Namespace) -> int:
    """Run ``facelens ablate``."""
    from ..experiments.ablation import AUGMENT_ARMS, AblationOptions, arm_configs, run_ablation
    from ..train.models import check_arch_options

    config = _load(args.config, args.overrides)
    _check_options(args)
    arms = tuple(a.strip() for a in args.arms.split(",") if a.strip()) or tuple(AUGMENT_ARMS)
    opts = AblationOptions(args.task, arms, tuple(args.vary), _limits(args), args.age_scheme, args.single_task)
    for _, arm in arm_configs(config, opts):  # unknown arms, malformed or impossible --vary: before the folder
        check_arch_options(arm.model.arch, arm.model.options)
    name = args.name or f"{config.name}-{args.task}-" + ("vary" if args.vary else "augment")
    out, tracker = _begin(args, "ablation", name, asdict(opts), config=config)
    run_ablation(config, opts, out, args.cache, tracker, args.progress)
    return _done(out)


@_guarded
def run_sweep(args: argparse.Namespace) -> int:
    """Run ``facelens sweep``."""
    from ..experiments.sweep import SweepOptions, check_study, default_storage, study_fingerprint
    from ..experiments.sweep import run_sweep as _run

    config = _load(args.config, args.overrides)
    _check_options(args)
    name = args.name or f"{config.name}-{args.task}-{args.sampler}"
    opts = SweepOptions(
        name,
        args.trials,
        args.sampler,
        args.task,
        args.storage,
        args.seed,
        not args.no_prune,
        _limits(args),
        age_scheme=args.age_scheme,
        single_task=args.single_task,
    )
    out = _out(args, "sweep", name)
    storage = opts.storage or default_storage(out, name)
    check_study(storage, name, study_fingerprint(config, opts, args.cache), out, args.fresh)  # before claiming out
    out, tracker = _begin(args, "sweep", name, {**asdict(opts), "trials": None}, config=config)  # more --trials later
    summary = _run(config, opts, out, args.cache, tracker, args.progress, fresh=args.fresh)  # extends the sweep
    if args.best_out:
        Path(args.best_out).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "best.yaml", args.best_out)
    print(json.dumps(summary["best"], indent=2))
    return _done(out)


@_guarded
def run_transfer(args: argparse.Namespace) -> int:
    """Run ``facelens transfer``."""
    from ..experiments.common import Limits
    from ..experiments.transfer import TransferOptions
    from ..experiments.transfer import run_transfer as _run

    a = _load(args.pretrain, args.overrides)
    b = _load(args.finetune, args.overrides)
    _check_options(args)
    opts = TransferOptions(
        args.task,
        not args.no_gray,
        Limits(args.max_pretrain, args.max_val, None, args.seed),
        _limits(args),
        args.age_scheme,
        args.single_task,
    )
    name = args.name or f"{a.name}-to-{b.name}-{args.task}"
    out, tracker = _begin(args, "transfer", name, asdict(opts), pretrain=a, finetune=b)
    _run(a, b, opts, out, args.cache, args.cache, tracker, args.progress)
    return _done(out)


@_guarded
def run_report(args: argparse.Namespace) -> int:
    """Run ``facelens report``."""
    from ..experiments.report import render_report
    from . import prepare_output

    output = Path(args.output)
    problem = prepare_output(output, "-o")
    files = output.parent / f"{output.stem}_files"
    if problem is None and (files.exists() or files.is_symlink()) and not files.is_dir():
        problem = f"-o {output}: its plot folder {files} exists and is not a folder"
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    note = args.note
    if note.startswith("@"):
        note = Path(note[1:]).read_text(encoding="utf-8")
    path = render_report(args.runs, args.output, args.title, note, command_line(args))
    print(f"wrote {path}")
    return 0


COMMANDS = {
    "cv": ("k-fold cross-validation of a recipe on one task", add_cv_arguments, run_cv),
    "ablate": ("augmentation ablation (or any one-factor comparison) of a recipe", add_ablate_arguments, run_ablate),
    "sweep": ("Optuna hyper-parameter sweep of a recipe (resumable, pruned)", add_sweep_arguments, run_sweep),
    "transfer": (
        "pre-train on one recipe, fine-tune on another; cross-dataset and grayscale tests",
        add_transfer_arguments,
        run_transfer,
    ),
    "report": ("render experiment run folders as Markdown with plots", add_report_arguments, run_report),
}
"""Subcommand name -> (help, add-arguments function, run function)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Register the experiment subcommands on the main CLI's sub-parser set (each sets ``args.func``)."""
    for name, (help_text, add, run) in COMMANDS.items():
        p = subparsers.add_parser(name, help=help_text, description=help_text)
        add(p)
        p.set_defaults(func=run, _command=name, _parser=p)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m facelens.cli.experiments``), usable before :func:`register` is wired."""
    parser = argparse.ArgumentParser(prog="python -m facelens.cli.experiments", description="facelens experiments")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

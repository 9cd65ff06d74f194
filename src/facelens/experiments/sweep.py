"""Hyper-parameter sweeps with Optuna: TPE or grid sampling, median pruning, SQLite storage, best recipe.

Each trial trains the recipe with sampled values of the learning rate, batch size, weight decay and head
dropout (the shipped heads are linear, so dropout is the head's only capacity knob). The objective is the engine's
validation metric of the task at the best epoch (``gender_acc``, ``race_acc``, ``age_mae`` (minimised),
``male_acc``...). After every epoch the trial reports that metric and Optuna's ``MedianPruner`` may stop it
(from the second epoch on, once two trials have finished; steps are 1-based epochs).

The study is stored in the sweep's own run folder, ``sqlite:///OUT/study.db`` (or at ``--storage``), under the
name NAME, so a rerun of the same command resumes it: finished trials are kept, and a trial that was interrupted
while running is marked failed and enqueued again with its parameters, continuing from its folder's ``last.pt``.
The study records the fingerprint of the experiment setup it was made for (recipe, options but the number of
trials, cache) as its user attribute ``facelens_fingerprint``; a study of another setup is refused, so the
summary and ``best.yaml`` only ever report trials of this sweep. The best trial's configuration is written as a
recipe (``best.yaml``, and ``--best-out``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .common import Limits, experiment_view
from .records import ExperimentError, fingerprint, recipe_dict, write_json
from .runner import read_history, train_and_evaluate, with_out_dir
from .selection import get_task
from .tracking import NullTracker, Tracker


@dataclass(frozen=True)
class SearchSpace:
    """The ranges a sweep samples (TPE) and the values it tries (grid).

    Attributes:
        lr: Learning-rate range (log scale).
        batch_size: Batch sizes.
        weight_decay: Weight-decay range (log scale).
        dropout: Head dropout range.
        grid_lr: Grid values of the learning rate.
        grid_weight_decay: Grid values of the weight decay.
        grid_dropout: Grid values of the dropout.

    """

    lr: tuple[float, float] = (3e-4, 3e-3)
    batch_size: tuple[int, ...] = (32, 64)
    weight_decay: tuple[float, float] = (1e-4, 5e-2)
    dropout: tuple[float, float] = (0.0, 0.5)
    grid_lr: tuple[float, ...] = (5e-4, 1e-3, 2e-3)
    grid_weight_decay: tuple[float, ...] = (1e-3, 1e-2)
    grid_dropout: tuple[float, ...] = (0.1, 0.3)


@dataclass(frozen=True)
class SweepOptions:
    """Options of a sweep.

    Attributes:
        name: Study name (also the folder and database name).
        trials: Number of finished (complete or pruned) trials to reach.
        sampler: ``"tpe"`` or ``"grid"``.
        task: Task whose validation metric is the objective.
        storage: Optuna storage URL; default ``sqlite:///<run folder>/study.db`` (:func:`default_storage`).
        seed: Sampler seed.
        prune: Use the median pruner.
        limits: Row caps.
        space: The search space.
        age_scheme: Age-group scheme.
        single_task: Train and select models on the task's labels only.

    """

    name: str
    trials: int = 10
    sampler: str = "tpe"
    task: str = "gender"
    storage: str = ""
    seed: int = 0
    prune: bool = True
    limits: Limits = Limits()
    space: SearchSpace = SearchSpace()
    age_scheme: str = "utkface"
    single_task: bool = False


def suggest(trial: Any, space: SearchSpace, grid: bool) -> dict[str, Any]:
    """Sample one configuration as ``{override key: value}``."""
    if grid:
        params = {
            "optim.lr": trial.suggest_categorical("optim.lr", list(space.grid_lr)),
            "optim.batch_size": trial.suggest_categorical("optim.batch_size", list(space.batch_size)),
            "optim.weight_decay": trial.suggest_categorical("optim.weight_decay", list(space.grid_weight_decay)),
            "model.dropout": trial.suggest_categorical("model.dropout", list(space.grid_dropout)),
        }
    else:
        params = {
            "optim.lr": trial.suggest_float("optim.lr", *space.lr, log=True),
            "optim.batch_size": trial.suggest_categorical("optim.batch_size", list(space.batch_size)),
            "optim.weight_decay": trial.suggest_float("optim.weight_decay", *space.weight_decay, log=True),
            "model.dropout": trial.suggest_float("model.dropout", *space.dropout),
        }
    return params


def grid_space(space: SearchSpace) -> dict[str, list[Any]]:
    """The grid of :class:`optuna.samplers.GridSampler`."""
    grid: dict[str, list[Any]] = {
        "optim.lr": list(space.grid_lr),
        "optim.batch_size": list(space.batch_size),
        "optim.weight_decay": list(space.grid_weight_decay),
        "model.dropout": list(space.grid_dropout),
    }
    return grid


def apply_params(config: Any, params: dict[str, Any]) -> Any:
    """The recipe with a trial's values."""
    import yaml

    from ..train.config import apply_overrides

    return apply_overrides(
        config, [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}" for k, v in params.items()]
    )


STUDY_FILE = "study.db"
"""The file of a sweep's default study, in its run folder."""

FINGERPRINT_ATTR = "facelens_fingerprint"
"""Study user attribute holding :func:`study_fingerprint` of the setup the study was made for."""


def study_fingerprint(config: Any, options: SweepOptions, cache: str | Path | None = None) -> str:
    """Fingerprint of the experiment a study belongs to: recipe, options (but trials and storage), cache."""
    opts = {k: v for k, v in asdict(options).items() if k not in ("trials", "storage")}
    where = str(Path(cache).resolve()) if cache is not None else None
    return fingerprint({"recipe": recipe_dict(config), "options": opts, "cache": where})


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError as exc:
        raise ExperimentError("optuna is not installed: pip install 'facelens[experiments]'") from exc
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _in_folder(study: Any, out_dir: Path) -> bool:
    """Whether every trial of ``study`` trained (or was to resume) in a folder inside ``out_dir``."""
    root = out_dir.resolve()
    for t in study.get_trials(deepcopy=False):
        where = t.user_attrs.get("out_dir") or t.user_attrs.get("resume_dir") or ""
        if not where or not Path(where).resolve().is_relative_to(root):
            return False
    return True


def _find_study(storage: str, name: str) -> Any | None:
    """The study ``name`` in ``storage``, or None (a SQLite file that does not exist is not created)."""
    optuna = _import_optuna()
    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).exists():
        return None
    if name not in optuna.get_all_study_names(storage):
        return None
    return optuna.load_study(study_name=name, storage=storage)


def default_storage(out_dir: Path, name: str) -> str:
    """``sqlite:///<out_dir>/study.db``, the study in the sweep's own folder.

    A run folder written before the study moved there keeps using its study in ``<out_dir parent>/<name>.db``
    (when it has no ``study.db``, and every trial of that study is in this folder), so it still resumes.
    """
    own = f"sqlite:///{out_dir / STUDY_FILE}"
    legacy = out_dir.parent / f"{name}.db"
    if (out_dir / STUDY_FILE).exists() or not legacy.is_file() or not any(out_dir.glob("trial_*")):
        return own
    try:
        study = _find_study(f"sqlite:///{legacy}", name)
    except Exception:  # noqa: BLE001 - not a readable study: the folder gets its own
        return own
    if study is None or FINGERPRINT_ATTR in study.user_attrs or not study.trials or not _in_folder(study, out_dir):
        return own
    return f"sqlite:///{legacy}"


def check_study(storage: str, name: str, fp: str, out_dir: Path, fresh: bool = False) -> Any | None:
    """The existing study a sweep continues (or, with ``fresh``, replaces), or None; refuse another sweep's.

    A study is this sweep's when it was made for the same setup (``fp``, see :func:`study_fingerprint`). A study
    that records no setup (made before fingerprints were recorded), or with ``fresh`` one of another setup, is
    this sweep's only when all its trials were run in ``out_dir``.

    Args:
        storage: Optuna storage URL.
        name: Study name.
        fp: :func:`study_fingerprint` of this sweep.
        out_dir: The sweep's run folder.
        fresh: The sweep starts over (the study will be deleted).

    Raises:
        ExperimentError: If the study belongs to another sweep.

    """
    study = _find_study(storage, name)
    if study is None:
        return None
    made_for = study.user_attrs.get(FINGERPRINT_ATTR)
    if made_for == fp or ((made_for is None or fresh) and _in_folder(study, out_dir)):
        return study
    why = (
        "it was made for another setup (recipe, options or cache)" if made_for else f"its trials ran outside {out_dir}"
    )
    raise ExperimentError(
        f"the Optuna study {name!r} in {storage} belongs to another sweep: {why}; choose another --name or --storage"
    )


def _requeue_interrupted(study: Any, out_dir: Path) -> int:
    """Enqueue again the trials an interrupted run left behind (RUNNING after a kill, FAIL after Ctrl-C).

    Each such trial is requeued once (the numbers are kept in ``requeued.json``), with its parameters and its
    folder, so the new trial continues that folder's training from ``last.pt``. One process per study: a
    RUNNING trial of another live process would be taken for an interrupted one.
    """
    from optuna.trial import TrialState

    from .records import read_json

    path = out_dir / "requeued.json"
    seen = set(read_json(path)) if path.is_file() else set()
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.FAIL)):
        if t.number in seen:
            continue
        if t.state == TrialState.RUNNING:
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)  # noqa: SLF001
        study.enqueue_trial(t.params, user_attrs={"resume_dir": t.user_attrs.get("out_dir", "")})
        seen.add(t.number)
        n += 1
    write_json(path, sorted(seen))
    return n


def run_sweep(
    config: Any,
    options: SweepOptions,
    out_dir: Path,
    cache: str | Path | None = None,
    tracker: Tracker | None = None,
    progress: bool = False,
    fresh: bool = False,
) -> dict[str, Any]:
    """Run (or resume) a sweep until ``options.trials`` trials have finished; writes ``summary.json``.

    Args:
        config: The recipe.
        options: The sweep's options.
        out_dir: The run folder (its ``study.db`` is the default storage).
        cache: A finished cache folder, or None for the recipe's.
        tracker: Experiment tracker (default: none).
        progress: Show the engine's progress bars.
        fresh: Start over: delete this sweep's existing study first (see :func:`check_study`).

    Raises:
        ExperimentError: If optuna is missing, the sampler is unknown, or the study belongs to another sweep.

    """
    optuna = _import_optuna()
    from optuna.trial import TrialState

    from ..train.config import save_config

    tracker = tracker or NullTracker()
    task = get_task(options.task, options.age_scheme)
    metric, maximize = task.val_metric, task.higher_is_better
    if options.sampler == "tpe":
        sampler = optuna.samplers.TPESampler(seed=options.seed)
    elif options.sampler == "grid":
        sampler = optuna.samplers.GridSampler(grid_space(options.space), seed=options.seed)
    else:
        raise ExperimentError(f"unknown sampler {options.sampler!r}; use tpe or grid")
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)
        if options.prune
        else optuna.pruners.NopPruner()
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    storage = options.storage or default_storage(out_dir, options.name)
    fp = study_fingerprint(config, options, cache)
    if check_study(storage, options.name, fp, out_dir, fresh) is not None and fresh:
        optuna.delete_study(study_name=options.name, storage=storage)
    study = optuna.create_study(
        study_name=options.name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction="maximize" if maximize else "minimize",
        load_if_exists=True,
    )
    if study.user_attrs.get(FINGERPRINT_ATTR) != fp:
        study.set_user_attr(FINGERPRINT_ATTR, fp)
    requeued = _requeue_interrupted(study, out_dir)
    view = experiment_view(config, task, options, out_dir, cache, progress)

    def objective(trial: Any) -> float:
        params = suggest(trial, options.space, options.sampler == "grid")
        resume_dir = trial.user_attrs.get("resume_dir") or ""
        trial_dir = Path(resume_dir) if resume_dir else out_dir / f"trial_{trial.number:04d}"
        trial.set_user_attr("out_dir", str(trial_dir))
        for h in read_history(trial_dir):  # epochs an interrupted run of this trial already did
            if f"val_{metric}" in h:
                trial.report(float(h[f"val_{metric}"]), int(h["epoch"]))
        pruned = {"epoch": 0}

        def on_epoch(epoch: int, metrics: dict[str, float]) -> bool:
            value = metrics.get(f"val_{metric}")
            if value is None or not math.isfinite(value):
                return False
            trial.report(float(value), epoch)
            if trial.should_prune():
                pruned["epoch"] = epoch
                return True
            return False

        cfg = with_out_dir(apply_params(config, params), trial_dir)
        res = train_and_evaluate(
            f"trial {trial.number}",
            cfg,
            view,
            task,
            options.age_scheme,
            tracker,
            progress,
            on_epoch,
            extra={"params": params, "number": trial.number},
            tags={"facelens.kind": "sweep-trial"},
        )
        if res is None:
            trial.set_user_attr("pruned_at_epoch", pruned["epoch"])
            raise optuna.TrialPruned()
        value = res.val.get(metric)
        if value is None:
            raise ExperimentError(f"the validation metrics have no {metric!r} (does the data carry that label?)")
        return float(value)

    done = (TrialState.COMPLETE, TrialState.PRUNED)
    with tracker.run(f"sweep-{options.name}", {"sweep": asdict(options)}, {"facelens.kind": "sweep"}, key_dir=out_dir):
        remaining = options.trials - len(study.get_trials(deepcopy=False, states=done))
        if remaining > 0:
            study.optimize(objective, n_trials=remaining, catch=())
        trials = []
        for t in study.get_trials(deepcopy=False):
            trials.append(
                {
                    "number": t.number,
                    "state": t.state.name,
                    "value": t.value,
                    "params": t.params,
                    "out_dir": t.user_attrs.get("out_dir", ""),
                    "pruned_at_epoch": t.user_attrs.get("pruned_at_epoch"),
                    "epochs": len(t.intermediate_values),
                    "seconds": (t.datetime_complete - t.datetime_start).total_seconds()
                    if t.datetime_complete and t.datetime_start
                    else None,
                }
            )
        complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        if not complete:
            raise ExperimentError("no trial completed")
        best = study.best_trial
        best_cfg = apply_params(config, dict(best.params))
        best_cfg = with_out_dir(best_cfg, Path("runs") / f"{options.name}-best")
        best_cfg = dataclasses.replace(best_cfg, name=f"{config.name}-{options.name}-best")
        save_config(best_cfg, out_dir / "best.yaml")
        tracker.log_metrics({f"best_{metric}": float(best.value)})
    summary = {
        "kind": "sweep",
        "task": task.name,
        "metric": metric,
        "direction": "maximize" if maximize else "minimize",
        "sampler": options.sampler,
        "single_task": options.single_task,
        "storage": storage,
        "requeued": requeued,
        "trials": trials,
        "best": {
            "number": best.number,
            "value": best.value,
            "params": best.params,
            "recipe": str(out_dir / "best.yaml"),
        },
    }
    write_json(out_dir / "summary.json", summary)
    return summary

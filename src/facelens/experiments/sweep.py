"""Hyper-parameter sweeps with Optuna: TPE or grid sampling, median pruning, SQLite storage, best recipe.

Each trial trains the recipe with sampled values of the learning rate, batch size, weight decay and head
dropout (the shipped heads are linear, so dropout is the head's only capacity knob). The objective is the engine's
validation metric of the task at the best epoch (``gender_acc``, ``race_acc``, ``age_mae`` (minimised),
``male_acc``...). After every epoch the trial reports that metric and Optuna's ``MedianPruner`` may stop it
(from the second epoch on, once two trials have finished; steps are 1-based epochs).

The study lives in ``sqlite:///runs/sweeps/NAME.db`` (``--storage``) under the name NAME, so a rerun of the
same command resumes it: finished trials are kept, and a trial that was interrupted while running is marked
failed and enqueued again with its parameters, continuing from its folder's ``last.pt``. The best trial's
configuration is written as a recipe (``best.yaml``, and ``--best-out``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .common import Limits, experiment_view
from .records import ExperimentError, write_json
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
        storage: Optuna storage URL; default ``sqlite:///<out parent>/<name>.db``.
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
) -> dict[str, Any]:
    """Run (or resume) a sweep until ``options.trials`` trials have finished; writes ``summary.json``.

    Raises:
        ExperimentError: If optuna is missing or the sampler is unknown.

    """
    try:
        import optuna
    except ImportError as exc:
        raise ExperimentError("optuna is not installed: pip install 'facelens[experiments]'") from exc
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
    storage = options.storage or f"sqlite:///{out_dir.parent / (options.name + '.db')}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=options.name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction="maximize" if maximize else "minimize",
        load_if_exists=True,
    )
    requeued = _requeue_interrupted(study, out_dir)
    view = experiment_view(config, task, options, cache, progress)

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

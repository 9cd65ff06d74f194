"""Train one model with the engine, evaluate it on a task, and record it: the unit every experiment repeats.

:func:`train_and_evaluate` calls :func:`facelens.train.engine.train` on a cache view, resuming from the
model folder's ``last.pt`` when there is one, then evaluates ``best.pt`` on the view's ``"test"`` rows and
writes ``result.json``. A folder that already has a matching ``result.json`` is not trained again, which is
what makes every experiment resumable model by model.

Per-epoch callbacks (sweep pruning) and the live per-epoch tracking of metrics use the engine's ``on_epoch_end``
hook; transfer fine-tuning uses its ``init_from``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .evaluation import predict, profile_model, task_metrics
from .records import ExperimentError, fingerprint, read_json, recipe_dict, write_json
from .selection import TaskSpec
from .tracking import NullTracker, Tracker

if TYPE_CHECKING:
    from ..train.engine import EpochCallback

STOPPED_BY_CALLBACK = "callback"
"""The engine's ``TrainResult.stopped`` when ``on_epoch_end`` asked it to stop."""


@dataclass(frozen=True)
class ModelResult:
    """One trained and evaluated model (a fold, an ablation arm, a sweep trial, a transfer arm).

    Attributes:
        name: Its name in the experiment.
        out_dir: Folder with checkpoints, ``history.jsonl`` and ``result.json``.
        best_epoch: Epoch of ``best.pt``.
        epochs_run: Epochs trained.
        stopped: Why training ended (the engine's reason).
        train_seconds: Training time summed over epochs (from ``history.jsonl``), excluding validation.
        n_train: Training rows of the view.
        n_val: Validation rows of the view.
        n_test: Evaluated rows of the view (with the task's label).
        val: The engine's validation metrics at the best epoch.
        test: Task metrics of ``best.pt`` on the evaluated rows (empty when there are none).
        profile: :class:`~facelens.experiments.evaluation.ModelProfile` as a dict.
        history: The per-epoch records of ``history.jsonl``.
        extra: Anything experiment-specific (e.g. sweep parameters).

    """

    name: str
    out_dir: str
    best_epoch: int
    epochs_run: int
    stopped: str
    train_seconds: float
    n_train: int
    n_val: int
    n_test: int
    val: dict[str, float]
    test: dict[str, float]
    profile: dict[str, Any]
    history: tuple[dict[str, Any], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelResult:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        data["history"] = tuple(data.get("history", ()))
        return cls(**data)


def read_history(out_dir: str | Path) -> list[dict[str, Any]]:
    """The engine's ``history.jsonl`` records of a model folder (empty when missing)."""
    path = Path(out_dir) / "history.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_engine(
    config: Any,
    cache: Path,
    progress: bool = False,
    on_epoch_end: EpochCallback | None = None,
    init_from: Path | None = None,
) -> Any | None:
    """Train (or resume) with the engine; returns its ``TrainResult``, or None when ``on_epoch_end`` stopped it.

    Args:
        config: The training config.
        cache: The cache (view) to train on.
        progress: Show the engine's progress bars.
        on_epoch_end: The engine's ``on_epoch_end(epoch, metrics)`` (:data:`facelens.train.engine.EpochCallback`).
        init_from: Initialise a fresh run from this checkpoint (the engine's ``init_from``).

    """
    from ..train import engine

    result = engine.train(
        config, resume=True, progress=progress, cache=cache, on_epoch_end=on_epoch_end, init_from=init_from
    )
    return None if result.stopped == STOPPED_BY_CALLBACK else result


def _curve_plot(history: list[dict[str, Any]], metric: str, path: Path) -> Path | None:
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ep = [h["epoch"] for h in history]
    ax.plot(ep, [h.get("train_loss", math.nan) for h in history], "o-", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss")
    key = f"val_{metric}"
    if any(key in h for h in history):
        ax2 = ax.twinx()
        ax2.plot(ep, [h.get(key, math.nan) for h in history], "s--", color="C1", label=key)
        ax2.set_ylabel(key)
    ax.set_title(path.parent.name)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _same_setup(stored: dict[str, Any], setup: dict[str, Any], fp: str) -> bool:
    """Whether a ``result.json`` was written for ``setup``, wherever its view folder was.

    A view's folder name is the hash of its cache, rows and splits; its parent moved from beside the cache to the
    run folder, so a model recorded with the same view in the old place is the same model.
    """
    if stored.get("fingerprint") == fp:
        return True
    old = stored.get("setup")
    if not isinstance(old, dict) or not isinstance(old.get("view"), str):
        return False
    if Path(old["view"]).name != Path(setup["view"]).name:
        return False
    return stored.get("fingerprint") == fingerprint(old) and fingerprint({**old, "view": setup["view"]}) == fp


def train_and_evaluate(
    name: str,
    config: Any,
    view: Path,
    task: TaskSpec,
    age_scheme: str = "utkface",
    tracker: Tracker | None = None,
    progress: bool = False,
    on_epoch_end: EpochCallback | None = None,
    init_from: Path | None = None,
    extra: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
) -> ModelResult | None:
    """Train a model on a view, evaluate ``best.pt`` on the view's test rows, write ``result.json``.

    Args:
        name: Name of the model in its experiment.
        config: Its training config (``train.out_dir`` is the model folder).
        view: Cache view (see :func:`facelens.experiments.selection.make_view`).
        task: Task to evaluate.
        age_scheme: Age-group scheme of the age metrics.
        tracker: Experiment tracker (default: none).
        progress: Show the engine's progress bars.
        on_epoch_end: The engine's ``on_epoch_end(epoch, metrics)``, called after the tracker has logged the
            epoch; returning True stops (the result is then None, no ``result.json`` is written).
        init_from: Initialise the network from this checkpoint (transfer learning).
        extra: Stored in :attr:`ModelResult.extra`.
        tags: Tracking tags.

    Returns:
        The result, or None when ``on_epoch_end`` stopped the training.

    Raises:
        ExperimentError: If the folder holds a result of a different setup.

    """
    from ..train.cache import open_cache

    tracker = tracker or NullTracker()
    out = Path(config.train.out_dir)
    recipe = recipe_dict(config)
    setup = {"config": recipe, "view": str(view), "task": task.name, "init_from": str(init_from)}
    fp = fingerprint(setup)
    result_path = out / "result.json"
    if result_path.is_file():
        stored = read_json(result_path)
        if not _same_setup(stored, setup, fp):
            raise ExperimentError(f"{out} holds a model of another setup; remove it or use another --out")
        return ModelResult.from_dict(stored["result"])
    params = {**recipe, "task": task.name, "init_from": str(init_from or "")}
    with tracker.run(name, params, {"facelens.model": name, **(tags or {})}, key_dir=out):

        def on_epoch(epoch: int, metrics: dict[str, float]) -> bool:
            tracker.log_metrics(metrics, step=epoch)  # live, so pruned and interrupted models show their epochs
            return bool(on_epoch_end is not None and on_epoch_end(epoch, metrics))

        trained = run_engine(config, view, progress, on_epoch, init_from)
        if trained is None:
            return None
        history = read_history(out)
        labels = open_cache(view).labels
        test_rows = np.flatnonzero(labels["split"] == "test")
        test: dict[str, float] = {}
        if len(test_rows) and trained.best_checkpoint.is_file():
            preds = predict(trained.best_checkpoint, view, test_rows)
            test = task_metrics(task, labels, test_rows, preds, age_scheme)
        profile = profile_model(trained.best_checkpoint).to_dict() if trained.best_checkpoint.is_file() else {}
        result = ModelResult(
            name=name,
            out_dir=str(out),
            best_epoch=trained.best_epoch,
            epochs_run=trained.epochs_run,
            stopped=trained.stopped,
            train_seconds=round(sum(float(h.get("train_seconds", 0.0)) for h in history), 1),
            n_train=int((labels["split"] == "train").sum()),
            n_val=int((labels["split"] == "val").sum()),
            n_test=int(test.get("n", 0)),
            val=dict(trained.best_metrics),
            test=test,
            profile=profile,
            history=tuple(history),
            extra=dict(extra or {}),
        )
        tracker.log_metrics({f"test_{k}": v for k, v in test.items()})
        tracker.log_metrics(
            {
                "train_seconds": result.train_seconds,
                **{f"profile_{k}": v for k, v in profile.items() if isinstance(v, (int, float))},
            }
        )
        plot = _curve_plot(history, task.val_metric, out / "curves.png")
        for art in (out / "config.yaml", out / "history.jsonl", plot):
            if art is not None:
                tracker.log_artifact(art)
        if getattr(tracker, "log_model", False):
            tracker.log_artifact(trained.best_checkpoint)
    write_json(result_path, {"fingerprint": fp, "setup": setup, "result": result.to_dict()})
    return result


def with_out_dir(config: Any, out_dir: Path, **sections: Any) -> Any:
    """A copy of ``config`` writing to ``out_dir``; ``sections`` replace whole sections (``augment=...``)."""
    return replace(config, train=replace(config.train, out_dir=str(out_dir)), **sections)

"""Transfer learning, cross-dataset generalisation and grayscale-vs-RGB, on one task.

``facelens transfer --pretrain A --finetune B --task gender`` trains and evaluates these models, each in its
own sub-folder, all evaluated on B's test rows (recipe B's test split of its training sources):

``pretrain``
    Recipe A on its own train / val rows (e.g. CelebA, gender from the ``Male`` attribute); its own test
    numbers are on A's test rows (if A's sources have a test split). Its best checkpoint evaluated on B's test
    rows is reported as ``pretrain_on_b``: the *cross-dataset* result, trained on A's data, tested on B's.
``finetune``
    Recipe B initialised from ``pretrain``'s best checkpoint (all weights whose shapes match).
``scratch``
    Recipe B as it is (its own initialisation), the baseline the fine-tuning is compared with.
``scratch_gray`` (with ``gray``)
    Recipe B trained and tested on grayscale copies of the same rows (luma in all three channels, converted
    when the view is written); ``scratch`` evaluated on those grayscale test rows is reported as
    ``scratch_on_gray``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .common import Limits, metrics_line, resolve_cache, standard_view, views_dir
from .evaluation import predict, task_metrics
from .records import write_json
from .runner import ModelResult, train_and_evaluate, with_out_dir
from .selection import get_task, training_sources
from .tracking import NullTracker, Tracker


@dataclass(frozen=True)
class TransferOptions:
    """Options of a transfer experiment.

    Attributes:
        task: The task (both recipes must carry its label).
        gray: Add the grayscale arm.
        limits_a: Row caps for the pre-training recipe.
        limits_b: Row caps for the fine-tuning recipe (its test rows are everyone's test rows).
        age_scheme: Age-group scheme.
        single_task: Train and select models on the task's labels only.

    """

    task: str = "gender"
    gray: bool = True
    limits_a: Limits = Limits()
    limits_b: Limits = Limits()
    age_scheme: str = "utkface"
    single_task: bool = False


def run_transfer(
    pretrain: Any,
    finetune: Any,
    options: TransferOptions,
    out_dir: Path,
    cache_a: str | Path | None = None,
    cache_b: str | Path | None = None,
    tracker: Tracker | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run (or resume) the transfer experiment; writes ``summary.json``."""
    tracker = tracker or NullTracker()
    task = get_task(options.task, options.age_scheme)
    base_a = resolve_cache(pretrain, cache_a, progress)
    base_b = resolve_cache(finetune, cache_b, progress)
    src_b = training_sources(finetune)
    kw = {"age_scheme": options.age_scheme, "single_task": options.single_task}
    views = views_dir(out_dir)
    view_a = standard_view(pretrain, base_a, task, options.limits_a, views, **kw)
    view_b = standard_view(finetune, base_b, task, options.limits_b, views, **kw)
    results: dict[str, ModelResult] = {}
    evals: dict[str, dict[str, float]] = {}
    with tracker.run(
        f"transfer-{pretrain.name}-to-{finetune.name}",
        {"transfer": asdict(options)},
        {"facelens.kind": "transfer"},
        key_dir=out_dir,
    ):
        results["pretrain"] = _train(pretrain, "pretrain", view_a, task, options, tracker, progress, out_dir)
        evals["pretrain_on_b"] = _evaluate(results["pretrain"], view_b, task, options.age_scheme)
        init = Path(results["pretrain"].out_dir) / "best.pt"
        results["finetune"] = _train(finetune, "finetune", view_b, task, options, tracker, progress, out_dir, init)
        results["scratch"] = _train(finetune, "scratch", view_b, task, options, tracker, progress, out_dir)
        if options.gray:
            view_g = standard_view(finetune, base_b, task, options.limits_b, views, gray=True, **kw)
            results["scratch_gray"] = _train(
                finetune, "scratch_gray", view_g, task, options, tracker, progress, out_dir
            )
            evals["scratch_on_gray"] = _evaluate(results["scratch"], view_g, task, options.age_scheme)
    summary = {
        "kind": "transfer",
        "task": task.name,
        "positive": task.positive,
        "pretrain_recipe": pretrain.name,
        "finetune_recipe": finetune.name,
        "single_task": options.single_task,
        "pretrain_sources": list(training_sources(pretrain)),
        "finetune_sources": list(src_b),
        "models": {k: v.to_dict() for k, v in results.items()},
        "evaluations": evals,
    }
    write_json(out_dir / "summary.json", summary)
    return summary


def _train(
    config: Any,
    name: str,
    view: Path,
    task: Any,
    options: TransferOptions,
    tracker: Tracker,
    progress: bool,
    out_dir: Path,
    init_from: Path | None = None,
) -> ModelResult:
    res = train_and_evaluate(
        name,
        with_out_dir(config, out_dir / name),
        view,
        task,
        options.age_scheme,
        tracker,
        progress,
        init_from=init_from,
        tags={"facelens.kind": f"transfer-{name}"},
    )
    assert res is not None
    print(f"{name}: " + metrics_line(res.test), flush=True)
    return res


def _evaluate(result: ModelResult, view: Path, task: Any, age_scheme: str) -> dict[str, float]:
    from ..train.cache import open_cache

    labels = open_cache(view).labels
    rows = np.flatnonzero(labels["split"] == "test")
    preds = predict(Path(result.out_dir) / "best.pt", view, rows)
    return task_metrics(task, labels, rows, preds, age_scheme)

"""k-fold cross-validation on the training and validation rows of a recipe's cache.

The rows of the recipe's training sources (weight > 0) in the ``train`` and ``val`` splits that carry the
task's label are split into ``k`` folds, stratified on the task (age: on its age group) and subject-disjoint
where the data has identities (:func:`~facelens.experiments.selection.load_identities`). For fold ``i`` the
other folds are the training data, of which ``inner_val`` (default 10%, also stratified and subject-disjoint)
is held out for the engine's model selection and early stopping; fold ``i`` itself is only used to evaluate
the selected checkpoint. The recipe's ``test`` split is not touched.

Folder: ``folds.json`` (the plan, rows per fold), ``fold_01/``... (one model each, see
:func:`~facelens.experiments.runner.train_and_evaluate`), ``summary.json`` (per-fold and mean +- std metrics).
An interrupted CV resumes at the first fold without ``result.json`` (and inside it from ``last.pt``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .common import aggregate, metrics_line, resolve_cache, views_dir
from .records import ExperimentError, read_json, write_json
from .runner import ModelResult, train_and_evaluate, with_out_dir
from .selection import get_task, holdout, kfold, load_identities, make_view, select_rows, strata, training_sources
from .tracking import NullTracker, Tracker


@dataclass(frozen=True)
class CVOptions:
    """Options of a cross-validation.

    Attributes:
        folds: Number of folds (5 or 10 usually).
        task: Task to stratify on and report.
        seed: Seed of the fold assignment and subsampling.
        inner_val: Share of each fold's training rows held out for model selection.
        max_samples: Cap on the rows entering the CV (seeded, stratified); None uses all.
        age_scheme: Age-group scheme.
        identities: Make folds subject-disjoint where identities are known.
        single_task: Train and select models on the task's labels only (other labels hidden in the views).

    """

    folds: int = 5
    task: str = "gender"
    seed: int = 0
    inner_val: float = 0.1
    max_samples: int | None = None
    age_scheme: str = "utkface"
    identities: bool = True
    single_task: bool = False


def plan_folds(config: Any, labels: dict[str, np.ndarray], options: CVOptions) -> dict[str, Any]:
    """Rows of every fold (and its inner validation rows) as JSON-able lists."""
    task = get_task(options.task, options.age_scheme)
    rows = select_rows(
        labels, training_sources(config), ("train", "val"), task, options.max_samples, options.seed, options.age_scheme
    )
    strat_all = strata(labels, task, options.age_scheme)
    ids = load_identities(config, labels, training_sources(config)) if options.identities else None
    folds = kfold(rows, strat_all[rows], options.folds, options.seed, ids)
    plan = []
    for i, test in enumerate(folds):
        rest = np.setdiff1d(rows, test)
        train, val = holdout(rest, strat_all[rest], options.inner_val, options.seed + 1 + i, ids)
        plan.append({"train": train.tolist(), "val": val.tolist(), "test": test.tolist()})
    grouped = ids is not None and any(ids[r] is not None for r in rows)
    return {"n_rows": len(rows), "subject_disjoint": grouped, "folds": plan}


def run_cv(
    config: Any,
    options: CVOptions,
    out_dir: Path,
    cache: str | Path | None = None,
    tracker: Tracker | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run (or resume) a k-fold cross-validation; returns the summary also written to ``summary.json``."""
    from ..train.cache import open_cache

    tracker = tracker or NullTracker()
    task = get_task(options.task, options.age_scheme)
    base = resolve_cache(config, cache, progress)
    labels = open_cache(base).labels
    plan_path = out_dir / "folds.json"
    if plan_path.is_file():
        plan = read_json(plan_path)
        if plan.get("cache") != str(base.resolve()):
            raise ExperimentError(f"{plan_path} was planned on another cache ({plan.get('cache')})")
        if len(plan.get("folds", ())) != options.folds:
            raise ExperimentError(f"{plan_path} plans {len(plan.get('folds', ()))} folds, not {options.folds}")
    else:
        plan = {"cache": str(base.resolve()), **plan_folds(config, labels, options)}
        write_json(plan_path, plan)
    results: list[ModelResult] = []
    with tracker.run(f"cv-{config.name}", {"cv": asdict(options)}, {"facelens.kind": "cv"}, key_dir=out_dir):
        for i, fold in enumerate(plan["folds"]):
            split = np.full(len(labels["split"]), "none", dtype="<U5")
            for name in ("train", "val", "test"):
                split[np.asarray(fold[name], dtype=np.int64)] = name
            view = make_view(base, split, views_dir(out_dir), keep_task=task.name if options.single_task else None)
            fold_dir = out_dir / f"fold_{i + 1:02d}"
            res = train_and_evaluate(
                f"fold {i + 1}",
                with_out_dir(config, fold_dir),
                view,
                task,
                options.age_scheme,
                tracker,
                progress,
                tags={"facelens.kind": "cv-fold"},
            )
            assert res is not None  # no callback, so never stopped early
            results.append(res)
            print(f"fold {i + 1}/{len(plan['folds'])}: " + metrics_line(res.test), flush=True)
        summary = {
            "kind": "cv",
            "task": task.name,
            "positive": task.positive,
            "folds": options.folds,
            "n_rows": plan["n_rows"],
            "subject_disjoint": plan["subject_disjoint"],
            "single_task": options.single_task,
            "per_fold": [r.to_dict() for r in results],
            "mean_std": aggregate(results),
            "val_mean_std": aggregate(results, "val"),
        }
        tracker.log_metrics({f"{k}_mean": v["mean"] for k, v in summary["mean_std"].items()})
    write_json(out_dir / "summary.json", summary)
    return summary

"""Shared plumbing of the experiment commands: resolving the cache, building views, aggregating results."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .evaluation import mean_std
from .records import ExperimentError
from .runner import ModelResult
from .selection import SPLITS, TaskSpec, make_view, select_rows, training_sources


@dataclass(frozen=True)
class Limits:
    """Seeded, stratified caps on the rows an experiment uses (None: all).

    Attributes:
        max_train: Training rows.
        max_val: Validation rows.
        max_test: Evaluation rows.
        seed: Subsampling seed.

    """

    max_train: int | None = None
    max_val: int | None = None
    max_test: int | None = None
    seed: int = 0


def resolve_cache(config: Any, cache: str | Path | None = None, progress: bool = False) -> Path:
    """The cache folder to use: ``cache`` when given, else the recipe's (built or reused by the engine's code)."""
    if cache is not None:
        path = Path(cache)
        if not (path / "meta.json").is_file():
            raise ExperimentError(f"{path} is not a finished cache folder (no meta.json)")
        return path
    from ..train.cache import build_cache

    return build_cache(config, progress=progress).path


def views_dir(out_dir: str | Path) -> Path:
    """Where an experiment writes its cache views: ``<run folder>/views``.

    Views live in the experiment's own folder, never beside the cache (which may be shared, or read-only), and
    ``--fresh`` removes them with the rest of the experiment. A view is small (a ``labels.npz`` and a link to the
    cache's ``images.npy``), except a grayscale one, which holds gray copies of the rows it uses.
    """
    return Path(out_dir) / "views"


def standard_view(
    config: Any,
    cache: Path,
    task: TaskSpec,
    limits: Limits,
    views: str | Path,
    test_sources: tuple[str, ...] | None = None,
    gray: bool = False,
    age_scheme: str = "utkface",
    single_task: bool = False,
) -> Path:
    """A view with the recipe's train / val / test splits restricted to the task's rows and capped by ``limits``.

    Args:
        config: Recipe; training rows come from its sources with weight > 0.
        cache: The cache.
        task: Only rows with this task's label are used.
        limits: Row caps.
        views: Folder of the views (:func:`views_dir` of the run folder).
        test_sources: Sources of the evaluation rows (default: the training sources).
        gray: Grayscale view.
        age_scheme: Scheme used to stratify age subsampling.
        single_task: Train and validate on the task's labels only (others are marked missing in the view).

    """
    from ..train.cache import open_cache

    labels = open_cache(cache).labels
    sources = training_sources(config)
    split = np.full(len(labels["split"]), "none", dtype="<U5")
    for name, srcs, cap in (
        ("train", sources, limits.max_train),
        ("val", sources, limits.max_val),
        ("test", test_sources or sources, limits.max_test),
    ):
        rows = select_rows(labels, srcs, (name,), task, cap, limits.seed, age_scheme)
        split[rows] = name
    if not (split == "train").any():
        raise ExperimentError(f"no training rows with a {task.name!r} label in the sources {list(sources)}")
    return make_view(cache, split, views, gray=gray, keep_task=task.name if single_task else None)


def experiment_view(
    config: Any,
    task: TaskSpec,
    options: Any,
    out_dir: str | Path,
    cache: str | Path | None = None,
    progress: bool = False,
) -> Path:
    """The :func:`standard_view` every model of an ablation or a sweep trains on.

    Args:
        config: Recipe.
        task: The task.
        options: The experiment's options, with ``limits``, ``age_scheme`` and ``single_task``.
        out_dir: The run folder (the view goes to its ``views/``).
        cache: A finished cache folder, or None for the recipe's (see :func:`resolve_cache`).
        progress: Show progress while a cache is built.

    """
    base = resolve_cache(config, cache, progress)
    return standard_view(
        config,
        base,
        task,
        options.limits,
        views_dir(out_dir),
        age_scheme=options.age_scheme,
        single_task=options.single_task,
    )


def metrics_line(metrics: dict[str, Any]) -> str:
    """``"accuracy 0.7500, roc_auc 0.8000"``: the metrics of a progress line (no ``n``; a missing value is ``nan``).

    A result read back from ``result.json`` has ``None`` where a metric was NaN.
    """
    return ", ".join(
        f"{k} {v:.4f}" if isinstance(v, (int, float)) else f"{k} nan" for k, v in metrics.items() if k != "n"
    )


def aggregate(results: list[ModelResult], section: str = "test") -> dict[str, dict[str, float]]:
    """Mean and sample std of every numeric metric over models: ``{metric: {"mean": m, "std": s}}``."""
    keys: list[str] = []
    for r in results:
        keys += [k for k in getattr(r, section) if k not in keys]
    out = {}
    for k in keys:
        m, s = mean_std([getattr(r, section).get(k, math.nan) for r in results])
        out[k] = {"mean": m, "std": s}
    return out


__all__ = [
    "SPLITS",
    "Limits",
    "aggregate",
    "experiment_view",
    "metrics_line",
    "resolve_cache",
    "standard_view",
    "views_dir",
]

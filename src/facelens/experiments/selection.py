"""Which cache rows an experiment uses: tasks and their labels, subsets, folds, and cache views.

The training engine trains on the rows whose ``split`` is ``"train"`` and validates on ``"val"``. Instead of
changing the engine, an experiment writes a *view* of the cache: a folder with the same ``images.npy``
(a symbolic link, so no image is copied) and a ``labels.npz`` whose ``split`` column says what this run uses
(``"train"``, ``"val"``, ``"test"`` for the rows the experiment evaluates on, ``"none"`` for the rest). Views
live under ``<data.cache_dir>/views/<hash>/`` beside the cache they derive from, never in a run folder. A
grayscale view is the exception: it holds a converted copy of only the rows it uses.

Does not import torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..labels import AGE_GROUP_SCHEMES, CELEBA_ATTRIBUTES, GENDERS, RACES, age_group, age_group_label
from .records import ExperimentError

SPLITS = ("train", "val", "test", "none")


@dataclass(frozen=True)
class TaskSpec:
    """A prediction task that experiments stratify on and report.

    Attributes:
        name: ``gender``, ``race``, ``age``, ``age_group`` or a CelebA attribute name (``Smiling``...).
        kind: ``"binary"``, ``"multiclass"`` or ``"age"``.
        classes: Class names in label order (age: the group labels of the scheme).
        val_metric: The engine's validation metric that tracks this task (model selection, sweeps, pruning).
        higher_is_better: Direction of ``val_metric``.
        positive: For binary tasks, the class treated as positive in TPR/FPR/precision/ROC-AUC.

    """

    name: str
    kind: str
    classes: tuple[str, ...]
    val_metric: str
    higher_is_better: bool = True
    positive: str = ""


def get_task(name: str, age_scheme: str = "utkface") -> TaskSpec:
    """Look up a task by name.

    Raises:
        ExperimentError: For an unknown task or age-group scheme.

    """
    if age_scheme not in AGE_GROUP_SCHEMES:
        raise ExperimentError(f"unknown age-group scheme {age_scheme!r}; known: {', '.join(AGE_GROUP_SCHEMES)}")
    if name == "gender":
        return TaskSpec("gender", "binary", GENDERS, "gender_acc", True, GENDERS[1])
    if name == "race":
        return TaskSpec("race", "multiclass", RACES, "race_acc")
    if name in ("age", "age_group"):
        groups = tuple(age_group_label(lo, hi) for lo, hi in AGE_GROUP_SCHEMES[age_scheme])
        return TaskSpec(name, "age", groups, "age_mae", False)
    if name in CELEBA_ATTRIBUTES:
        metric = "male_acc" if name == "Male" else "attr_acc"
        return TaskSpec(name, "binary", ("no", "yes"), metric, True, "yes")
    raise ExperimentError(f"unknown task {name!r}; use gender, race, age, age_group or a CelebA attribute name")


def task_target(labels: dict[str, np.ndarray], task: TaskSpec) -> np.ndarray:
    """The task's label per row: class index (int64, -1 = missing) or age in years (float64, NaN = missing)."""
    if task.kind == "age":
        return labels["age"].astype(np.float64)
    if task.name in ("gender", "race"):
        return labels[task.name].astype(np.int64)
    return labels["attributes"][:, CELEBA_ATTRIBUTES.index(task.name)].astype(np.int64)


def has_label(labels: dict[str, np.ndarray], task: TaskSpec) -> np.ndarray:
    """Boolean mask of the rows that carry the task's label."""
    y = task_target(labels, task)
    return ~np.isnan(y) if task.kind == "age" else y >= 0


def strata(labels: dict[str, np.ndarray], task: TaskSpec, age_scheme: str = "utkface") -> np.ndarray:
    """Stratification class per row: the label, or for age tasks the age group (-1 where missing)."""
    y = task_target(labels, task)
    if task.kind != "age":
        return y
    out = np.full(len(y), -1, dtype=np.int64)
    ok = ~np.isnan(y)
    out[ok] = [age_group(float(a), age_scheme) for a in y[ok]]
    return out


def training_sources(config: Any) -> tuple[str, ...]:
    """Source ids of a recipe that training draws from (weight > 0)."""
    return tuple(s.key for s in config.data.datasets if s.weight > 0)


def select_rows(
    labels: dict[str, np.ndarray],
    sources: tuple[str, ...],
    splits: tuple[str, ...],
    task: TaskSpec | None = None,
    limit: int | None = None,
    seed: int = 0,
    age_scheme: str = "utkface",
) -> np.ndarray:
    """Rows of the given sources and splits (with the task's label, if a task is given), optionally subsampled.

    Subsampling to ``limit`` rows is seeded and stratified on the task when every class has at least two rows.

    Returns:
        Sorted row indices.

    """
    mask = np.isin(labels["split"], splits) & np.isin(labels["dataset"], sources)
    if task is not None:
        mask &= has_label(labels, task)
    rows = np.flatnonzero(mask)
    if limit is None or limit >= len(rows):
        return rows
    rng = np.random.default_rng([seed, 7])
    if task is None:
        return np.sort(rng.choice(rows, limit, replace=False))
    strat = strata(labels, task, age_scheme)[rows]
    picked: list[np.ndarray] = []
    for c in np.unique(strat):  # proportional allocation by largest remainder
        members = rows[strat == c]
        picked.append(rng.permutation(members))
    shares = np.array([len(p) for p in picked], dtype=np.float64) * limit / len(rows)
    take = np.floor(shares).astype(int)
    for i in np.argsort(-(shares - take))[: limit - int(take.sum())]:
        take[i] += 1
    return np.sort(np.concatenate([p[:t] for p, t in zip(picked, take, strict=True)]))


# --- identities and folds ----------------------------------------------------------------------------------


def load_identities(
    config: Any, labels: dict[str, np.ndarray], sources: tuple[str, ...] | None = None
) -> np.ndarray | None:
    """Subject id per cache row, or None when no row has one.

    A cache with an ``identity`` column is used as is; otherwise every source of the recipe is read again with
    its dataset reader (:func:`facelens.data.create_dataset`) and ``source_index`` is mapped to the sample's
    ``identity``. A source whose reader cannot be loaded contributes no identities. ``sources`` limits the
    readers to those source ids.
    """
    if "identity" in labels:
        ids = labels["identity"].astype(object)
        ids[ids == ""] = None
        return ids if any(i is not None for i in ids) else None
    from .. import data as data_pkg
    from ..errors import FaceLensError

    ids = np.full(len(labels["split"]), None, dtype=object)
    for spec in config.data.datasets:
        rows = np.flatnonzero(labels["dataset"] == spec.key)
        if len(rows) == 0 or (sources is not None and spec.key not in sources):
            continue
        try:
            samples = data_pkg.create_dataset(spec.name, spec.path, **spec.options).load().samples
        except (FaceLensError, OSError) as exc:
            warnings.warn(f"identities of {spec.key!r} unavailable ({exc}); folds ignore subjects there", stacklevel=2)
            continue
        for r in rows:
            ident = samples[int(labels["source_index"][r])].identity
            ids[r] = None if ident is None else f"{spec.key}:{ident}"
    return ids if any(i is not None for i in ids) else None


def _groups(ids: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    """Integer group per row for subject-disjoint splitting (rows without an identity form their own group)."""
    if ids is None:
        return None
    sub = ids[rows]
    if all(i is None for i in sub):
        return None
    keys = [f"row:{r}" if i is None else str(i) for r, i in zip(rows, sub, strict=True)]
    _, inverse = np.unique(np.array(keys), return_inverse=True)
    return inverse


def kfold(rows: np.ndarray, strat: np.ndarray, k: int, seed: int, ids: np.ndarray | None = None) -> list[np.ndarray]:
    """Split ``rows`` into ``k`` stratified folds; subject-disjoint when ``ids`` gives identities.

    Args:
        rows: Cache rows.
        strat: Stratification class of each of those rows (same length).
        k: Number of folds (>= 2).
        seed: Shuffling seed.
        ids: Identity per CACHE row (None entries: unknown subject), or None.

    Returns:
        The held-out rows of each fold (sorted); together they partition ``rows``.

    """
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    groups = _groups(ids, rows)
    n_units = len(rows) if groups is None else len(np.unique(groups))
    if k < 2 or k > n_units:
        raise ExperimentError(f"cannot make {k} folds of {len(rows)} rows ({n_units} subjects or rows)")
    stratify = np.unique(strat, return_counts=True)[1].max() >= k  # else no class can be spread over k folds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has only n members"
        if groups is not None:
            splitter = (
                StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
                if stratify
                else GroupKFold(n_splits=k, shuffle=True, random_state=seed)
            )
            parts = [test for _, test in splitter.split(rows, strat, groups)]
        else:
            splitter = (
                StratifiedKFold(k, shuffle=True, random_state=seed)
                if stratify
                else KFold(k, shuffle=True, random_state=seed)
            )
            parts = [test for _, test in splitter.split(rows, strat)]
    return [np.sort(rows[p]) for p in parts]


def holdout(
    rows: np.ndarray, strat: np.ndarray, fraction: float, seed: int, ids: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split off about ``fraction`` of ``rows`` (stratified, subject-disjoint where possible).

    Returns:
        ``(kept, held_out)`` row arrays.

    """
    if fraction <= 0:
        return rows, rows[:0]
    groups = _groups(ids, rows)
    units = len(rows) if groups is None else len(np.unique(groups))
    if units < 2:
        return rows, rows[:0]
    k = max(2, min(units, round(1.0 / fraction)))
    held = kfold(rows, strat, k, seed, ids)[0]
    return np.setdiff1d(rows, held), held


# --- views ------------------------------------------------------------------------------------------------


def gray_images(rgb: np.ndarray) -> np.ndarray:
    """Grayscale copies of uint8 ``(..., 3)`` RGB images, the gray value repeated in all three channels.

    Uses the zoo's channel helpers (:func:`facelens.train.channels.intensity` and ``gray_to_rgb``: option (a)
    there, which needs no model change) when they exist, else ITU-R BT.601 luma.
    """
    try:
        from ..train.channels import gray_to_rgb, intensity
    except ImportError:
        y = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
        return np.repeat(np.clip(np.rint(y), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    return gray_to_rgb(intensity(np.asarray(rgb, dtype=np.uint8)))


def keep_only(labels: dict[str, np.ndarray], task: str) -> dict[str, np.ndarray]:
    """Labels with every task but ``task`` marked missing, so the engine trains and validates that task alone.

    ``age`` and ``age_group`` keep the age; ``gender`` and ``race`` keep their column; an attribute name keeps
    that attribute column of ``attributes`` only.
    """
    out = dict(labels)
    if task not in ("age", "age_group"):
        out["age"] = np.full_like(labels["age"], np.nan)
    for col in ("gender", "race"):
        if task != col:
            out[col] = np.full_like(labels[col], -1)
    attrs = np.full_like(labels["attributes"], -1)
    if task in CELEBA_ATTRIBUTES:
        i = CELEBA_ATTRIBUTES.index(task)
        attrs[:, i] = labels["attributes"][:, i]
    out["attributes"] = attrs
    return out


def make_view(
    base: str | Path, split: np.ndarray, views_dir: str | Path, gray: bool = False, keep_task: str | None = None
) -> Path:
    """Write (or reuse) a view of a cache with a new ``split`` column.

    Args:
        base: A finished cache folder (``images.npy``, ``labels.npz``, ``meta.json``).
        split: New split per row of ``base`` (values of :data:`SPLITS`).
        views_dir: Parent folder of views (an experiment's ``<run folder>/views``).
        gray: Store grayscale copies of the used rows (split not ``"none"``) instead of linking the images.
        keep_task: Mark every other task's labels missing (single-task training, see :func:`keep_only`).

    Returns:
        The view folder, usable as a cache by the engine and by :func:`facelens.train.cache.open_cache`. Its
        ``labels.npz`` has a ``base_row`` column (row of ``base``).

    """
    base = Path(base).resolve()
    split = np.asarray(split).astype("<U5")
    bad = sorted(set(np.unique(split).tolist()) - set(SPLITS))
    if bad:
        raise ExperimentError(f"unknown split value(s) {bad} in a view")
    h = hashlib.sha256(f"{base}|{gray}|{keep_task}|".encode() + split.tobytes()).hexdigest()[:16]
    out = Path(views_dir) / h
    if (out / "meta.json").is_file():
        return out
    tmp = out.with_name(out.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    with np.load(base / "labels.npz") as z:
        labels = {k: z[k] for k in z.files}
    if len(split) != len(labels["split"]):
        raise ExperimentError(f"a view of {base} needs {len(labels['split'])} split values, got {len(split)}")
    labels["split"] = split
    if keep_task:
        labels = keep_only(labels, keep_task)
    if gray:
        rows = np.flatnonzero(split != "none")
        src = np.load(base / "images.npy", mmap_mode="r")
        dst = np.lib.format.open_memmap(
            tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(len(rows),) + src.shape[1:]
        )
        for s in range(0, len(rows), 1024):
            dst[s : s + 1024] = gray_images(np.asarray(src[rows[s : s + 1024]]))
        dst.flush()
        del dst
        labels = {k: v[rows] for k, v in labels.items()}
        labels["base_row"] = rows.astype(np.int64)
    else:
        link = tmp / "images.npy"
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(base / "images.npy", link)
        labels["base_row"] = np.arange(len(split), dtype=np.int64)
    np.savez(tmp / "labels.npz", **labels)
    meta = json.loads((base / "meta.json").read_text())
    meta.update(
        view_of=str(base), gray=gray, keep_task=keep_task, splits={s: int((labels["split"] == s).sum()) for s in SPLITS}
    )
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    if out.exists():  # a concurrent writer finished first
        return out
    os.replace(tmp, out)
    return out

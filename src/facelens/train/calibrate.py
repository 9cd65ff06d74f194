"""Calibrate the age interval of a trained model on the validation faces of its training cache.

A model's 80% interval (the central 80% of its predicted age distribution) holds the true age of 80% of faces
only if the distribution is calibrated, and it rarely is exactly: the last two shipped trainings (112 and 128 px)
covered 79.3% and 84.2% of the UTKFace test faces. :func:`fit_interval_mass` picks, on held-out faces, the central
mass whose intervals hold the nominal share of true ages (split-conformal calibration of the interval width);
the exporter stores it in the model's metadata (``interval_mass``) and the runtime answers with it. The expected
age, and so the MAE, does not change.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..eval.metrics import interval_coverage
from ..heads.runtime import age_intervals
from .config import ConfigError

MASS_GRID = np.round(np.arange(0.50, 0.995, 0.005), 3)
"""Central masses :func:`fit_interval_mass` considers (0.5 to 0.99 in steps of 0.005)."""


def fit_interval_mass(probs: np.ndarray, ages: np.ndarray, age_min: int, coverage: float = 0.8) -> float:
    """Smallest central mass whose intervals hold at least ``coverage`` of the true ages.

    Coverage is counted as ``facelens eval`` reports it (:func:`facelens.eval.metrics.interval_coverage`).

    Args:
        probs: ``(N, K)`` predicted age distributions of held-out faces.
        ages: ``(N,)`` their true ages.
        age_min: Year of the first bin.
        coverage: The share of true ages the intervals should hold.

    Returns:
        A value of :data:`MASS_GRID` (its largest if none reaches ``coverage``).

    Raises:
        ConfigError: If there are no faces.

    """
    ages = np.asarray(ages, np.float64)
    if len(ages) == 0:
        raise ConfigError("no faces with an age label to calibrate the age interval on")
    for mass in MASS_GRID:
        _, lo, hi = age_intervals(probs, age_min, float(mass))
        if interval_coverage(ages, lo, hi, coverage).coverage >= coverage:
            return float(mass)
    return float(MASS_GRID[-1])


def validation_age_probs(checkpoint: str | Path, split: str = "val") -> tuple[np.ndarray, np.ndarray]:
    """Predicted age distributions and true ages of the faces of one split of a checkpoint's training cache.

    Returns:
        ``(probs, ages)``: ``(N, K)`` softmax probabilities and ``(N,)`` ages, for the faces with an age label.

    Raises:
        ConfigError: If the cache is gone or that split has no face with an age label.

    """
    import torch

    from .batches import CacheBatches
    from .cache import open_cache
    from .engine import iter_outputs, load_checkpoint

    model, config, ckpt = load_checkpoint(checkpoint, "cpu")
    if not Path(ckpt.get("cache", "")).is_dir():
        raise ConfigError(f"{checkpoint}: its training cache {ckpt.get('cache')!r} is gone (run facelens preprocess)")
    cache = open_cache(ckpt["cache"])
    rows = np.flatnonzero((cache.labels["split"] == split) & ~np.isnan(cache.labels["age"]))
    if len(rows) == 0:
        raise ConfigError(f"the cache {cache.path} has no {split!r} face with an age label")
    ds = CacheBatches(cache.path, cache.labels)
    with torch.no_grad():
        probs = [
            torch.softmax(out["age"].float(), dim=1).numpy()
            for _, out in iter_outputs(model, ds, rows, config, torch.device("cpu"))
        ]
    return np.concatenate(probs), cache.labels["age"][rows].astype(np.float64)

"""Predictions of a checkpoint on cache rows, task metrics from them, and a model's size and CPU speed.

Metrics reuse :mod:`facelens.eval.metrics`: accuracy and per-class recall from
:func:`~facelens.eval.metrics.classification_metrics`, ROC-AUC from :func:`~facelens.eval.metrics.roc_auc`,
age MAE from :func:`~facelens.eval.metrics.age_metrics` and exact / 1-off age-group accuracy from
:func:`~facelens.eval.metrics.age_group_accuracy`. Binary tasks add TPR (recall of the positive class), FPR
and precision; multi-class tasks add macro averages of those, and a one-vs-rest macro ROC-AUC.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..eval.metrics import age_group_accuracy, age_metrics, classification_metrics, roc_auc
from ..labels import CELEBA_ATTRIBUTES
from .selection import TaskSpec, task_target


@dataclass(frozen=True)
class ModelProfile:
    """Size and CPU speed of a trained network.

    Attributes:
        arch: Backbone name.
        input_size: Input side in pixels.
        channels: Input channels.
        params: Number of parameters (backbone and heads).
        cpu_ms_per_image: Median latency of one forward pass on a single image, in milliseconds, on this machine's
            CPU with ``threads`` torch threads.
        threads: Torch intra-op threads during the measurement.

    """

    arch: str
    input_size: int
    channels: int
    params: int
    cpu_ms_per_image: float
    threads: int

    def to_dict(self) -> dict[str, Any]:
        """Plain dict form."""
        return asdict(self)


def input_channels(model: Any) -> int:
    """Input channels of a network: those of its first 2-D convolution (3 when it has none)."""
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            return int(m.in_channels)
    return 3


def profile_model(checkpoint: str | Path, repeats: int = 15) -> ModelProfile:
    """Count parameters and time single-image CPU inference of a checkpoint."""
    import torch

    from ..train.engine import load_checkpoint

    model, config, _ = load_checkpoint(checkpoint, "cpu")
    size, ch = config.model.input_size, input_channels(model)
    x = torch.randn(1, ch, size, size)
    times = []
    with torch.inference_mode():
        for i in range(repeats + 3):
            t = time.perf_counter()
            model(x)
            if i >= 3:  # warm-up
                times.append((time.perf_counter() - t) * 1000.0)
    return ModelProfile(
        arch=config.model.arch,
        input_size=size,
        channels=ch,
        params=int(sum(p.numel() for p in model.parameters())),
        cpu_ms_per_image=round(statistics.median(times), 3),
        threads=torch.get_num_threads(),
    )


def predict(
    checkpoint: str | Path, cache: str | Path, rows: np.ndarray, batch_size: int = 128
) -> dict[str, np.ndarray]:
    """Run a checkpoint on cache rows.

    Returns:
        ``age`` (expected age, years), ``gender`` (probability of class 1, female), ``race`` (``(N, 5)``
        probabilities), ``attributes`` (``(N, 40)`` probabilities); only for the heads the model has.

    """
    import torch

    from ..train.batches import CacheBatches, prepare_batch
    from ..train.cache import open_cache
    from ..train.engine import load_checkpoint
    from ..train.losses import expected_age

    model, config, _ = load_checkpoint(checkpoint, "cpu")
    arrays = open_cache(cache)
    ds = CacheBatches(arrays.path, arrays.labels)
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    parts: dict[str, list[np.ndarray]] = {}
    with torch.inference_mode():
        for s in range(0, len(rows), batch_size):
            batch = ds[rows[s : s + batch_size].tolist()]
            out = model(prepare_batch(batch["image"], config.model.input_size))
            if "age" in out:
                parts.setdefault("age", []).append(expected_age(out["age"]).numpy())
            if "gender" in out:
                parts.setdefault("gender", []).append(torch.softmax(out["gender"], 1)[:, 1].numpy())
            if "race" in out:
                parts.setdefault("race", []).append(torch.softmax(out["race"], 1).numpy())
            if "attributes" in out:
                parts.setdefault("attributes", []).append(torch.sigmoid(out["attributes"]).numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def _rates(conf: np.ndarray, c: int) -> tuple[float, float, float]:
    """TPR, FPR and precision of class ``c`` from a confusion matrix (rows true, columns predicted)."""
    tp = conf[c, c]
    fn = conf[c].sum() - tp
    fp = conf[:, c].sum() - tp
    tn = conf.sum() - tp - fn - fp
    div = lambda a, b: float(a / b) if b else math.nan  # noqa: E731
    return div(tp, tp + fn), div(fp, fp + tn), div(tp, tp + fp)


def task_metrics(
    task: TaskSpec, labels: dict[str, np.ndarray], rows: np.ndarray, preds: dict[str, np.ndarray], age_scheme: str
) -> dict[str, float]:
    """Metrics of one task on the rows that carry its label.

    Args:
        task: The task.
        labels: Cache labels (all rows).
        rows: The sorted rows ``preds`` were computed on.
        preds: Output of :func:`predict` on ``rows``.
        age_scheme: Age-group scheme for exact / 1-off accuracy.

    Returns:
        ``n`` and the task's metrics (fractions in 0..1, ages in years).

    """
    y = task_target(labels, task)[rows]
    if task.kind == "age":
        ok = ~np.isnan(y)
        pred = preds["age"][ok]
        am = age_metrics(y[ok], pred)
        ga = age_group_accuracy(y[ok], pred, scheme=age_scheme)
        return {
            "n": int(ok.sum()),
            "mae": am.mae,
            "rmse": am.rmse,
            "group_exact": ga.exact,
            "group_one_off": ga.one_off,
        }
    ok = y >= 0
    y = y[ok]
    if task.kind == "binary":
        score = preds["gender"] if task.name == "gender" else preds["attributes"][:, CELEBA_ATTRIBUTES.index(task.name)]
        score = score[ok]
        pred = (score >= 0.5).astype(np.int64)
        cm = classification_metrics(y, pred, task.classes)
        tpr, fpr, precision = _rates(np.array(cm.confusion), 1)
        return {
            "n": cm.n,
            "accuracy": cm.accuracy,
            "balanced_accuracy": cm.balanced_accuracy,
            "tpr": tpr,
            "fpr": fpr,
            "precision": precision,
            "roc_auc": roc_auc(y, score),
        }
    prob = preds["race"][ok]
    cm = classification_metrics(y, prob.argmax(1), task.classes)
    conf = np.array(cm.confusion)
    present = [c for c in range(len(task.classes)) if conf[c].sum() > 0]
    rates = np.array([_rates(conf, c) for c in present], dtype=np.float64)
    aucs = [roc_auc(y == c, prob[:, c]) for c in present]
    return {
        "n": cm.n,
        "accuracy": cm.accuracy,
        "balanced_accuracy": cm.balanced_accuracy,
        "macro_tpr": float(np.nanmean(rates[:, 0])) if len(present) else math.nan,
        "macro_fpr": float(np.nanmean(rates[:, 1])) if len(present) else math.nan,
        "macro_precision": float(np.nanmean(rates[:, 2])) if len(present) else math.nan,
        "roc_auc": float(np.nanmean(aucs)) if aucs and not all(math.isnan(a) for a in aucs) else math.nan,
    }


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN-safe; std is NaN for fewer than two finite values)."""
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan

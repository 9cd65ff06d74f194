"""Metrics of the attribute heads: age, age groups, gender, ethnicity, the 40 attributes, and fairness views.

Pure numpy (scikit-learn is used for ROC-AUC when installed, with an exact numpy fallback). Every function
takes plain arrays of true and predicted values for the faces that were evaluated and returns a frozen
dataclass; ``to_dict()`` gives a JSON-ready form in which undefined values (an empty group, an AUC over one
class only) are ``None``.

Conventions: accuracies and shares are fractions in ``[0, 1]``; gaps between groups of an accuracy are also
reported in percentage points (``gap_points``); age errors are in years.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np

from ..labels import AGE_GROUP_SCHEMES, age_group, age_group_label

__all__ = [
    "AgeMetrics",
    "AttributeMetrics",
    "AttributeScore",
    "ClassificationMetrics",
    "CoverageMetrics",
    "GroupAccuracy",
    "GroupValue",
    "GroupedMetric",
    "accuracy_by_group",
    "age_group_accuracy",
    "age_metrics",
    "attribute_metrics",
    "classification_metrics",
    "decade_label",
    "interval_coverage",
    "mae_by_group",
    "roc_auc",
]


def _num(x: float, nd: int = 5) -> float | None:
    """Round for JSON; NaN and infinities become None."""
    x = float(x)
    return None if not math.isfinite(x) else round(x, nd)


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else math.nan


def to_jsonable(value: Any) -> Any:
    """JSON form of a result value: results via ``to_dict()``, floats rounded (NaN -> None), tuples as lists."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, float):
        return _num(value)
    if isinstance(value, (tuple, list)):
        return [to_jsonable(v) for v in value]
    return value


class Serializable:
    """Mixin of the result dataclasses: ``to_dict()`` lists every field, then the properties named in ``_derived``."""

    _derived: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (undefined values are None)."""
        names = [f.name for f in fields(self)] + list(self._derived)  # type: ignore[arg-type]
        return {k: to_jsonable(getattr(self, k)) for k in names}


@dataclass(frozen=True)
class GroupValue(Serializable):
    """A metric measured on one group of samples.

    Attributes:
        group: The group's label (``"20-29"``, ``"white"``, ``"female"``...).
        n: Samples in the group.
        value: The metric on those samples (NaN when ``n`` is 0).

    """

    group: str
    n: int
    value: float


def _find(groups: Sequence[GroupValue], name: str) -> GroupValue:
    for g in groups:
        if g.group == name:
            return g
    raise KeyError(f"no group {name!r}; groups are {[g.group for g in groups]}")


# --- age ----------------------------------------------------------------------------------------------------


def decade_label(age: float) -> str:
    """The decade an age falls in: ``"0-9"``, ``"10-19"``, ..., ``"90-99"``, ``"100+"``."""
    d = min(int(max(age, 0.0) // 10), 10)
    return "100+" if d == 10 else f"{10 * d}-{10 * d + 9}"


@dataclass(frozen=True)
class AgeMetrics(Serializable):
    """Age regression error.

    Attributes:
        n: Faces evaluated.
        mae: Mean absolute error in years.
        rmse: Root mean squared error in years.
        median_ae: Median absolute error in years.
        bias: Mean of ``predicted - true`` (positive: the model guesses too old).
        by_decade: MAE per decade of the TRUE age (decades without samples are left out), youngest first.

    """

    n: int
    mae: float
    rmse: float
    median_ae: float
    bias: float
    by_decade: tuple[GroupValue, ...]

    def decade(self, label: str) -> GroupValue:
        """The entry of one decade, e.g. ``"20-29"``."""
        return _find(self.by_decade, label)


def age_metrics(true: Sequence[float] | np.ndarray, pred: Sequence[float] | np.ndarray) -> AgeMetrics:
    """Age MAE overall and per decade of the true age.

    Args:
        true: True ages in years.
        pred: Predicted ages in years (same length).

    Returns:
        The metrics (NaN values when there are no samples).

    """
    t, p = _pair(true, pred, np.float64)
    err = p - t
    ae = np.abs(err)
    decades = np.minimum(np.floor(np.maximum(t, 0) / 10).astype(int), 10)
    by_decade = tuple(
        GroupValue(decade_label(10 * d), int((decades == d).sum()), _mean(ae[decades == d]))
        for d in sorted(set(decades.tolist()))
    )
    return AgeMetrics(
        n=int(t.size),
        mae=_mean(ae),
        rmse=math.sqrt(_mean(err**2)) if t.size else math.nan,
        median_ae=float(np.median(ae)) if t.size else math.nan,
        bias=_mean(err),
        by_decade=by_decade,
    )


@dataclass(frozen=True)
class GroupAccuracy(Serializable):
    """Accuracy of the predicted age GROUP under a group scheme (Adience's 8, UTKFace's 12).

    Attributes:
        scheme: Key of :data:`facelens.labels.AGE_GROUP_SCHEMES`.
        n: Faces evaluated.
        exact: Share whose predicted group is the true group.
        one_off: Share whose predicted group is the true group or a neighbour of it.
        labels: The group labels, in scheme order.
        confusion: ``confusion[i][j]`` counts true group ``i`` predicted as group ``j``.

    """

    scheme: str
    n: int
    exact: float
    one_off: float
    labels: tuple[str, ...]
    confusion: tuple[tuple[int, ...], ...]


def age_group_accuracy(
    true: Sequence[float] | np.ndarray,
    pred: Sequence[float] | np.ndarray,
    scheme: str = "adience",
    true_ranges: Sequence[tuple[int, int] | None] | None = None,
) -> GroupAccuracy:
    """Exact and 1-off accuracy of age groups, both ages mapped with :func:`facelens.labels.age_group`.

    Args:
        true: True ages in years (for a range label, any value: ``true_ranges`` wins).
        pred: Predicted ages in years.
        scheme: The group scheme.
        true_ranges: Optional per-sample inclusive ``(low, high)`` true range (Adience, FairFace); where given,
            the true group is the group of the range's midpoint, so non-canonical ranges such as Adience's
            ``(8, 23)`` or ``(38, 48)`` land in the nearest canonical group.

    Returns:
        The group accuracy.

    """
    t, p = _pair(true, pred, np.float64)
    if true_ranges is not None:
        if len(true_ranges) != t.size:
            raise ValueError(f"true_ranges has {len(true_ranges)} entries, expected {t.size}")
        t = np.array([t[i] if r is None else 0.5 * (r[0] + r[1]) for i, r in enumerate(true_ranges)])
    groups = AGE_GROUP_SCHEMES[scheme]
    tg = np.array([age_group(a, scheme) for a in t], dtype=int)
    pg = np.array([age_group(a, scheme) for a in p], dtype=int)
    k = len(groups)
    conf = np.zeros((k, k), dtype=int)
    np.add.at(conf, (tg, pg), 1)
    return GroupAccuracy(
        scheme=scheme,
        n=int(t.size),
        exact=_mean((tg == pg).astype(float)),
        one_off=_mean((np.abs(tg - pg) <= 1).astype(float)),
        labels=tuple(age_group_label(lo, hi) for lo, hi in groups),
        confusion=tuple(tuple(int(v) for v in row) for row in conf),
    )


@dataclass(frozen=True)
class CoverageMetrics(Serializable):
    """How often the predicted age interval holds the true age.

    Attributes:
        n: Faces evaluated.
        nominal: The share the interval is meant to hold (0.8 for facelens' 80% interval).
        coverage: Share of true ages inside ``[low, high]`` (inclusive); close to ``nominal`` when calibrated.
        below: Share of true ages below the interval (the model guesses too old).
        above: Share of true ages above the interval (the model guesses too young).
        mean_width: Mean interval width in years.

    """

    n: int
    nominal: float
    coverage: float
    below: float
    above: float
    mean_width: float


def interval_coverage(
    true: Sequence[float] | np.ndarray,
    low: Sequence[float] | np.ndarray,
    high: Sequence[float] | np.ndarray,
    nominal: float = 0.8,
) -> CoverageMetrics:
    """Share of true ages inside the predicted interval (integer ages: ``low <= true <= high``).

    Args:
        true: True ages in years.
        low: Interval lower ends.
        high: Interval upper ends.
        nominal: The coverage the interval claims.

    Returns:
        The coverage metrics.

    """
    t, lo = _pair(true, low, np.float64)
    _, hi = _pair(true, high, np.float64)
    return CoverageMetrics(
        n=int(t.size),
        nominal=float(nominal),
        coverage=_mean(((t >= lo) & (t <= hi)).astype(float)),
        below=_mean((t < lo).astype(float)),
        above=_mean((t > hi).astype(float)),
        mean_width=_mean(hi - lo),
    )


# --- classification -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassificationMetrics(Serializable):
    """Single-label classification (gender, ethnicity).

    Attributes:
        n: Faces evaluated.
        accuracy: Share predicted correctly.
        labels: Class names, in index order.
        confusion: ``confusion[i][j]`` counts true class ``i`` predicted as ``j``.
        per_class: Recall (accuracy on the samples of that true class) per class.

    """

    _derived: ClassVar[tuple[str, ...]] = ("balanced_accuracy",)

    n: int
    accuracy: float
    labels: tuple[str, ...]
    confusion: tuple[tuple[int, ...], ...]
    per_class: tuple[GroupValue, ...]

    @property
    def balanced_accuracy(self) -> float:
        """Mean recall over the classes that occur."""
        vals = [g.value for g in self.per_class if g.n > 0]
        return float(np.mean(vals)) if vals else math.nan

    def recall(self, label: str) -> GroupValue:
        """The recall entry of one class."""
        return _find(self.per_class, label)


def classification_metrics(
    true: Sequence[int] | np.ndarray, pred: Sequence[int] | np.ndarray, labels: Sequence[str]
) -> ClassificationMetrics:
    """Accuracy, confusion matrix and per-class recall.

    Args:
        true: True class indices into ``labels``.
        pred: Predicted class indices.
        labels: The class names (e.g. :data:`facelens.labels.RACES` for the 5x5 ethnicity matrix).

    Returns:
        The metrics.

    """
    t, p = _pair(true, pred, np.int64)
    k = len(labels)
    if t.size and (t.min() < 0 or p.min() < 0 or t.max() >= k or p.max() >= k):
        raise ValueError(f"class indices must be in 0..{k - 1}")
    conf = np.zeros((k, k), dtype=int)
    np.add.at(conf, (t, p), 1)
    rows = conf.sum(axis=1)
    per_class = tuple(
        GroupValue(labels[i], int(rows[i]), conf[i, i] / rows[i] if rows[i] else math.nan) for i in range(k)
    )
    return ClassificationMetrics(
        n=int(t.size),
        accuracy=_mean((t == p).astype(float)),
        labels=tuple(labels),
        confusion=tuple(tuple(int(v) for v in r) for r in conf),
        per_class=per_class,
    )


# --- attributes ---------------------------------------------------------------------------------------------


def roc_auc(true: Sequence[int] | np.ndarray, score: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve of one binary label; NaN when only one class occurs.

    Uses :func:`sklearn.metrics.roc_auc_score` when scikit-learn is installed, else the exact Mann-Whitney
    statistic with tied scores counted as half (the same value).
    """
    t, s = _pair(true, score, np.float64)
    t = t.astype(bool)
    n_pos = int(t.sum())
    n_neg = int(t.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return math.nan
    try:
        from sklearn.metrics import roc_auc_score
    except ImportError:
        return _auc_numpy(t, s, n_pos, n_neg)
    return float(roc_auc_score(t, s))


def _auc_numpy(t: np.ndarray, s: np.ndarray, n_pos: int, n_neg: int) -> float:
    order = np.argsort(s, kind="mergesort")
    s_sorted = s[order]
    ranks = np.empty(s.size, dtype=np.float64)
    # average ranks (1-based) over runs of tied scores
    _, first, counts = np.unique(s_sorted, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[t].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


@dataclass(frozen=True)
class AttributeScore(Serializable):
    """Quality of one binary attribute.

    Attributes:
        name: The attribute (a :data:`facelens.labels.CELEBA_ATTRIBUTES` name).
        n: Faces with a label for it.
        accuracy: Share correct at threshold 0.5.
        auc: ROC-AUC (NaN when only one class occurs).
        positive_rate: Share of true positives among the labels (how easy "always no" would be).

    """

    _derived: ClassVar[tuple[str, ...]] = ("majority_accuracy",)

    name: str
    n: int
    accuracy: float
    auc: float
    positive_rate: float

    @property
    def majority_accuracy(self) -> float:
        """Accuracy of always answering the more frequent value (the baseline to beat)."""
        return max(self.positive_rate, 1.0 - self.positive_rate)


@dataclass(frozen=True)
class AttributeMetrics(Serializable):
    """The binary attributes: per attribute and averaged.

    Attributes:
        n: Faces evaluated.
        mean_accuracy: Mean of the per-attribute accuracies.
        mean_auc: Mean of the defined per-attribute AUCs.
        per_attribute: One entry per attribute, in label order.
        threshold: Score threshold used for accuracy.

    """

    _derived: ClassVar[tuple[str, ...]] = ("mean_majority_accuracy",)

    n: int
    mean_accuracy: float
    mean_auc: float
    per_attribute: tuple[AttributeScore, ...]
    threshold: float = 0.5

    @property
    def mean_majority_accuracy(self) -> float:
        """Mean accuracy of always answering each attribute's commoner value (the baseline to beat)."""
        return float(np.mean([a.majority_accuracy for a in self.per_attribute])) if self.per_attribute else math.nan

    def attribute(self, name: str) -> AttributeScore:
        """The entry of one attribute."""
        for a in self.per_attribute:
            if a.name == name:
                return a
        raise KeyError(f"no attribute {name!r}")


def attribute_metrics(
    true: np.ndarray | Sequence[Sequence[int]],
    scores: np.ndarray | Sequence[Sequence[float]],
    names: Sequence[str],
    threshold: float = 0.5,
) -> AttributeMetrics:
    """Per-attribute accuracy and ROC-AUC, and their means.

    Args:
        true: ``(N, K)`` labels 0/1; negative values mean "unknown" and are left out of that attribute.
        scores: ``(N, K)`` predicted probabilities.
        names: The ``K`` attribute names.
        threshold: A score at or above this counts as "yes".

    Returns:
        The metrics.

    """
    t = np.asarray(true, dtype=np.int64).reshape(-1, len(names))
    s = np.asarray(scores, dtype=np.float64).reshape(-1, len(names))
    if t.shape != s.shape:
        raise ValueError(f"true has shape {t.shape}, scores {s.shape}")
    per = []
    for j, name in enumerate(names):
        known = t[:, j] >= 0
        tj, sj = t[known, j], s[known, j]
        per.append(
            AttributeScore(
                name=name,
                n=int(known.sum()),
                accuracy=_mean(((sj >= threshold).astype(int) == tj).astype(float)),
                auc=roc_auc(tj, sj),
                positive_rate=_mean(tj.astype(float)),
            )
        )
    accs = [a.accuracy for a in per if a.n]
    aucs = [a.auc for a in per if math.isfinite(a.auc)]
    return AttributeMetrics(
        n=int(t.shape[0]),
        mean_accuracy=float(np.mean(accs)) if accs else math.nan,
        mean_auc=float(np.mean(aucs)) if aucs else math.nan,
        per_attribute=tuple(per),
        threshold=threshold,
    )


# --- fairness views -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupedMetric(Serializable):
    """One metric broken down by a sensitive attribute (fairness view).

    Attributes:
        metric: What is measured (``"gender_accuracy"``, ``"age_mae"``, ``"race_accuracy"``).
        by: What the groups are (``"race"``, ``"gender"``).
        unit: ``"fraction"`` (an accuracy) or ``"years"`` (an error).
        groups: The metric per group, in label order (empty groups included, with NaN).
        min_count: Groups with fewer samples than this are left out of :attr:`gap`.
        gap: Largest minus smallest value over the groups with at least ``min_count`` samples (NaN when
            fewer than two such groups).
        best: Label of the best group (highest accuracy / lowest error) among those, or "".
        worst: Label of the worst group among those, or "".

    """

    _derived: ClassVar[tuple[str, ...]] = ("gap_points",)

    metric: str
    by: str
    unit: str
    groups: tuple[GroupValue, ...]
    min_count: int
    gap: float
    best: str
    worst: str

    @property
    def gap_points(self) -> float:
        """The gap in percentage points (accuracies) or years (errors)."""
        return 100.0 * self.gap if self.unit == "fraction" else self.gap

    def group(self, label: str) -> GroupValue:
        """The entry of one group."""
        return _find(self.groups, label)


def _grouped(
    metric: str, by: str, unit: str, per_sample: np.ndarray, groups: np.ndarray, labels: Sequence[str], min_count: int
) -> GroupedMetric:
    vals = tuple(
        GroupValue(label, int((groups == i).sum()), _mean(per_sample[groups == i])) for i, label in enumerate(labels)
    )
    ok = sorted((g for g in vals if g.n >= max(min_count, 1)), key=lambda g: g.value, reverse=unit == "fraction")
    if not ok:
        return GroupedMetric(metric, by, unit, vals, min_count, math.nan, "", "")
    best, worst = ok[0], ok[-1]
    gap = abs(best.value - worst.value) if len(ok) >= 2 else math.nan
    return GroupedMetric(metric, by, unit, vals, min_count, gap, best.group, worst.group)


def accuracy_by_group(
    true: Sequence[int] | np.ndarray,
    pred: Sequence[int] | np.ndarray,
    groups: Sequence[int] | np.ndarray,
    group_labels: Sequence[str],
    metric: str = "accuracy",
    by: str = "group",
    min_count: int = 1,
) -> GroupedMetric:
    """Accuracy per group (e.g. gender accuracy per ethnicity) and the largest gap between groups.

    Args:
        true: True class indices.
        pred: Predicted class indices.
        groups: Group index of every sample, into ``group_labels``.
        group_labels: Names of the groups.
        metric: Name to record (``"gender_accuracy"``).
        by: Name of the grouping (``"race"``).
        min_count: Smallest group size that takes part in the gap.

    Returns:
        The grouped metric.

    """
    t, p = _pair(true, pred, np.int64)
    g = _groups(groups, t.size)
    return _grouped(metric, by, "fraction", (t == p).astype(float), g, group_labels, min_count)


def mae_by_group(
    true: Sequence[float] | np.ndarray,
    pred: Sequence[float] | np.ndarray,
    groups: Sequence[int] | np.ndarray,
    group_labels: Sequence[str],
    by: str = "group",
    min_count: int = 1,
) -> GroupedMetric:
    """Age MAE per group (e.g. per ethnicity or per gender) and the largest gap between groups, in years."""
    t, p = _pair(true, pred, np.float64)
    g = _groups(groups, t.size)
    return _grouped("age_mae", by, "years", np.abs(p - t), g, group_labels, min_count)


# --- helpers ------------------------------------------------------------------------------------------------


def _pair(a: Any, b: Any, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype=dtype).reshape(-1)
    y = np.asarray(b, dtype=dtype).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"length mismatch: {x.size} true values, {y.size} predictions")
    return x, y


def _groups(groups: Any, n: int) -> np.ndarray:
    g = np.asarray(groups, dtype=np.int64).reshape(-1)
    if g.size != n:
        raise ValueError(f"length mismatch: {n} samples, {g.size} group indices")
    return g

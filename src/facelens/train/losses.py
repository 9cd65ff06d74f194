"""Masked multi-task losses and validation metrics.

Every task's loss is averaged over the samples (or, for attributes, the sample-attribute pairs) that carry
that label; a batch without any label for a task contributes zero to it. Missing labels are encoded as in
the cache: age NaN, gender / race -1, attribute -1.

Age follows DLDL-v2 (Gao et al., "Age Estimation Using Expectation of Label Distribution Learning", IJCAI
2018): the target is a Gaussian over the integer years centred on the true age (clamped to the head's
range), the loss is ``KL(target || softmax(logits)) + age_l1_weight * |E[age] - age|``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..labels import CELEBA_ATTRIBUTES
from .config import OptimConfig
from .models import AGE_BINS, AGE_MIN

MALE_INDEX = CELEBA_ATTRIBUTES.index("Male")


def age_years(device: torch.device | str = "cpu") -> torch.Tensor:
    """Return the years of the age bins as a float tensor ``(AGE_BINS,)``."""
    return torch.arange(AGE_MIN, AGE_MIN + AGE_BINS, dtype=torch.float32, device=device)


def age_label_distribution(age: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian label distributions ``(N, AGE_BINS)`` centred on ``age`` (clamped to the bin range)."""
    years = age_years(age.device)
    centre = age.clamp(AGE_MIN, AGE_MIN + AGE_BINS - 1).unsqueeze(1)
    logits = -0.5 * ((years.unsqueeze(0) - centre) / sigma) ** 2
    return torch.softmax(logits, dim=1)


def expected_age(logits: torch.Tensor) -> torch.Tensor:
    """Return the expected value in years of the age distribution ``softmax(logits)``."""
    return (torch.softmax(logits, dim=1) * age_years(logits.device)).sum(dim=1)


def _zero(t: torch.Tensor) -> torch.Tensor:
    return t.sum() * 0.0


def multitask_loss(
    outputs: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    optim: OptimConfig,
    class_weights: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the masked task losses.

    Args:
        outputs: ``{task: logits}`` from :class:`~facelens.train.models.MultiTaskNet`.
        targets: ``age`` float (NaN missing), ``gender`` / ``race`` long (-1 missing), ``attributes`` float
            ``(N, 40)`` (-1 missing).
        optim: Supplies loss weights, label smoothing and the age loss parameters.
        class_weights: Per-class weights of the gender / race cross-entropy (see :func:`balanced_class_weights`).

    Returns:
        The total loss and the value of each task's loss (for logging).

    """
    parts: dict[str, torch.Tensor] = {}
    eps = optim.label_smoothing
    if "age" in outputs:
        logits, age = outputs["age"], targets["age"]
        mask = ~torch.isnan(age)
        if mask.any():
            lg, a = logits[mask], age[mask]
            target = age_label_distribution(a, optim.age_sigma)
            kl = (target * (torch.log(target.clamp_min(1e-12)) - F.log_softmax(lg, dim=1))).sum(dim=1).mean()
            l1 = (expected_age(lg) - a.clamp(AGE_MIN, AGE_MIN + AGE_BINS - 1)).abs().mean()
            parts["age"] = kl + optim.age_l1_weight * l1
        else:
            parts["age"] = _zero(logits)
    for task in ("gender", "race"):
        if task in outputs:
            y = targets[task]
            mask = y >= 0
            parts[task] = (
                F.cross_entropy(
                    outputs[task][mask], y[mask], weight=(class_weights or {}).get(task), label_smoothing=eps
                )
                if mask.any()
                else _zero(outputs[task])
            )
    if "attributes" in outputs:
        logits, y = outputs["attributes"], targets["attributes"]
        mask = y >= 0
        if mask.any():
            soft = y.clamp_min(0) * (1 - eps) + 0.5 * eps
            bce = F.binary_cross_entropy_with_logits(logits, soft, reduction="none")
            parts["attributes"] = (bce * mask).sum() / mask.sum()
        else:
            parts["attributes"] = _zero(logits)
    total = torch.stack([optim.loss_weights.get(k, 1.0) * v for k, v in parts.items()]).sum()
    return total, {k: float(v.detach()) for k, v in parts.items()}


def balanced_class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency class weights averaging 1 over the classes present (-1 = unlabelled, ignored).

    Raises:
        ValueError: If no row is labelled.

    """
    counts = np.bincount(labels[labels >= 0].astype(np.int64), minlength=n_classes)[:n_classes].astype(np.float64)
    if counts.sum() == 0:
        raise ValueError("no labelled rows to balance the classes of")
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(weights / weights[present].mean(), dtype=torch.float32)


@dataclass
class MetricAccumulator:
    """Running validation metrics over batches.

    Metrics (each only over the samples that carry the label): ``age_mae`` (years, expected value vs. the true
    age, not clamped), ``gender_acc``, ``race_acc``, ``attr_acc`` (mean over the 40 attributes of the accuracy
    at threshold 0.5), ``male_acc`` (the attribute head's ``Male`` output), and ``score``, the single number
    used to pick the best checkpoint (unless ``train.monitor`` names another metric): ``gender_acc + race_acc +
    attr_acc - age_mae / 10`` over the metrics present (higher is better; 1 year of age error weighs as much as 10
    points of accuracy).
    """

    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, float] = field(default_factory=dict)

    def _add(self, key: str, total: float, count: float) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + total
        self.counts[key] = self.counts.get(key, 0.0) + count

    @torch.no_grad()
    def update(
        self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], loss: float | None = None
    ) -> None:
        """Add one batch."""
        n = next(iter(outputs.values())).shape[0]
        if loss is not None:
            self._add("loss", loss * n, n)
        if "age" in outputs:
            mask = ~torch.isnan(targets["age"])
            if mask.any():
                err = (expected_age(outputs["age"][mask]) - targets["age"][mask]).abs()
                self._add("age_mae", float(err.sum()), int(mask.sum()))
        for task in ("gender", "race"):
            if task in outputs:
                mask = targets[task] >= 0
                if mask.any():
                    hit = outputs[task][mask].argmax(dim=1) == targets[task][mask]
                    self._add(f"{task}_acc", float(hit.sum()), int(mask.sum()))
        if "attributes" in outputs:
            y = targets["attributes"]
            mask = y >= 0
            if mask.any():
                hit = ((outputs["attributes"] > 0).float() == y) & mask
                self._add("attr_acc", float(hit.sum()), int(mask.sum()))
                m = mask[:, MALE_INDEX]
                self._add("male_acc", float(hit[:, MALE_INDEX].sum()), int(m.sum()))

    def compute(self) -> dict[str, float]:
        """Return the metrics so far (only those with at least one labelled sample), plus ``score``."""
        out = {k: self.sums[k] / self.counts[k] for k in sorted(self.sums) if self.counts[k] > 0}
        score = sum(out.get(k, 0.0) for k in ("gender_acc", "race_acc", "attr_acc"))
        if "age_mae" in out:
            score -= out["age_mae"] / 10.0
        out["score"] = score if math.isfinite(score) else -math.inf
        return out

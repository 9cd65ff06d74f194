"""``optim.balance_classes``: inverse-frequency class weights for the gender / race cross-entropy."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facelens.train.config import ConfigError, OptimConfig, TrainConfig
from facelens.train.engine import train
from facelens.train.losses import balanced_class_weights, multitask_loss


def test_weights_are_inverse_frequency_and_average_one() -> None:
    w = balanced_class_weights(np.array([0, 0, 0, 1, -1, -1, 2, 2]), 4)  # class 3 absent, -1 unlabelled
    assert w[3] == 0.0
    np.testing.assert_allclose(w[:3].mean(), 1.0, rtol=1e-6)
    np.testing.assert_allclose([w[1] / w[0], w[2] / w[0]], [3.0, 1.5], rtol=1e-6)
    with pytest.raises(ValueError, match="no labelled rows"):
        balanced_class_weights(np.array([-1, -1]), 2)


def test_weighted_loss_is_the_weighted_cross_entropy() -> None:
    gen = torch.Generator().manual_seed(0)
    outputs = {"race": torch.randn(6, 5, generator=gen)}
    targets = {"race": torch.tensor([0, 0, 0, 1, 2, -1])}
    optim = OptimConfig(label_smoothing=0.0)
    weights = {"race": torch.tensor([0.5, 2.0, 1.0, 1.0, 1.0])}
    plain, _ = multitask_loss(outputs, targets, optim)
    weighted, _ = multitask_loss(outputs, targets, optim, weights)
    expected = F.cross_entropy(outputs["race"][:5], targets["race"][:5], weight=weights["race"])
    torch.testing.assert_close(weighted, expected)
    assert not torch.isclose(plain, weighted)


def test_config_accepts_gender_and_race_only(make_config: Callable[..., TrainConfig], tmp_path: Path) -> None:
    config = make_config(tmp_path)
    with pytest.raises(ConfigError, match="balance_classes"):
        dataclasses.replace(config, optim=dataclasses.replace(config.optim, balance_classes=("age",))).validate()


def test_training_with_balanced_classes_runs(
    make_config: Callable[..., TrainConfig], tiny_cache: Path, tmp_path: Path
) -> None:
    config = make_config(tmp_path)
    config = dataclasses.replace(config, optim=dataclasses.replace(config.optim, balance_classes=("gender", "race")))
    result = train(config.validate(), progress=False, cache=tiny_cache)
    assert result.epochs_run == 1 and np.isfinite(result.best_metrics["loss"])

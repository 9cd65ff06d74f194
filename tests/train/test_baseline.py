"""The logistic-regression pixel baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

from facelens.train.baseline import (  # noqa: E402
    BaselineResult,
    cache_baseline,
    logistic_regression_baseline,
    pixel_features,
)


def separable_faces(n: int = 60, size: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class 0: bright left half; class 1: bright right half; plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.integers(0, 60, (n, size, size, 3)).astype(np.uint8)
    for i, y in enumerate(labels):
        half = slice(0, size // 2) if y == 0 else slice(size // 2, size)
        images[i, :, half] += 150
    return images, labels


def test_pixel_features() -> None:
    images, _ = separable_faces(4, size=40)
    x = pixel_features(images, size=16)
    assert x.shape == (4, 256) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert pixel_features(images[..., 0], size=16).shape == (4, 256)  # gray input
    with pytest.raises(ValueError):
        pixel_features(images.astype(np.float32))


def test_separable_set_is_learned() -> None:
    images, labels = separable_faces()
    labels[0] = -1  # missing labels are left out
    result = logistic_regression_baseline(images, labels, size=16, test_fraction=0.25)
    assert isinstance(result, BaselineResult)
    assert result.accuracy >= 0.9 and result.train_accuracy == 1.0
    assert result.n_train + result.n_test == 59 and result.classes == (0, 1)
    assert result.majority_accuracy <= 0.6
    test_images, test_labels = separable_faces(20, seed=1)
    explicit = logistic_regression_baseline(images, labels, test_images, test_labels, size=16)
    assert explicit.n_test == 20 and explicit.accuracy >= 0.9
    with pytest.raises(ValueError, match="two classes"):
        logistic_regression_baseline(images, np.zeros(len(images), int), test_images, test_labels)


def test_on_a_training_cache(tiny_cache: Path) -> None:
    result = cache_baseline(tiny_cache, "gender", size=8, test_split="val")
    assert result.n_test == 6 and result.size == 8 and 0.0 <= result.accuracy <= 1.0
    with pytest.raises(ValueError, match="task"):
        cache_baseline(tiny_cache, "age")

"""The pixel baseline: logistic regression on downscaled grayscale faces (scikit-learn).

What any network should beat: each aligned crop becomes a ``size x size`` gray image (``cv2.INTER_AREA``), its
pixels in 0..1 are standardised per pixel and fed to an L2-regularised multinomial logistic regression.
Works on any uint8 ``(N, H, W, 3)`` array with integer labels, or directly on a training cache
(:func:`cache_baseline`). Samples whose label is negative (missing) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class BaselineResult:
    """Outcome of :func:`logistic_regression_baseline`.

    Attributes:
        accuracy: Accuracy on the test samples.
        train_accuracy: Accuracy on the training samples.
        n_train: Training samples used.
        n_test: Test samples used.
        size: Side of the gray images the model saw.
        classes: Class labels, sorted.
        majority_accuracy: Test accuracy of always predicting the most frequent training class.

    """

    accuracy: float
    train_accuracy: float
    n_train: int
    n_test: int
    size: int
    classes: tuple[int, ...]
    majority_accuracy: float


def pixel_features(images: np.ndarray, size: int = 32) -> np.ndarray:
    """uint8 ``(N, H, W, 3)`` RGB (or ``(N, H, W)`` gray) -> float32 ``(N, size * size)`` gray pixels in 0..1."""
    import cv2

    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(f"expected uint8 (N, H, W[, 3]) images, got {images.dtype} {images.shape}")
    out = np.empty((len(images), size * size), np.float32)
    for i, img in enumerate(images):
        gray = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
        if gray.shape != (size, size):
            gray = cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA)
        out[i] = gray.reshape(-1) * np.float32(1.0 / 255.0)
    return out


def logistic_regression_baseline(
    images: np.ndarray,
    labels: np.ndarray,
    test_images: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    size: int = 32,
    test_fraction: float = 0.2,
    seed: int = 0,
    c: float = 1.0,
    max_iter: int = 1000,
) -> BaselineResult:
    """Fit logistic regression on raw gray pixels and report accuracy.

    Args:
        images: uint8 ``(N, H, W, 3)`` training faces (aligned crops).
        labels: ``(N,)`` integer labels; negative = missing (left out).
        test_images: Test faces; without them a seeded stratified ``test_fraction`` of ``images`` is held out.
        test_labels: Their labels.
        size: Side of the gray images (pixels per sample = ``size ** 2``).
        test_fraction: Held-out share when no test set is given.
        seed: Seed of that split.
        c: Inverse L2 regularisation strength (scikit-learn's ``C``).
        max_iter: Iterations of the L-BFGS solver.

    Returns:
        Train and test accuracy, with the majority-class accuracy for reference.

    Raises:
        ValueError: With fewer than two classes or no test samples.

    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels).astype(np.int64)
    keep = labels >= 0
    x, y = pixel_features(np.asarray(images)[keep], size), labels[keep]
    if test_images is None:
        x, x_test, y, y_test = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    else:
        if test_labels is None:
            raise ValueError("test_images needs test_labels")
        test_labels = np.asarray(test_labels).astype(np.int64)
        tkeep = test_labels >= 0
        x_test, y_test = pixel_features(np.asarray(test_images)[tkeep], size), test_labels[tkeep]
    classes = np.unique(y)
    if len(classes) < 2 or len(y_test) == 0:
        raise ValueError(f"need two classes and test samples, got classes {classes.tolist()}, {len(y_test)} test")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
    model.fit(x, y)
    majority = classes[np.argmax([(y == k).sum() for k in classes])]
    return BaselineResult(
        accuracy=float((model.predict(x_test) == y_test).mean()),
        train_accuracy=float((model.predict(x) == y).mean()),
        n_train=len(y),
        n_test=len(y_test),
        size=size,
        classes=tuple(int(k) for k in classes),
        majority_accuracy=float((y_test == majority).mean()),
    )


def cache_baseline(
    cache: str | Path,
    task: str = "gender",
    size: int = 32,
    test_split: str = "test",
    max_train: int | None = 20000,
    seed: int = 0,
) -> BaselineResult:
    """:func:`logistic_regression_baseline` on a training cache (``images.npy`` + ``labels.npz``).

    Args:
        cache: Cache folder (see :mod:`facelens.train.cache`).
        task: ``"gender"`` or ``"race"`` (the integer-labelled tasks).
        size: Side of the gray images.
        test_split: Split to report on (``"test"`` or ``"val"``); trains on ``"train"``.
        max_train: Use at most this many labelled training rows (seeded random subset); None = all.
        seed: Seed of that subset.

    """
    from .cache import open_cache

    if task not in ("gender", "race"):
        raise ValueError(f"task must be 'gender' or 'race', not {task!r}")
    arrays = open_cache(cache)
    labels, split = np.asarray(arrays.labels[task]), np.asarray(arrays.labels["split"])
    images = arrays.images
    train_rows = np.flatnonzero((split == "train") & (labels >= 0))
    test_rows = np.flatnonzero((split == test_split) & (labels >= 0))
    if max_train is not None and len(train_rows) > max_train:
        train_rows = np.sort(np.random.default_rng(seed).choice(train_rows, max_train, replace=False))
    return logistic_regression_baseline(
        images[train_rows], labels[train_rows], images[test_rows], labels[test_rows], size=size, seed=seed
    )

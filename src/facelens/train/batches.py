"""Training batches: the cache as a batch dataset, source-mixed batch plans, normalisation and augmentation.

Every training batch holds a fixed share of each source (``DatasetSpec.weight``, normalised), each source cycling
through its own seeded permutation, so small sources are oversampled rather than drowned out
(:func:`mixed_batches`). Images stay uint8 until they reach the device; :func:`augment_batch` augments whole
batches in torch and :func:`prepare_batch` is the validation / inference path (resize and normalise only).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .config import AugmentConfig, ConfigError
from .models import IMAGENET_MEAN, IMAGENET_STD


class CacheBatches(torch.utils.data.Dataset):
    """Map-style dataset whose items are whole batches: ``dataset[list_of_rows]`` -> dict of tensors.

    Images stay uint8 ``(N, S, S, 3)`` (augmentation and normalisation happen on the device). The memmap is
    opened lazily so DataLoader workers open their own.
    """

    def __init__(self, path: Path, labels: dict[str, np.ndarray]) -> None:
        self.path = Path(path)
        self.labels = {k: labels[k] for k in ("age", "gender", "race", "attributes")}
        self._images: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels["age"])

    def __getitem__(self, rows: list[int]) -> dict[str, torch.Tensor]:
        if self._images is None:
            self._images = np.load(self.path / "images.npy", mmap_mode="r")
        rows_a = np.sort(np.asarray(rows, dtype=np.int64))  # sorted rows read the memmap sequentially
        lab = self.labels
        return {
            "image": torch.from_numpy(np.ascontiguousarray(self._images[rows_a])),
            "age": torch.from_numpy(lab["age"][rows_a].astype(np.float32)),
            "gender": torch.from_numpy(lab["gender"][rows_a].astype(np.int64)),
            "race": torch.from_numpy(lab["race"][rows_a].astype(np.int64)),
            "attributes": torch.from_numpy(lab["attributes"][rows_a].astype(np.float32)),
        }


def mixed_batches(
    sources: dict[str, np.ndarray],
    weights: dict[str, float],
    batch_size: int,
    steps: int,
    seed: int,
    epoch: int,
) -> list[list[int]]:
    """Row lists of ``steps`` training batches, each with a fixed share of every source.

    The share of source ``s`` is ``batch_size * weights[s] / sum(weights)``, rounded by largest remainder.
    Each source is drawn from consecutive seeded permutations of its rows (a new permutation when one runs
    out).

    Args:
        sources: Source id -> cache rows of its training samples (sources without rows are ignored).
        weights: Source id -> mixing weight.
        batch_size: Rows per batch.
        steps: Number of batches.
        seed: Run seed.
        epoch: Epoch number (batches differ per epoch, reproducibly).

    """
    live = [s for s in sources if len(sources[s]) > 0 and weights.get(s, 0.0) > 0]
    if not live:
        raise ConfigError("no training samples: every source with weight > 0 is empty in the cache")
    w = np.array([weights[s] for s in live], dtype=np.float64)
    raw = batch_size * w / w.sum()
    quota = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - quota))[: batch_size - quota.sum()]:
        quota[i] += 1
    rng = np.random.default_rng([seed, epoch])
    streams = []
    for s, q in zip(live, quota, strict=True):
        need, rows = int(q) * steps, sources[s]
        reps = -(-need // len(rows)) if need else 0
        streams.append(np.concatenate([rng.permutation(rows) for _ in range(reps)] or [rows[:0]])[:need])
    batches = []
    for b in range(steps):
        parts = [st[b * q : (b + 1) * q] for st, q in zip(streams, quota, strict=True)]
        batches.append(np.concatenate(parts).tolist())
    return batches


def normalise(x: torch.Tensor) -> torch.Tensor:
    """Float ``(N, 3, H, W)`` in 0..1 -> ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def prepare_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """Convert uint8 ``(N, S, S, 3)`` -> normalised float ``(N, 3, size, size)`` (for evaluation).

    Resizes bilinearly (no antialiasing, like the warp at inference) when ``size`` differs from ``S``.
    """
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return normalise(x)


def augment_batch(images: torch.Tensor, cfg: AugmentConfig, size: int, generator: torch.Generator) -> torch.Tensor:
    """Training preprocessing with cheap, label-preserving batch augmentations, all in torch.

    Per image, drawn uniformly: horizontal flip with probability ``cfg.flip``; one similarity warp combining
    zoom ``1 +- cfg.scale``, rotation ``+- cfg.rotate`` degrees and shift ``+- cfg.shift`` of the side
    (bilinear, border pixels replicated as in :func:`facelens.align.align_face`), which also resizes to
    ``size``; brightness ``x * (1 +- cfg.brightness)``; contrast ``(x - mean) * (1 +- cfg.contrast) + mean``
    around the image's mean; clamped to 0..1, then ImageNet-normalised. No label depends on left/right, so
    flipping keeps all labels.

    Args:
        images: uint8 ``(N, S, S, 3)`` on the training device.
        cfg: Augmentation strengths.
        size: Output side.
        generator: Random generator on the same device.

    Returns:
        Float ``(N, 3, size, size)``.

    """
    n, dev = images.shape[0], images.device
    x = images.permute(0, 3, 1, 2).float().div_(255.0)

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(n, device=dev, generator=generator) * (hi - lo) + lo

    flip = torch.where(uniform(0, 1) < cfg.flip, -1.0, 1.0)
    zoom = uniform(1 - cfg.scale, 1 + cfg.scale)
    angle = uniform(-cfg.rotate, cfg.rotate) * (math.pi / 180.0)
    tx, ty = uniform(-cfg.shift, cfg.shift) * 2.0, uniform(-cfg.shift, cfg.shift) * 2.0
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    x = x * uniform(1 - cfg.brightness, 1 + cfg.brightness).view(n, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * uniform(1 - cfg.contrast, 1 + cfg.contrast).view(n, 1, 1, 1) + mean
    return normalise(x.clamp_(0.0, 1.0))

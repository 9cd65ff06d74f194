"""A tiny synthetic aligned-face cache for tests and demos (random images, random labels).

It is written in exactly the format of :mod:`facelens.train.cache` (``images.npy``, ``labels.npz``,
``meta.json``), plus an optional ``identity`` column (the real cache has none; the experiment tools read
identities from the dataset readers, or from such a column when a cache carries one). Images get a faint
gender-dependent brightness so a few training steps can beat chance, which keeps metrics non-degenerate.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

N_ATTRIBUTES = 40
MALE_INDEX = 20
TINY_ARCH = "synthetic_tiny"
"""Name under which :func:`tiny_arch` registers its backbone."""


@contextlib.contextmanager
def tiny_arch() -> Iterator[str]:
    """Register a minimal backbone (one strided 3x3 convolution, 8 features) for the duration of the block.

    Tests use it to exercise the experiment tools in seconds; it is removed from the registry afterwards so no
    other test sees it.

    Yields:
        Its registry name, :data:`TINY_ARCH`.

    """
    from torch import nn

    from ..train.models import ARCHITECTURES, register_arch

    class TinyBackbone(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.out_features = 8

        def forward(self, x: object) -> object:
            return self.net(x)

    previous = ARCHITECTURES.get(TINY_ARCH)
    register_arch(TINY_ARCH)(lambda pretrained=False: TinyBackbone())
    try:
        yield TINY_ARCH
    finally:
        if previous is None:
            ARCHITECTURES.pop(TINY_ARCH, None)
        else:
            ARCHITECTURES[TINY_ARCH] = previous


def make_synthetic_cache(path: str | Path, n: int = 48, size: int = 32, seed: int = 0, identities: bool = True) -> Path:
    """Write a synthetic cache with two sources, ``utkface`` and ``celeba``.

    The first half of the rows look like UTKFace (age, gender, race; no attributes), the second half like
    CelebA (40 attributes, gender from ``Male``; no age or race). Each source is split 60/20/20 into
    train/val/test. With ``identities``, every two consecutive rows share a subject id.

    Args:
        path: Folder to create.
        n: Number of faces (at least 20).
        size: Crop side in pixels.
        seed: Random seed.
        identities: Also write an ``identity`` column.

    Returns:
        The folder.

    """
    rng = np.random.default_rng(seed)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    half = n // 2
    utk = np.arange(n) < half
    gender = rng.integers(0, 2, n).astype(np.int8)
    attributes = np.where(utk[:, None], -1, rng.integers(0, 2, (n, N_ATTRIBUTES))).astype(np.int8)
    attributes[~utk, MALE_INDEX] = (gender[~utk] == 0).astype(np.int8)
    base = rng.integers(0, 200, (n, size, size, 3))
    images = np.lib.format.open_memmap(path / "images.npy", mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    images[:] = np.clip(base + 55 * gender[:, None, None, None], 0, 255).astype(np.uint8)
    images.flush()
    del images
    split = np.empty(n, dtype="<U5")
    for rows in (np.flatnonzero(utk), np.flatnonzero(~utk)):
        k = len(rows)
        split[rows] = "train"
        split[rows[int(0.6 * k) : int(0.8 * k)]] = "val"
        split[rows[int(0.8 * k) :]] = "test"
    labels = {
        "age": np.where(utk, rng.uniform(1, 90, n), np.nan).astype(np.float32),
        "gender": gender,
        "race": np.where(utk, rng.integers(0, 5, n), -1).astype(np.int8),
        "attributes": attributes,
        "split": split,
        "dataset": np.where(utk, "utkface", "celeba"),
        "source_index": np.arange(n, dtype=np.int32),
        "path": np.array([f"synthetic/{i:05d}.jpg" for i in range(n)]),
        "landmarks": np.zeros((n, 5, 2), np.float32),
        "det_score": np.ones(n, np.float32),
    }
    if identities:
        labels["identity"] = np.array([f"s{i // 2}" for i in range(n)])
    np.savez(path / "labels.npz", **labels)
    totals = {"samples": n, "faces": n, "no_face": 0, "unreadable": 0}
    (path / "meta.json").write_text(json.dumps({"key": "synthetic", "size": size, "totals": totals}))
    return path


def tiny_recipe(
    path: str | Path,
    out_dir: str | Path,
    size: int = 32,
    weights: tuple[float, float] = (0.5, 0.5),
    epochs: int = 1,
    steps: int = 2,
    name: str = "tiny",
    arch: str = "mobilenet_v2",
) -> Path:
    """Write a recipe for the synthetic cache: MobileNetV2 (random init) at ``size`` px, ``steps`` batches/epoch.

    Args:
        path: The YAML file to write.
        out_dir: Folder for ``train.out_dir`` and ``data.cache_dir``.
        size: Input size.
        weights: Batch weights of the ``utkface`` and ``celeba`` sources.
        epochs: Epochs.
        steps: ``train.fast_dev_run`` (training and validation batches per epoch).
        name: Recipe name.
        arch: Backbone (``TINY_ARCH`` inside :func:`tiny_arch` for the fastest tests).

    Returns:
        The YAML file.

    """
    import yaml

    recipe = {
        "name": name,
        "data": {
            "datasets": [
                {"name": "utkface", "root": "unused", "id": "utkface", "weight": weights[0]},
                {"name": "celeba", "root": "unused", "id": "celeba", "weight": weights[1]},
            ],
            "cache_dir": str(Path(out_dir) / "cache"),
        },
        "preprocess": {"size": size, "workers": 0},
        "model": {"arch": arch, "pretrained": False, "input_size": size, "dropout": 0.1},
        "optim": {"batch_size": 8, "epochs": epochs, "lr": 0.002, "warmup_epochs": 0.0},
        "train": {
            "out_dir": str(Path(out_dir) / "run"),
            "fast_dev_run": steps,
            "val_batch_size": 16,
            "patience": 0,
            "device": "cpu",
            "num_threads": 1,
        },
    }
    path = Path(path)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path

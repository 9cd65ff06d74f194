"""Fixtures of the training-toolkit tests: a tiny synthetic cache and configs, no shared data needed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("yaml")

from facelens.train.config import (  # noqa: E402
    DataConfig,
    DatasetSpec,
    LoopConfig,
    ModelConfig,
    OptimConfig,
    PreprocessConfig,
    TrainConfig,
)

SIZE = 32


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny tensors: one thread is as fast, and much faster when the machine is busy."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_tiny_cache(path: Path, n: int = 32, size: int = SIZE, seed: int = 0) -> Path:
    """Write a cache folder in the format of ``facelens.train.cache`` with random images and labels.

    Half the rows look like UTKFace (age, gender, race; no attributes), half like CelebA (attributes and gender;
    no age or race). Splits: 6 val, 2 test, the rest train.
    """
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    images = np.lib.format.open_memmap(path / "images.npy", mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    images[:] = rng.integers(0, 256, images.shape, dtype=np.uint8)
    images.flush()
    half = n // 2
    utk = np.arange(n) < half
    age = np.where(utk, rng.uniform(1, 90, n), np.nan).astype(np.float32)
    gender = rng.integers(0, 2, n).astype(np.int8)
    race = np.where(utk, rng.integers(0, 5, n), -1).astype(np.int8)
    attributes = np.where(utk[:, None], -1, rng.integers(0, 2, (n, 40))).astype(np.int8)
    split = np.array(["train"] * n, dtype="<U5")
    split[[0, 1, 2, half, half + 1, half + 2]] = "val"
    split[[3, 4]] = "test"
    np.savez(
        path / "labels.npz",
        age=age,
        gender=gender,
        race=race,
        attributes=attributes,
        split=split,
        dataset=np.where(utk, "utk", "celeba"),
        source_index=np.arange(n, dtype=np.int32),
        path=np.array([f"img{i}.jpg" for i in range(n)]),
        landmarks=np.zeros((n, 5, 2), np.float32),
        det_score=np.ones(n, np.float32),
    )
    totals = {"samples": n, "faces": n, "no_face": 0, "unreadable": 0}
    (path / "meta.json").write_text(json.dumps({"key": "tiny", "size": size, "totals": totals}))
    return path


def tiny_config(out_dir: Path, **loop: object) -> TrainConfig:
    """A config that trains MobileNetV2 (random init) on 32 px inputs for one fast_dev_run epoch."""
    return TrainConfig(
        name="tiny",
        data=DataConfig(
            datasets=(
                DatasetSpec(name="utkface", root="unused", id="utk", weight=0.5),
                DatasetSpec(name="celeba", root="unused", id="celeba", weight=0.5),
            ),
            cache_dir=str(out_dir / "cache"),
        ),
        preprocess=PreprocessConfig(size=SIZE, workers=0),
        model=ModelConfig(arch="mobilenet_v2", pretrained=False, input_size=SIZE, dropout=0.1),
        optim=OptimConfig(batch_size=8, epochs=1, lr=1e-3),
        train=LoopConfig(
            **{"out_dir": str(out_dir / "run"), "fast_dev_run": 2, "val_batch_size": 8, "patience": 0, **loop}
        ),
    ).validate()


@pytest.fixture()
def make_config() -> Callable[..., TrainConfig]:
    """The :func:`tiny_config` factory (test modules cannot import from conftest)."""
    return tiny_config


@pytest.fixture()
def tiny_cache(tmp_path: Path) -> Path:
    return make_tiny_cache(tmp_path / "tiny_cache")


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint from a fast_dev_run on the tiny cache (shared by the export tests of a module)."""
    from facelens.train.engine import train

    root = tmp_path_factory.mktemp("trained")
    cache = make_tiny_cache(root / "cache")
    result = train(tiny_config(root), progress=False, cache=cache)
    return result.best_checkpoint

"""Which samples ``facelens eval`` evaluates: the held-out split of the model's training run, reproduced.

Datasets without an official split (UTKFace, FG-NET) get the SAME seeded split as training, computed by the
training code itself (:func:`facelens.train.cache.to_records`) from ``data.val_fraction``, ``data.test_fraction``,
``data.seed`` and the source's reader, id, options and ``max_samples``. Without ``--recipe`` these come from the
model's metadata, where the exporter stores the settings of the actual training run (:func:`split_settings`,
``--set`` overrides included); models exported before that fall back to the recipe named in their metadata
(``recipes/<name>.yaml``) when present, else the :class:`facelens.train.config.DataConfig` defaults. A
``--recipe`` that splits the dataset differently from the settings stored in the model is refused (its
"held-out" images could be training images). Official splits (CelebA, FairFace) are used as they are.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError, FaceLensError, ModelError
from .metrics import Serializable

TRAINED_BY_DEFAULT: frozenset[str] = frozenset({"utkface", "celeba"})
"""Datasets assumed to be in the training data when no recipe is known."""

SPLIT_KEY = "split"
"""Key of a model's ``metadata.extra`` (ONNX ``facelens.extra.split``) that holds :func:`split_settings` as JSON."""

STORED_SPLIT = "recipe stored in the model metadata"
"""``SplitInfo.split_from`` of a split reproduced from the settings stored in the model."""


@dataclass(frozen=True)
class SplitInfo(Serializable):
    """Which samples were evaluated and how that split was made.

    Attributes:
        split: ``"val"``, ``"test"`` or ``"all"``.
        source: Source id whose seeded split was reproduced (the recipe's dataset ``id`` or name).
        split_from: ``"recipe <path>"``, ``"recipe stored in the model metadata"`` (:data:`STORED_SPLIT`),
            ``"defaults"`` or ``"not in training data"``.
        val_fraction: Recipe value used for the seeded split.
        test_fraction: Likewise.
        seed: Likewise (``data.seed``).
        max_samples: The recipe's ``max_samples`` of this source (its subset is reproduced too).
        n_train: Samples of the dataset in the training split.
        n_val: In the validation split.
        n_test: In the test split.
        n_unused: Left out of training altogether by ``max_samples`` (not evaluated under val/test).
        n_selected: Samples of the chosen split (before ``--limit``).

    """

    split: str
    source: str
    split_from: str
    val_fraction: float
    test_fraction: float
    seed: int
    max_samples: int | None
    n_train: int
    n_val: int
    n_test: int
    n_unused: int
    n_selected: int


def split_settings(data: Any) -> dict[str, Any]:
    """The settings of a :class:`facelens.train.config.DataConfig` that decide which split every sample falls in.

    Exactly what :func:`facelens.train.cache.collect_records` draws the split from: ``val_fraction``,
    ``test_fraction``, ``seed``, and per source the reader ``name``, the source ``id`` (it seeds the permutation),
    the reader ``options`` (they decide which samples are listed) and ``max_samples`` (the seeded subset). Roots
    are left out (the evaluation is told where the dataset is). JSON-ready; the exporter stores it in the model.
    """
    sources = [{"name": s.name, "id": s.key, "options": s.options, "max_samples": s.max_samples} for s in data.datasets]
    settings = {"val_fraction": data.val_fraction, "test_fraction": data.test_fraction, "seed": data.seed}
    return json.loads(json.dumps({**settings, "sources": sources}, sort_keys=True, default=str))


def _data_config(settings: dict[str, Any]) -> Any:
    """The :class:`facelens.train.config.DataConfig` of stored :func:`split_settings` (roots left empty)."""
    from ..train.config import DataConfig, from_mapping

    sources = [{"root": "", **{k: s[k] for k in ("name", "id", "options", "max_samples")}} for s in settings["sources"]]
    fractions = {k: settings[k] for k in ("val_fraction", "test_fraction", "seed")}
    return from_mapping(DataConfig, {"datasets": sources, **fractions})


def _split_differences(a: dict[str, Any], b: dict[str, Any], dataset: str) -> str:
    """How two :func:`split_settings` split ``dataset`` differently (its first source, as used here); "" if not."""
    a, b = ({**x, "sources": [s for s in x["sources"] if s["name"] == dataset][:1]} for x in (a, b))
    return "; ".join(f"{k}: {json.dumps(a[k])} vs {json.dumps(b[k])}" for k in a if a[k] != b[k])


def stored_split(heads: Sequence[Any], dataset: str) -> dict[str, Any] | None:
    """The :func:`split_settings` stored in the head models' metadata (None when no model has them: older exports).

    Raises:
        ModelError: If a model's stored settings are malformed, or two models split ``dataset`` differently.

    """
    found: tuple[Any, dict[str, Any]] | None = None
    for head in heads:
        if (text := head.metadata.extra.get(SPLIT_KEY)) is None:
            continue
        try:
            settings = split_settings(_data_config(json.loads(text)))
        except (FaceLensError, AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{head.path}: bad facelens.extra.{SPLIT_KEY} ({type(exc).__name__}: {exc})") from None
        if found is not None and (diff := _split_differences(found[1], settings, dataset)):
            raise ModelError(f"{found[0].path} and {head.path} were trained on different {dataset} splits ({diff}): "
                             "evaluate them one at a time with --model")  # fmt: skip
        found = found or (head, settings)
    return None if found is None else found[1]


def select_split(
    dataset: str, root: str | Path, split: str | None, recipe: str | Path | None, stored: dict[str, Any] | None = None
) -> tuple[list[Any], SplitInfo]:
    """Read a dataset and pick the samples of one split, reproducing the training split.

    Args:
        dataset: Reader name.
        root: Dataset folder.
        split: ``"val"``, ``"test"``, ``"all"``, or None: ``"test"`` for datasets in the training data (``"val"``
            when the test split is empty, e.g. the shared CelebA crops), else ``"all"``.
        recipe: Training recipe (YAML) whose split settings to reproduce.
        stored: The model's own :func:`split_settings` (:func:`stored_split`), used when ``recipe`` is None. With
            neither, the :class:`facelens.train.config.DataConfig` defaults are used.

    Returns:
        The samples (:class:`facelens.data.FaceSample`) in reader order, and how they were chosen.

    Raises:
        DatasetError: If the dataset cannot be read, the split is empty, or ``recipe`` splits ``dataset``
            differently from ``stored`` (its "held-out" images could have been trained on).

    """
    from ..data import create_dataset
    from ..train.cache import to_records
    from ..train.config import DataConfig

    if split not in (None, "val", "test", "all"):
        raise DatasetError(f"split must be val, test or all, not {split!r}")
    data = DataConfig()
    split_from = "defaults"
    if recipe is not None:
        from ..train.config import load_config

        data = load_config(recipe).data
        split_from = f"recipe {recipe}"
        if stored is not None and (diff := _split_differences(split_settings(data), stored, dataset)):
            raise DatasetError(
                f"--recipe {recipe} splits {dataset} differently from the training run of the model, whose split "
                f"settings are stored in its metadata ({diff}; recipe vs model): its held-out images could be "
                "training images. Leave out --recipe to reproduce the model's own split."
            )
    elif stored is not None:
        data, split_from = _data_config(stored), STORED_SPLIT
    spec = next((s for s in data.datasets if s.name == dataset), None)
    trained = spec is not None or (split_from == "defaults" and dataset in TRAINED_BY_DEFAULT)
    if not trained:
        split_from = "not in training data"
    key = spec.key if spec is not None else dataset
    index = create_dataset(dataset, root, **(spec.options if spec is not None else {})).load()
    samples = list(index.samples)
    max_samples = spec.max_samples if spec is not None else None
    if trained:  # exactly what facelens.train.cache.collect_records does: subset, then split
        keep = np.arange(len(samples))
        if max_samples is not None and max_samples < len(keep):
            rng = np.random.default_rng([data.seed, zlib.crc32(key.encode()), 1])
            keep = np.sort(rng.choice(len(keep), max_samples, replace=False))
        splits = ["unused"] * len(samples)
        records = to_records(key, [samples[i] for i in keep], data.val_fraction, data.test_fraction, data.seed)
        for i, rec in zip(keep.tolist(), records, strict=True):
            splits[i] = rec.split
    else:  # never trained on: an official split is kept, everything else is held out
        splits = [s.split or "all" for s in samples]
    if split is None:
        split = ("test" if "test" in splits else "val") if trained else "all"
    chosen = [s for s, sp in zip(samples, splits, strict=True) if split == "all" or sp == split]
    if not chosen:
        raise DatasetError(f"{dataset}: split {split!r} is empty under {root} ({len(samples)} samples in all)")
    info = SplitInfo(
        split, key, split_from, data.val_fraction, data.test_fraction, data.seed, max_samples,
        splits.count("train"), splits.count("val"), splits.count("test"), splits.count("unused"), len(chosen),
    )  # fmt: skip
    return chosen, info


def limit_samples(samples: list[Any], limit: int | None, seed: int) -> list[Any]:
    """A seeded random subset of ``limit`` samples, in reader order (UTKFace is sorted by age: no prefix)."""
    if limit is None or limit >= len(samples):
        return samples
    idx = np.sort(np.random.default_rng(seed).choice(len(samples), limit, replace=False))
    return [samples[i] for i in idx]


def _check_images(dataset: str, root: str | Path, samples: Sequence[Any]) -> int:
    missing = [s.path for s in samples if not Path(s.path).is_file()]
    if missing and len(missing) == len(samples):
        raise DatasetError(
            f"{dataset}: {len(missing)} of {len(samples)} image files of this split are missing (e.g. "
            f"{missing[0]}): the copy under {root} has labels only. Put the images where the {dataset} reader "
            "expects them (see its docstring in facelens.data) and retry."
        )
    return len(missing)


def auto_recipe(analyzer: Any) -> Path | None:
    """``recipes/<name>.yaml`` for the recipe named in a loaded model's metadata, when that file exists here."""
    for head in analyzer.heads:
        name = head.metadata.extra.get("recipe")
        if name and Path("recipes", f"{name}.yaml").is_file():
            return Path("recipes", f"{name}.yaml")
    return None


def split_source(analyzer: Any, dataset: str, recipe: str | Path | None) -> tuple[str | Path | None, Any, bool]:
    """``(recipe, stored, auto)`` for :func:`select_split`.

    ``recipe`` as given, the models' :func:`stored_split`, and, for older models without one, the recipe named
    in their metadata (:func:`auto_recipe`; ``auto`` is then True).
    """
    stored = stored_split(analyzer.heads, dataset)
    if recipe is None and stored is None and (auto := auto_recipe(analyzer)) is not None:
        return auto, None, True
    return recipe, stored, False

"""Evaluate the attribute heads on labelled face datasets, through the full pipeline.

``facelens eval utkface|celeba|fgnet|fairface|adience|lfw --root DIR`` (and :func:`evaluate_dataset`) read a
dataset with :func:`facelens.data.create_dataset`, run :class:`facelens.pipeline.FaceAnalyzer` (detect with
padding, align, heads) on every image of the chosen split, keep ONE face per image (the rule of the training
cache, :func:`facelens.train.cache.choose_face`: the largest, most central confident face), and compute every
metric of :mod:`facelens.eval.metrics` that the dataset's labels allow. Images without a face and unreadable
images are counted, never fatal.

Held-out split: datasets without an official split (UTKFace, FG-NET) get the SAME seeded split as training,
computed by the training code itself (:func:`facelens.train.cache.to_records`) from ``data.val_fraction``,
``data.test_fraction``, ``data.seed`` and the source's reader, id, options and ``max_samples``. Without
``--recipe`` these come from the model's metadata, where the exporter stores the settings of the actual training
run (:func:`split_settings`, ``--set`` overrides included); models exported before that fall back to the recipe
named in their metadata (``recipes/<name>.yaml``) when present, else the :class:`facelens.train.config.DataConfig`
defaults. A ``--recipe`` that splits the dataset differently from the settings stored in the model is refused
(its "held-out" images could be training images). Official splits (CelebA, FairFace) are used as they are.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import DatasetError, FaceLensError, ModelError
from ..labels import CELEBA_ATTRIBUTES, GENDERS, RACES, age_group_label, nearest_group
from . import metrics as M
from .metrics import Serializable
from .predictions import ImagePredictions

__all__ = [
    "DATASET_NAMES",
    "DetectionStats",
    "EvalReport",
    "FairnessReport",
    "ModelRef",
    "SplitInfo",
    "evaluate_dataset",
    "model_ref",
    "pick_face",
    "select_split",
    "split_settings",
    "stored_split",
]

DATASET_NAMES: tuple[str, ...] = ("utkface", "celeba", "fgnet", "fairface", "adience", "lfw")
"""Datasets ``facelens eval`` can evaluate the heads on."""

TRAINED_BY_DEFAULT: frozenset[str] = frozenset({"utkface", "celeba"})
"""Datasets assumed to be in the training data when no recipe is known."""

FAIRNESS_MIN_COUNT = 20
"""Groups with fewer faces are shown but left out of the fairness gaps."""

ADULT_AGE = 20
"""Youngest labelled age in the adults-only fairness view (children's gender is hard to see at any ethnicity)."""

AGE_BANDS: tuple[tuple[int, int], ...] = ((0, 9), (10, 19), (20, 39), (40, 59), (60, 100))
"""Age bands (first, last year; labelled by :func:`~facelens.labels.age_group_label`) of the gender-by-age view."""

SPLIT_KEY = "split"
"""Key of a model's ``metadata.extra`` (ONNX ``facelens.extra.split``) that holds :func:`split_settings` as JSON."""

STORED_SPLIT = "recipe stored in the model metadata"
"""``SplitInfo.split_from`` of a split reproduced from the settings stored in the model."""

SCHEMA = "facelens.eval/1"
SAMPLE_IMAGE = Path(__file__).resolve().parent.parent / "assets" / "astronaut.jpg"
_EXAMPLES = 10


# --- results ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRef(Serializable):
    """A head model that took part: enough to tell which file produced the numbers."""

    name: str
    version: str
    path: str
    sha256: str
    tasks: tuple[str, ...]


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


@dataclass(frozen=True)
class DetectionStats(Serializable):
    """How many images yielded a face.

    Attributes:
        images: Images attempted.
        with_face: Images with at least one face (their chosen face was evaluated).
        no_face: Readable images without a detected face.
        errors: Images that could not be read or analysed.
        multi_face: Images with more than one face (one was chosen).
        no_face_examples: A few paths without a face.
        error_examples: A few ``"path: reason"`` strings.

    """

    _derived: ClassVar[tuple[str, ...]] = ("detection_rate",)

    images: int
    with_face: int
    no_face: int
    errors: int
    multi_face: int
    no_face_examples: tuple[str, ...] = ()
    error_examples: tuple[str, ...] = ()

    @property
    def detection_rate(self) -> float:
        """Share of readable images with a face."""
        read = self.images - self.errors
        return self.with_face / read if read else float("nan")


@dataclass(frozen=True)
class FairnessReport(Serializable):
    """Metrics per sensitive group (perceived ethnicity and gender labels of the dataset)."""

    gender_accuracy_by_race: M.GroupedMetric | None = None
    gender_accuracy_by_race_adults: M.GroupedMetric | None = None
    gender_accuracy_by_age: M.GroupedMetric | None = None
    age_mae_by_race: M.GroupedMetric | None = None
    age_mae_by_gender: M.GroupedMetric | None = None
    race_accuracy_by_gender: M.GroupedMetric | None = None

    def views(self) -> tuple[M.GroupedMetric, ...]:
        """The views that could be computed."""
        return tuple(v for v in self.__dict__.values() if v is not None)


@dataclass(frozen=True)
class EvalReport(Serializable):
    """Everything ``facelens eval DATASET`` measures. Metrics the labels or heads do not allow are None."""

    dataset: str
    root: str
    command: str
    facelens_version: str
    models: tuple[ModelRef, ...]
    split: SplitInfo
    limit: int | None
    seed: int
    detection: DetectionStats
    age: M.AgeMetrics | None
    age_interval: M.CoverageMetrics | None
    age_groups_adience: M.GroupAccuracy | None
    age_groups_utkface: M.GroupAccuracy | None
    gender: M.ClassificationMetrics | None
    race: M.ClassificationMetrics | None
    attributes: M.AttributeMetrics | None
    fairness: FairnessReport | None
    predicted_gender: tuple[M.GroupValue, ...] | None
    seconds: float
    ms_per_image: float
    notes: tuple[str, ...] = ()
    plots: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ``-o`` file; :mod:`facelens.eval.card` reads it)."""
        return {"schema": SCHEMA, **super().to_dict()}


# --- split --------------------------------------------------------------------------------------------------


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


# --- evaluation ---------------------------------------------------------------------------------------------


def pick_face(result: Any) -> Any:
    """The face an image of a face dataset is about, or None: the training cache's rule (largest, most central)."""
    from ..train.cache import choose_face

    chosen = choose_face([f.detection for f in result.faces], result.width, result.height)
    return None if chosen is None else next(f for f in result.faces if f.detection is chosen)


def model_ref(head: Any) -> ModelRef:
    """Identify a loaded :class:`facelens.heads.HeadModel` (name, version, file and its SHA-256)."""
    digest = hashlib.sha256(Path(head.path).read_bytes()).hexdigest()
    m = head.metadata
    return ModelRef(m.name, m.version, str(head.path), digest, tuple(m.tasks))


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


def warm_up(*systems: Any) -> None:
    """Run each system (with ``analyze_array`` or ``predict``) once on the bundled photo: loading is not timed."""
    from ..io import load_image

    image = load_image(SAMPLE_IMAGE)
    for system in systems:
        (system.analyze_array if hasattr(system, "analyze_array") else system.predict)(image)


def progress_bar(items: list[Any], enabled: bool, desc: str) -> Any:
    """Wrap ``items`` in a tqdm bar on stderr when enabled and tqdm is installed."""
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=desc, unit="img", file=sys.stderr, smoothing=0.05)


def evaluate_dataset(
    dataset: str,
    root: str | Path,
    *,
    split: str | None = None,
    recipe: str | Path | None = None,
    model: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    plots: str | Path | None = None,
    plot_prefix: str | None = None,
    progress: bool = False,
    command: str = "",
    analyzer: Any = None,
    predictions: str | Path | None = None,
) -> EvalReport:
    """Run the full pipeline on a dataset split and measure every head the labels allow.

    Args:
        dataset: One of :data:`DATASET_NAMES`.
        root: The dataset folder.
        split: ``"val"``, ``"test"``, ``"all"`` or None (see :func:`select_split`).
        recipe: Training recipe whose held-out split to reproduce (refused if it splits ``dataset`` differently
            from the split settings stored in the model); None: those stored settings, for older models
            ``recipes/<recipe in the model metadata>.yaml`` if present, else the defaults.
        model: Head model name or ``.onnx`` path; None uses every installed model.
        limit: Evaluate a seeded random subset of this many samples.
        seed: Seed of that subset.
        plots: Folder to write PNG plots into (None: no plots).
        plot_prefix: File name prefix of the plots (default ``<dataset>_<split>``).
        progress: Show a tqdm progress bar.
        command: The command line to record in the report.
        analyzer: A ready :class:`facelens.pipeline.FaceAnalyzer` (overrides ``model``; for tests).
        predictions: Also write one CSV row per image here (labels, answers, probabilities; see
            :mod:`facelens.eval.predictions`).

    Returns:
        The report.

    Raises:
        DatasetError: The dataset cannot be read, the split is empty, none of its images exist, or ``recipe``
            disagrees with the model's stored split.
        ModelError: The model cannot be loaded, no head model is installed (datasets other than LFW), or models
            store different splits of ``dataset``.

    """
    from .. import __version__
    from ..heads import unanswered_tasks
    from ..io import load_image
    from ..pipeline import AnalyzerConfig, FaceAnalyzer

    if dataset not in DATASET_NAMES:
        raise DatasetError(f"cannot evaluate heads on {dataset!r}; datasets: {', '.join(DATASET_NAMES)}")
    if analyzer is None:
        analyzer = FaceAnalyzer(AnalyzerConfig(heads=(model,) if model else None, detector_options={"pad": "auto"}))
    heads = analyzer.heads
    if not heads and dataset != "lfw":
        raise ModelError("no head model installed: pass --model NAME_OR_PATH or set FACELENS_MODEL_PATH")
    notes: list[str] = []
    recipe, stored, auto = split_source(analyzer, dataset, recipe)
    if auto:
        notes.append(f"split reproduced from {recipe} (named in the model metadata)")
    samples, info = select_split(dataset, root, split, recipe, stored)
    if info.split_from == STORED_SPLIT:
        fractions = f"val_fraction {info.val_fraction:g}, test_fraction {info.test_fraction:g}, seed {info.seed}"
        notes.append(f"split reproduced from the training run's data settings in the model metadata ({fractions})")
    if info.split_from == "defaults":
        notes.append("no recipe given or found: split from the training defaults (val 0.1, test 0.1, seed 0)")
    missing = _check_images(dataset, root, samples)
    if missing:
        notes.append(f"{missing} of {len(samples)} image files of the split are missing (counted as errors)")
    samples = limit_samples(samples, limit, seed)
    if missing_tasks := unanswered_tasks(heads):
        notes.append(f"no head answers: {', '.join(missing_tasks)}")

    n = len(samples)
    preds = ImagePredictions.empty(n)
    no_face: list[str] = []
    errors: list[str] = []
    multi = 0
    t_run = 0.0
    warm_up(analyzer)
    t0 = time.perf_counter()
    for i, s in enumerate(progress_bar(samples, progress, dataset)):
        try:
            image = load_image(s.path, max_pixels=analyzer.config.max_pixels)
            t1 = time.perf_counter()
            result = analyzer.analyze_array(image, path=str(s.path))
            t_run += time.perf_counter() - t1
        except Exception as exc:  # noqa: BLE001 - a bad image is counted, never fatal
            preds.fail(i, f"{type(exc).__name__}: {exc}")
            errors.append(f"{s.path}: {type(exc).__name__}: {exc}")
            continue
        face = pick_face(result)
        if face is None:
            no_face.append(str(s.path))
            continue
        multi += len(result.faces) > 1
        preds.record(i, face)
    seconds = time.perf_counter() - t0

    detection = DetectionStats(
        n,
        int(preds.found.sum()),
        len(no_face),
        len(errors),
        multi,
        tuple(no_face[:_EXAMPLES]),
        tuple(errors[:_EXAMPLES]),
    )
    computed = _compute(samples, preds)
    read = n - len(errors)
    report = EvalReport(
        dataset=dataset,
        root=str(root),
        command=command,
        facelens_version=__version__,
        models=tuple(model_ref(h) for h in heads),
        split=info,
        limit=limit,
        seed=seed,
        detection=detection,
        seconds=round(seconds, 2),
        ms_per_image=round(1000 * t_run / read, 2) if read else 0.0,
        notes=tuple(notes),
        **computed,
    )
    if plots is not None:
        from .card import write_plots

        prefix = plot_prefix or f"{dataset}_{info.split}"
        age_t = _labels(samples, "age")
        ok = preds.found & ~np.isnan(age_t) & ~np.isnan(preds.age) & np.array([s.age_range is None for s in samples])
        written = write_plots(report, Path(plots), prefix, age_t[ok], preds.age[ok])
        report = replace(report, plots=tuple(str(p) for p in written))
    if predictions is not None:
        preds.write_csv(predictions, samples)
    return report


def _labels(samples: Sequence[Any], field: str) -> np.ndarray:
    """One label of every sample as a float array (NaN where unknown)."""
    return np.array([np.nan if getattr(s, field) is None else float(getattr(s, field)) for s in samples])


def _compute(samples: Sequence[Any], preds: ImagePredictions) -> dict[str, Any]:
    """Every metric the labels and predictions allow, as EvalReport keyword arguments."""
    found, age_p, lo_p, hi_p, coverage = preds.found, preds.age, preds.age_low, preds.age_high, preds.coverage
    gender_p, race_p, attr_p = preds.gender, preds.race, preds.attributes
    age_t, gender_t, race_t = _labels(samples, "age"), _labels(samples, "gender"), _labels(samples, "race")
    exact = np.array([s.age_range is None for s in samples], bool)
    has_age = found & ~np.isnan(age_t) & ~np.isnan(age_p)
    has_exact = has_age & exact
    has_gender = found & ~np.isnan(gender_t) & (gender_p >= 0)
    has_race = found & ~np.isnan(race_t) & (race_p >= 0)
    attr_known = np.array([s.attributes is not None for s in samples], bool)
    has_attr = found & attr_known & ~np.isnan(attr_p).any(axis=1)
    out: dict[str, Any] = dict.fromkeys(
        ("age", "age_interval", "age_groups_adience", "age_groups_utkface", "gender", "race", "attributes")
    )
    if has_exact.any():
        out["age"] = M.age_metrics(age_t[has_exact], age_p[has_exact])
        out["age_interval"] = M.interval_coverage(age_t[has_exact], lo_p[has_exact], hi_p[has_exact], coverage)
        out["age_groups_utkface"] = M.age_group_accuracy(age_t[has_exact], age_p[has_exact], "utkface")
    if has_age.any():
        ranges = [samples[i].age_range for i in np.flatnonzero(has_age)]
        out["age_groups_adience"] = M.age_group_accuracy(age_t[has_age], age_p[has_age], "adience", ranges)
    if has_gender.any():
        out["gender"] = M.classification_metrics(gender_t[has_gender], gender_p[has_gender], GENDERS)
    if has_race.any():
        out["race"] = M.classification_metrics(race_t[has_race], race_p[has_race], RACES)
    if has_attr.any():
        true = np.array([samples[i].attributes for i in np.flatnonzero(has_attr)])
        out["attributes"] = M.attribute_metrics(true, attr_p[has_attr], CELEBA_ATTRIBUTES)
    k = FAIRNESS_MIN_COUNT
    fair = FairnessReport()
    if (m := has_gender & ~np.isnan(race_t)).any():
        fair = replace(fair, gender_accuracy_by_race=M.accuracy_by_group(
            gender_t[m], gender_p[m], race_t[m], RACES, "gender_accuracy", "race", k))  # fmt: skip
    if (m := has_gender & ~np.isnan(race_t) & has_exact & (age_t >= ADULT_AGE)).any():
        fair = replace(fair, gender_accuracy_by_race_adults=M.accuracy_by_group(
            gender_t[m], gender_p[m], race_t[m], RACES, "gender_accuracy_adults", "race", k))  # fmt: skip
    if (m := has_gender & has_exact).any():
        band, names = [nearest_group(a, AGE_BANDS) for a in age_t[m]], [age_group_label(*g) for g in AGE_BANDS]
        fair = replace(fair, gender_accuracy_by_age=M.accuracy_by_group(
            gender_t[m], gender_p[m], band, names, "gender_accuracy", "age", k))  # fmt: skip
    if (m := has_exact & ~np.isnan(race_t)).any():
        fair = replace(fair, age_mae_by_race=M.mae_by_group(age_t[m], age_p[m], race_t[m], RACES, "race", k))
    if (m := has_exact & ~np.isnan(gender_t)).any():
        fair = replace(fair, age_mae_by_gender=M.mae_by_group(age_t[m], age_p[m], gender_t[m], GENDERS, "gender", k))
    if (m := has_race & ~np.isnan(gender_t)).any():
        fair = replace(fair, race_accuracy_by_gender=M.accuracy_by_group(
            race_t[m], race_p[m], gender_t[m], GENDERS, "race_accuracy", "gender", k))  # fmt: skip
    out["fairness"] = fair if fair.views() else None
    pg = gender_p[found & (gender_p >= 0)]
    out["predicted_gender"] = (
        tuple(M.GroupValue(g, int((pg == i).sum()), float((pg == i).mean())) for i, g in enumerate(GENDERS))
        if pg.size
        else None
    )
    return out

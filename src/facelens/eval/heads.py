"""Evaluate the attribute heads on labelled face datasets, through the full pipeline.

``facelens eval utkface|celeba|fgnet|fairface|adience|lfw --root DIR`` (and :func:`evaluate_dataset`) read a
dataset with :func:`facelens.data.create_dataset`, run :class:`facelens.pipeline.FaceAnalyzer` (detect with
padding, align, heads) on every image of the chosen split, keep ONE face per image (the rule of the training
cache, :func:`facelens.train.cache.choose_face`: the largest, most central confident face), and compute every
metric of :mod:`facelens.eval.metrics` that the dataset's labels allow. Images without a face and unreadable
images are counted, never fatal.

Held-out split: the split of the model's own training run, reproduced by :mod:`facelens.eval.split`.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import DatasetError, ModelError
from ..labels import CELEBA_ATTRIBUTES, GENDERS, RACES, age_group_label, nearest_group
from . import metrics as M
from .metrics import Serializable
from .predictions import ImagePredictions
from .split import (
    STORED_SPLIT,
    SplitInfo,
    _check_images,
    limit_samples,
    select_split,
    split_settings,
    split_source,
    stored_split,
)

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


FAIRNESS_MIN_COUNT = 20
"""Groups with fewer faces are shown but left out of the fairness gaps."""

ADULT_AGE = 20
"""Youngest labelled age in the adults-only fairness view (children's gender is hard to see at any ethnicity)."""


AGE_BANDS: tuple[tuple[int, int], ...] = ((0, 9), (10, 19), (20, 39), (40, 59), (60, 100))
"""Age bands (first, last year; labelled by :func:`~facelens.labels.age_group_label`) of the gender-by-age view."""

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

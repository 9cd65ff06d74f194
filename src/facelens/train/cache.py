"""Preprocessing cache: detect, align and store every training face once, exactly as inference will see it.

For each sample of each configured dataset: decode the file to RGB with :func:`facelens.io.load_image` (EXIF
orientation applied, as at inference), detect faces with the configured detector (YuNet, ``pad="auto"`` so tight
chips work), choose one face with
:func:`choose_face`, align it with :func:`facelens.align.align_face` at ``preprocess.size`` and the configured
template, and store the crop. Samples without a detected face are counted and listed, not stored.

A cache lives in ``<data.cache_dir>/<key>/``, where the key hashes the preprocessing settings and the full
sample list (paths, labels and splits), so any change of data, split or preprocessing builds a new cache and
an existing up-to-date cache is reused. Layout:

- ``images.npy``: ``(N, S, S, 3)`` uint8 RGB crops (open with ``np.load(..., mmap_mode="r")``).
- ``labels.npz``: ``age`` float32 (NaN = missing), ``gender`` int8 (-1 = missing), ``race`` int8 (-1),
  ``attributes`` int8 ``(N, 40)`` (-1), ``split`` str, ``dataset`` str (source id), ``source_index`` int32
  (index into that reader's sample list), ``path`` str, ``landmarks`` float32 ``(N, 5, 2)`` and ``det_score``
  float32.
- ``meta.json``: counts per source and split, faces not found, template, size, detector settings, data roots.
- ``no_face.txt`` / ``unreadable.txt``: the files left out.

Building is resumable: work in progress is kept in ``<key>/partial/`` (a full-size memmap plus a per-sample
status array flushed after every chunk), and an interrupted build continues where it stopped.

Does not import torch.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import shutil
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..align import TEMPLATES, Template, align_face
from ..errors import FaceLensError
from ..labels import CELEBA_ATTRIBUTES
from .config import ConfigError, TrainConfig, config_to_dict

CACHE_VERSION = 1
N_ATTRIBUTES = len(CELEBA_ATTRIBUTES)
MALE_INDEX = CELEBA_ATTRIBUTES.index("Male")

# Per-sample status codes in the partial build.
_PENDING, _OK, _NO_FACE, _UNREADABLE = -2, 1, 0, -1


@dataclass(frozen=True)
class SampleRecord:
    """One sample to preprocess, with its labels already in cache form.

    Attributes:
        dataset: Source id (:attr:`facelens.train.config.DatasetSpec.key`).
        source_index: Index of the sample in its reader's sample list.
        path: Image file.
        age: Age in years, NaN when unknown.
        gender: 0 male, 1 female, -1 unknown.
        race: Index into :data:`facelens.labels.RACES`, -1 unknown.
        attributes: 40 values 0/1, or -1 each when unknown.
        split: ``"train"``, ``"val"`` or ``"test"``.

    """

    dataset: str
    source_index: int
    path: str
    age: float
    gender: int
    race: int
    attributes: tuple[int, ...]
    split: str


@dataclass(frozen=True)
class CacheInfo:
    """A finished cache and what went into it.

    Attributes:
        path: The cache folder.
        key: Its key (hash of settings and sample list).
        n_samples: Samples requested.
        n_faces: Crops stored.
        no_face: Samples where no face was detected (left out).
        unreadable: Samples whose file could not be decoded (left out).
        seconds: Time the build took (0 when an existing cache was reused).
        reused: Whether an existing up-to-date cache was reused.

    """

    path: Path
    key: str
    n_samples: int
    n_faces: int
    no_face: int
    unreadable: int
    seconds: float
    reused: bool


# --- samples ------------------------------------------------------------------------------------------------


def assign_splits(n: int, val_fraction: float, test_fraction: float, seed: int, source: str) -> list[str]:
    """Seeded random split for a dataset without an official one.

    The permutation depends on ``seed`` and the source id only, so it is stable across runs and machines.

    Returns:
        ``n`` split names: ``round(n * val_fraction)`` ``"val"``, ``round(n * test_fraction)`` ``"test"``, the
        rest ``"train"``.

    """
    rng = np.random.default_rng([seed, zlib.crc32(source.encode())])
    perm = rng.permutation(n)
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    splits = ["train"] * n
    for i in perm[:n_val]:
        splits[i] = "val"
    for i in perm[n_val : n_val + n_test]:
        splits[i] = "test"
    return splits


def to_records(source: str, samples: Any, val_fraction: float, test_fraction: float, seed: int) -> list[SampleRecord]:
    """Convert :class:`facelens.data.FaceSample` objects of one source to :class:`SampleRecord`.

    Samples without a split get one from :func:`assign_splits` (computed over those samples only). When a
    sample has attributes but no gender, gender is taken from the ``Male`` attribute (CelebA).
    """
    samples = list(samples)
    missing = [i for i, s in enumerate(samples) if s.split is None]
    drawn = assign_splits(len(missing), val_fraction, test_fraction, seed, source)
    split_of = dict(zip(missing, drawn, strict=True))
    records = []
    for i, s in enumerate(samples):
        attrs = tuple(int(a) for a in s.attributes) if s.attributes is not None else (-1,) * N_ATTRIBUTES
        if len(attrs) != N_ATTRIBUTES:
            raise ValueError(f"{s.path}: expected {N_ATTRIBUTES} attributes, got {len(attrs)}")
        gender = s.gender
        if gender is None and s.attributes is not None:
            gender = 0 if attrs[MALE_INDEX] == 1 else 1
        records.append(
            SampleRecord(
                dataset=source,
                source_index=i,
                path=str(s.path),
                age=float(s.age) if s.age is not None else math.nan,
                gender=int(gender) if gender is not None else -1,
                race=int(s.race) if s.race is not None else -1,
                attributes=attrs,
                split=s.split if s.split is not None else split_of[i],
            )
        )
    return records


def collect_records(config: TrainConfig) -> tuple[list[SampleRecord], dict[str, dict[str, Any]]]:
    """Load every configured dataset through :func:`facelens.data.create_dataset` and build the records.

    Dataset roots have ``$VARS`` and ``~`` expanded.

    Returns:
        The records of all sources in order, and per source a summary (reader, root, options, samples, entries
        the reader skipped).

    Raises:
        ConfigError: If a source yields no sample (e.g. its root holds another dataset), naming its id, its root and
            what its reader skipped.

    """
    from .. import data as data_pkg

    records: list[SampleRecord] = []
    sources: dict[str, dict[str, Any]] = {}
    for spec in config.data.datasets:
        root = spec.path
        index = data_pkg.create_dataset(spec.name, root, **spec.options).load()
        if not index.samples:
            example = f", e.g. {index.skipped[0].path_or_line}: {index.skipped[0].reason}" if index.skipped else ""
            raise ConfigError(
                f"data source {spec.key!r} ({spec.name} reader, root {root}) yielded no samples: the reader skipped "
                f"{len(index.skipped)} entries{example}; check its root and options"
            )
        keep = np.arange(len(index.samples))
        if spec.max_samples is not None and spec.max_samples < len(keep):
            rng = np.random.default_rng([config.data.seed, zlib.crc32(spec.key.encode()), 1])
            keep = np.sort(rng.choice(len(keep), spec.max_samples, replace=False))
        samples = [index.samples[i] for i in keep]
        recs = to_records(spec.key, samples, config.data.val_fraction, config.data.test_fraction, config.data.seed)
        records.extend(replace(r, source_index=int(keep[r.source_index])) for r in recs)
        sources[spec.key] = {
            "reader": spec.name,
            "root": str(root.resolve()),
            "options": dict(spec.options),
            "samples": len(recs),
            "skipped_by_reader": len(index.skipped),
        }
    return records, sources


# --- the per-image work -------------------------------------------------------------------------------------


def load_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file to ``H x W x 3`` uint8 RGB with the loader inference uses (:func:`facelens.io.load_image`).

    Raises:
        FaceLensError: If the file cannot be decoded or is too large.

    """
    from ..io import load_image

    return load_image(path)


def choose_face(detections: list[Any], width: int, height: int, score_margin: float = 0.15) -> Any | None:
    """Pick the face a dataset image is about.

    Rule: among detections scoring within ``score_margin`` of the best score (the confident ones), take the
    one with the highest ``size - 0.5 * offset``, where ``size`` is the square root of the box area divided by
    the longer image side and ``offset`` is the distance of the box centre from the image centre divided by
    half the image diagonal. So the largest, most central confident face wins; a small confident background
    face does not.

    Args:
        detections: Detector output (objects with ``.box`` and ``.score``).
        width: Image width.
        height: Image height.
        score_margin: How far below the best score a detection may score and still be chosen.

    Returns:
        The chosen detection, or None when there is none.

    """
    if not detections:
        return None
    best = max(d.score for d in detections)
    half_diag = 0.5 * math.hypot(width, height)

    def rank(d: Any) -> tuple[float, float]:
        b = d.box
        size = math.sqrt(max(b.x2 - b.x1, 0.0) * max(b.y2 - b.y1, 0.0)) / max(width, height)
        cx, cy = 0.5 * (b.x1 + b.x2), 0.5 * (b.y1 + b.y2)
        offset = math.hypot(cx - 0.5 * width, cy - 0.5 * height) / half_diag
        return size - 0.5 * offset, d.score

    return max((d for d in detections if d.score >= best - score_margin), key=rank)


def make_detector(name: str, options: dict[str, Any]) -> Any:
    """Create the detector used for preprocessing (a seam for tests)."""
    from ..detect import create_detector

    return create_detector(name, **options)


_worker: dict[str, Any] = {}


def _init_worker(detector: str, options: dict[str, Any], size: int, template: Template) -> None:
    import cv2

    cv2.setNumThreads(1)
    _worker.update(detector=make_detector(detector, options), size=size, template=template)


def _process_chunk(chunk: list[tuple[int, str]]) -> list[tuple[int, int, Any, Any, float]]:
    """Detect and align the samples of one chunk: ``(index, status, crop, landmarks, score)`` per sample."""
    detector, size, template = _worker["detector"], _worker["size"], _worker["template"]
    out: list[tuple[int, int, Any, Any, float]] = []
    for idx, path in chunk:
        try:
            rgb = load_rgb(path)
        except FaceLensError:
            out.append((idx, _UNREADABLE, None, None, 0.0))
            continue
        face = choose_face(detector.detect(rgb), rgb.shape[1], rgb.shape[0])
        if face is None:
            out.append((idx, _NO_FACE, None, None, 0.0))
            continue
        lm = np.asarray(face.landmarks.to_array(), dtype=np.float32).reshape(5, 2)
        out.append((idx, _OK, align_face(rgb, lm, size, template), lm, float(face.score)))
    return out


# --- the cache ----------------------------------------------------------------------------------------------


def _settings(config: TrainConfig) -> dict[str, Any]:
    pre = config.preprocess
    return {
        "version": CACHE_VERSION,
        "size": pre.size,
        "template": get_template(pre.template).to_dict(),
        "detector": {"name": pre.detector, "options": dict(sorted(pre.detector_options.items()))},
    }


def get_template(name: str) -> Template:
    """Look up an alignment template by name, with a clear error."""
    if name not in TEMPLATES:
        from .config import ConfigError

        raise ConfigError(f"unknown alignment template {name!r}; known: {', '.join(TEMPLATES)}")
    return TEMPLATES[name]


def cache_key(config: TrainConfig, records: list[SampleRecord]) -> str:
    """Hash of the preprocessing settings and the exact sample list (paths, labels, splits)."""
    h = hashlib.sha256(json.dumps(_settings(config), sort_keys=True).encode())
    for r in records:
        age = "nan" if math.isnan(r.age) else repr(r.age)
        attrs = "".join("x" if a < 0 else str(a) for a in r.attributes)
        h.update(f"{r.dataset}|{r.source_index}|{r.path}|{age}|{r.gender}|{r.race}|{attrs}|{r.split}\n".encode())
    return h.hexdigest()[:16]


def build_cache(
    config: TrainConfig,
    records: list[SampleRecord] | None = None,
    sources: dict[str, dict[str, Any]] | None = None,
    force: bool = False,
    progress: bool = True,
) -> CacheInfo:
    """Build (or reuse) the preprocessing cache for a config.

    Args:
        config: The training config (``data`` and ``preprocess`` sections are used).
        records: Samples to process; by default read from the configured datasets.
        sources: Per-source summary for ``meta.json`` (given together with ``records``).
        force: Rebuild even when an up-to-date cache exists.
        progress: Show a tqdm progress bar.

    Returns:
        What was built or found.

    """
    if records is None:
        records, sources = collect_records(config)
    sources = sources or {}
    key = cache_key(config, records)
    out = Path(config.data.cache_dir) / key
    meta_path = out / "meta.json"
    if meta_path.is_file() and not force:
        meta = json.loads(meta_path.read_text())
        t = meta["totals"]
        return CacheInfo(out, key, t["samples"], t["faces"], t["no_face"], t["unreadable"], 0.0, True)
    if force and out.exists():
        shutil.rmtree(out)
    start = time.perf_counter()
    pre = config.preprocess
    template = get_template(pre.template)
    n, size = len(records), pre.size
    part = out / "partial"
    part.mkdir(parents=True, exist_ok=True)
    img_path, status_path = part / "images.npy", part / "status.npy"
    if img_path.is_file() and status_path.is_file():
        images = np.load(img_path, mmap_mode="r+")
        status = np.load(status_path)
        lms = np.load(part / "landmarks.npy")
        scores = np.load(part / "scores.npy")
    else:
        images = np.lib.format.open_memmap(img_path, mode="w+", dtype=np.uint8, shape=(max(n, 1), size, size, 3))
        status = np.full(n, _PENDING, np.int8)
        lms = np.zeros((n, 5, 2), np.float32)
        scores = np.zeros(n, np.float32)

    def checkpoint() -> None:
        images.flush()
        for name, arr in (("status", status), ("landmarks", lms), ("scores", scores)):
            tmp = part / f"{name}.tmp.npy"
            np.save(tmp, arr)
            tmp.replace(part / f"{name}.npy")

    todo = [(i, records[i].path) for i in np.flatnonzero(status == _PENDING).tolist()]
    chunks = [todo[i : i + pre.chunk_size] for i in range(0, len(todo), pre.chunk_size)]
    init_args = (pre.detector, dict(pre.detector_options), size, template)
    from tqdm import tqdm

    bar = tqdm(total=n, initial=n - len(todo), desc="preprocess", unit="img", disable=not progress, smoothing=0.05)
    ctx = multiprocessing.get_context("spawn")  # safe even when torch (threads) is already loaded
    if pre.workers > 0 and chunks:
        make_detector(pre.detector, dict(pre.detector_options))  # fails here, not in workers a Pool would respawn
    pool = ctx.Pool(pre.workers, _init_worker, init_args) if pre.workers > 0 and chunks else None
    try:
        if pool is None:
            _init_worker(*init_args)
            results = map(_process_chunk, chunks)
        else:
            results = pool.imap_unordered(_process_chunk, chunks)
        for k, result in enumerate(results):
            for idx, st, crop, lm, score in result:
                status[idx] = st
                if st == _OK:
                    images[idx], lms[idx], scores[idx] = crop, lm, score
            bar.update(len(result))
            if k % 20 == 19:
                checkpoint()
                bar.set_postfix(no_face=int((status == _NO_FACE).sum()))
    finally:
        checkpoint()
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    _finalise(config, records, sources, images, status, lms, scores, out, key, time.perf_counter() - start)
    shutil.rmtree(part)
    t = json.loads(meta_path.read_text())["totals"]
    return CacheInfo(out, key, n, t["faces"], t["no_face"], t["unreadable"], time.perf_counter() - start, False)


def _finalise(
    config: TrainConfig,
    records: list[SampleRecord],
    sources: dict[str, dict[str, Any]],
    images: np.ndarray,
    status: np.ndarray,
    lms: np.ndarray,
    scores: np.ndarray,
    out: Path,
    key: str,
    seconds: float,
) -> None:
    """Compact the stored crops into ``images.npy`` and write labels and meta (``meta.json`` last)."""
    keep = np.flatnonzero(status == _OK)
    final = np.lib.format.open_memmap(
        out / "images.tmp.npy", mode="w+", dtype=np.uint8, shape=(len(keep),) + images.shape[1:]
    )
    for s in range(0, len(keep), 1024):
        final[s : s + 1024] = images[keep[s : s + 1024]]
    final.flush()
    del final
    (out / "images.tmp.npy").replace(out / "images.npy")
    kept = [records[i] for i in keep]
    np.savez(
        out / "labels.npz",
        age=np.array([r.age for r in kept], np.float32),
        gender=np.array([r.gender for r in kept], np.int8),
        race=np.array([r.race for r in kept], np.int8),
        attributes=np.array([r.attributes for r in kept], np.int8).reshape(len(kept), N_ATTRIBUTES),
        split=np.array([r.split for r in kept], dtype="<U5"),
        dataset=np.array([r.dataset for r in kept], dtype=str),
        source_index=np.array([r.source_index for r in kept], np.int32),
        path=np.array([r.path for r in kept], dtype=str),
        landmarks=lms[keep],
        det_score=scores[keep],
    )
    no_face = [records[i].path for i in np.flatnonzero(status == _NO_FACE)]
    unreadable = [records[i].path for i in np.flatnonzero(status == _UNREADABLE)]
    (out / "no_face.txt").write_text("".join(p + "\n" for p in no_face))
    (out / "unreadable.txt").write_text("".join(p + "\n" for p in unreadable))
    per_source: dict[str, Any] = {}
    for key_ in dict.fromkeys(r.dataset for r in records):
        idx = [i for i, r in enumerate(records) if r.dataset == key_]
        st = status[idx]
        splits: dict[str, int] = {}
        for i in idx:
            if status[i] == _OK:
                splits[records[i].split] = splits.get(records[i].split, 0) + 1
        per_source[key_] = {
            **sources.get(key_, {}),
            "samples": len(idx),
            "faces": int((st == _OK).sum()),
            "no_face": int((st == _NO_FACE).sum()),
            "unreadable": int((st == _UNREADABLE).sum()),
            "splits": dict(sorted(splits.items())),
        }
    meta = {
        "key": key,
        "version": CACHE_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(seconds, 1),
        "size": config.preprocess.size,
        "template": get_template(config.preprocess.template).to_dict(),
        "detector": {"name": config.preprocess.detector, "options": dict(config.preprocess.detector_options)},
        "data": config_to_dict(config.data),
        "totals": {
            "samples": len(records),
            "faces": len(kept),
            "no_face": len(no_face),
            "unreadable": len(unreadable),
        },
        "sources": per_source,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))


@dataclass(frozen=True)
class CacheArrays:
    """A loaded cache: memory-mapped images and in-memory labels."""

    path: Path
    images: np.ndarray
    labels: dict[str, np.ndarray]
    meta: dict[str, Any]

    def __len__(self) -> int:
        return int(self.images.shape[0])


def open_cache(path: str | Path) -> CacheArrays:
    """Open a finished cache folder (images memory-mapped read-only).

    Raises:
        FaceLensError: If the folder lacks one of the files a finished cache has.

    """
    path = Path(path)
    missing = [name for name in ("meta.json", "images.npy", "labels.npz") if not (path / name).is_file()]
    if missing:
        raise FaceLensError(
            f"{path} is not a finished facelens cache (missing {', '.join(missing)}); build one with "
            "'facelens preprocess --config RECIPE'"
        )
    meta = json.loads((path / "meta.json").read_text())
    images = np.load(path / "images.npy", mmap_mode="r")
    with np.load(path / "labels.npz") as z:
        labels = {k: z[k] for k in z.files}
    return CacheArrays(path, images, labels, meta)

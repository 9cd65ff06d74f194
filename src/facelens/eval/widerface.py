"""WIDER FACE detection quality: easy / medium / hard AP with the official evaluation protocol.

Only the validation images present under ``ROOT/WIDER_val/images`` are evaluated (a subset is fine); the
ground truth of annotated images that are not on disk is left out entirely, so their faces are not counted as
missed. Expected layout (as distributed by the WIDER FACE authors)::

    ROOT/WIDER_val/images/<event>/<name>.jpg
    ROOT/ground_truth/wider_face_val.mat       face_bbx_list, event_list, file_list
    ROOT/ground_truth/wider_{easy,medium,hard}_val.mat   gt_list (1-based indices of the faces that count)

``ROOT/wider_face_split/wider_face_val.mat`` is accepted in place of ``ground_truth/wider_face_val.mat``.
The ``wider_face_val_bbx_gt.txt`` label file is not needed: like the official evaluation, boxes come from the
.mat files.

The protocol, as implemented by the official MATLAB code and its widely used Python port:

* Per setting, the gt faces whose 1-based index is in the setting's ``gt_list`` entry are *counted*; every
  other gt face of the image is *ignored*.
* Scores are normalised over the whole evaluated set to ``(s - min) / (max - min)``.
* Detections of an image are taken in descending score order; each is matched to the gt box of highest IoU.
  If that IoU >= 0.5: an ignored gt makes the detection *ignored* (neither TP nor FP; an ignored gt can absorb
  any number of detections), a counted gt not matched yet makes it a TP, anything else is a FP.
* IoU uses the official "+1" pixel convention: gt boxes are ``(x, y, x + w, y + h)`` and widths/heights of
  both boxes are measured as ``x2 - x1 + 1`` (as in the official ``boxoverlap`` / ``bbox_overlaps``).
  Detections are given as ``(x1, y1, x2, y2)`` and used as is, which is what the official code does with
  ``x, y, w, h`` predictions.
* For the 1000 thresholds ``t = 1 - (k + 1) / 1000`` the proposals (non-ignored detections) with normalised
  score >= t and the recalled counted faces are summed over images; precision = recalled / proposals,
  recall = recalled / counted faces.
* AP is the VOC area under the precision envelope, with sentinels (recall 0 and 1, precision 0).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facelens.errors import DatasetError

__all__ = [
    "IOU_THRESHOLD",
    "SETTINGS",
    "THRESHOLD_COUNT",
    "Detector",
    "WiderFaceResult",
    "WiderGroundTruth",
    "WiderImage",
    "evaluate_detections",
    "evaluate_widerface",
    "ground_truth_from_boxes",
    "load_ground_truth",
    "read_annotations",
]

Detector = Callable[[np.ndarray], Sequence[tuple[float, float, float, float, float]]]
"""Takes an RGB uint8 HxWx3 image, returns ``(x1, y1, x2, y2, score)`` per face in pixel coordinates."""

SETTINGS: tuple[str, ...] = ("easy", "medium", "hard")
IOU_THRESHOLD = 0.5
THRESHOLD_COUNT = 1000

_IMAGES_DIR = Path("WIDER_val") / "images"
_GT_DIR = "ground_truth"


@dataclass(frozen=True)
class WiderImage:
    """Ground truth of one validation image.

    Attributes:
        path: Image path relative to ``ROOT/WIDER_val/images``, POSIX style (``"<event>/<name>.jpg"``).
        boxes: ``(N, 4)`` float64 gt boxes ``x1, y1, x2, y2`` with ``x2 = x + w`` (official convention).
        keep: Per setting, the 0-based int64 indices of the faces of ``boxes`` that count in that setting.

    """

    path: str
    boxes: np.ndarray
    keep: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class WiderGroundTruth:
    """Ground truth of the validation images present on disk.

    Attributes:
        root: The dataset root it was loaded from.
        images: The present images, in the official (event, file) order.
        annotated_images: How many images the annotation lists (present or not).

    """

    root: Path
    images: tuple[WiderImage, ...]
    annotated_images: int = 0

    def __len__(self) -> int:
        return len(self.images)

    def faces(self) -> dict[str, int]:
        """Return the number of counted gt faces per setting over the present images."""
        return {s: int(sum(len(im.keep[s]) for im in self.images)) for s in SETTINGS}

    def subset(self, limit: int | None) -> WiderGroundTruth:
        """Return the ground truth of the first ``limit`` images (all of them when ``limit`` is None)."""
        if limit is None:
            return self
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        return WiderGroundTruth(self.root, self.images[:limit], self.annotated_images)

    def select(self, paths: Iterable[str]) -> WiderGroundTruth:
        """Return the ground truth of the named images only (official order kept).

        Raises:
            DatasetError: If a path names no image of this ground truth.

        """
        wanted = set(paths)
        missing = sorted(wanted - {im.path for im in self.images})
        if missing:
            raise DatasetError(f"{len(missing)} listed image(s) have no ground truth here, e.g. {missing[:3]}")
        return WiderGroundTruth(self.root, tuple(im for im in self.images if im.path in wanted), self.annotated_images)


@dataclass(frozen=True)
class WiderFaceResult:
    """Easy / medium / hard AP on the evaluated WIDER FACE val images.

    Attributes:
        ap_easy: AP on the easy setting, in [0, 1].
        ap_medium: AP on the medium setting, in [0, 1].
        ap_hard: AP on the hard setting, in [0, 1].
        images: Number of images evaluated.
        faces: Counted gt faces per setting (``"easy"``, ``"medium"``, ``"hard"``).

    """

    ap_easy: float
    ap_medium: float
    ap_hard: float
    images: int
    faces: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict (APs rounded to 6 decimals)."""
        return {
            "ap_easy": round(self.ap_easy, 6),
            "ap_medium": round(self.ap_medium, 6),
            "ap_hard": round(self.ap_hard, 6),
            "images": self.images,
            "faces": dict(self.faces),
        }


# --------------------------------------------------------------------------------------------------- loading


def _loadmat(path: Path) -> dict[str, Any]:
    try:
        import scipy.io
    except ImportError as exc:
        raise DatasetError("reading the WIDER FACE .mat ground truth needs scipy: pip install facelens[eval]") from exc
    if not path.is_file():
        raise DatasetError(f"WIDER FACE ground truth file missing: {path}")
    try:
        return scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises ValueError, TypeError, OSError... for bad files
        raise DatasetError(f"cannot read WIDER FACE ground truth {path}: {exc}") from exc


def _cells(value: Any) -> list[Any]:
    """Flatten a MATLAB cell array (numpy object array) into a list of its elements."""
    arr = np.asarray(value, dtype=object)
    return list(arr.ravel())


def _mat_str(value: Any) -> str:
    """Unwrap a MATLAB char array nested in cells (``array([array(['name'])])``) into a str."""
    while isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"expected one string, got an array of shape {value.shape}")
        value = value.ravel()[0]
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return value


def _field(mat: Mapping[str, Any], key: str, path: Path) -> Any:
    if key not in mat:
        raise DatasetError(f"WIDER FACE ground truth {path} has no '{key}' variable")
    return mat[key]


def _find_main_mat(root: Path) -> Path:
    for candidate in (
        root / _GT_DIR / "wider_face_val.mat",
        root / "wider_face_split" / "wider_face_val.mat",
    ):
        if candidate.is_file():
            return candidate
    raise DatasetError(f"WIDER FACE ground truth missing: {root / _GT_DIR / 'wider_face_val.mat'}")


def load_ground_truth(root: Path) -> WiderGroundTruth:
    """Load the official val ground truth for the images present under ``root``.

    Args:
        root: WIDER FACE root (holds ``WIDER_val/images`` and ``ground_truth/*.mat``).

    Returns:
        The ground truth of every annotated image found on disk, in the official order.

    Raises:
        DatasetError: The root, the images folder or a .mat file is missing or malformed, scipy is not
            installed, or no annotated image is present.

    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"WIDER FACE root folder not found: {root}")
    images_dir = root / _IMAGES_DIR
    if not images_dir.is_dir():
        raise DatasetError(f"WIDER FACE images folder missing: {images_dir}")
    main_path = _find_main_mat(root)
    setting_paths = {s: root / _GT_DIR / f"wider_{s}_val.mat" for s in SETTINGS}
    for path in setting_paths.values():
        if not path.is_file():
            raise DatasetError(f"WIDER FACE ground truth file missing: {path}")

    main = _loadmat(main_path)
    try:
        events = [_mat_str(e) for e in _cells(_field(main, "event_list", main_path))]
        files = [[_mat_str(f) for f in _cells(ev)] for ev in _cells(_field(main, "file_list", main_path))]
        boxes = [_cells(ev) for ev in _cells(_field(main, "face_bbx_list", main_path))]
    except (ValueError, TypeError, IndexError) as exc:
        raise DatasetError(f"malformed WIDER FACE ground truth {main_path}: {exc}") from exc
    shape = [len(f) for f in files]
    if len(events) != len(files) or shape != [len(b) for b in boxes]:
        raise DatasetError(f"malformed WIDER FACE ground truth {main_path}: event/file/box lists disagree")

    keeps: dict[str, list[list[Any]]] = {}
    for setting, path in setting_paths.items():
        try:
            keeps[setting] = [_cells(ev) for ev in _cells(_field(_loadmat(path), "gt_list", path))]
        except (ValueError, TypeError) as exc:
            raise DatasetError(f"malformed WIDER FACE ground truth {path}: {exc}") from exc
        if [len(k) for k in keeps[setting]] != shape:
            raise DatasetError(f"WIDER FACE ground truth {path} does not match {main_path} (image counts differ)")

    present: list[WiderImage] = []
    for e, event in enumerate(events):
        for i, name in enumerate(files[e]):
            rel = f"{event}/{name}.jpg"
            if not (images_dir / rel).is_file():
                continue
            xywh = np.asarray(boxes[e][i], dtype=np.float64)
            if xywh.size == 0:
                xywh = xywh.reshape(0, 4)
            if xywh.ndim != 2 or xywh.shape[1] != 4:
                raise DatasetError(f"malformed gt boxes for {rel} in {main_path}: shape {xywh.shape}")
            xyxy = xywh.copy()
            xyxy[:, 2:] += xyxy[:, :2]  # official: x2 = x + w, y2 = y + h
            xyxy.setflags(write=False)
            keep: dict[str, np.ndarray] = {}
            for setting in SETTINGS:
                idx = np.asarray(keeps[setting][e][i]).astype(np.int64).ravel() - 1  # stored 1-based
                if idx.size and (idx.min() < 0 or idx.max() >= len(xyxy)):
                    raise DatasetError(f"WIDER FACE {setting} keep list of {rel} indexes past its {len(xyxy)} gt boxes")
                idx.setflags(write=False)
                keep[setting] = idx
            present.append(WiderImage(rel, xyxy, keep))
    if not present:
        raise DatasetError(f"no annotated WIDER FACE val image found under {images_dir}")
    return WiderGroundTruth(root, tuple(present), annotated_images=sum(shape))


def read_annotations(path: Path) -> dict[str, np.ndarray]:
    """Read a WIDER FACE ``wider_face_{train,val}_bbx_gt.txt`` label file (the format used for training).

    The format repeats, per image: its path relative to the images folder, the number of faces ``n``, then
    ``max(n, 1)`` lines ``x y w h blur expression illumination invalid occlusion pose`` (an image without faces has
    one line of zeros). Faces flagged ``invalid`` and boxes without area are left out.

    Args:
        path: The label file.

    Returns:
        Image path (POSIX, as written in the file) -> ``(N, 4)`` float64 boxes ``x1, y1, x2, y2``.

    Raises:
        DatasetError: If the file is missing or malformed (the message names the line).

    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DatasetError(f"cannot read WIDER FACE annotations {path}: {exc}") from exc
    out: dict[str, np.ndarray] = {}
    i = 0
    while i < len(lines):
        name = lines[i].strip()
        i += 1
        if not name:
            continue
        try:
            n = int(lines[i])
            rows = [[float(v) for v in lines[j].split()[:10]] for j in range(i + 1, i + 1 + max(n, 1))]
        except (IndexError, ValueError) as exc:
            raise DatasetError(f"{path}:{i + 1}: malformed face list for {name!r}: {exc}") from None
        if n < 0 or any(len(r) < 4 for r in rows):
            raise DatasetError(f"{path}:{i + 1}: malformed face list for {name!r}")
        i += 1 + max(n, 1)
        arr = np.asarray([r[:4] for r in rows[:n] if (len(r) < 8 or r[7] == 0) and r[2] > 0 and r[3] > 0])
        arr = arr.reshape(-1, 4)
        arr[:, 2:] += arr[:, :2]
        out[name] = arr
    return out


def ground_truth_from_boxes(root: Path, boxes: Mapping[str, np.ndarray]) -> WiderGroundTruth:
    """Ground truth in which every given face counts in all three settings (for data without keep lists).

    Args:
        root: The images' root, recorded in the result.
        boxes: Image path -> ``(N, 4)`` boxes ``x1, y1, x2, y2`` (as from :func:`read_annotations`).

    Returns:
        Ground truth whose easy, medium and hard settings are the same: all faces.

    """
    images = []
    for rel, arr in boxes.items():
        xyxy = np.asarray(arr, dtype=np.float64).reshape(-1, 4)
        idx = np.arange(len(xyxy), dtype=np.int64)
        images.append(WiderImage(rel, xyxy, {s: idx for s in SETTINGS}))
    return WiderGroundTruth(Path(root), tuple(images), annotated_images=len(images))


# ------------------------------------------------------------------------------------------------ protocol


def _iou_matrix(dets: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """IoU of each detection (rows) with each gt box (columns), official "+1" pixel convention."""
    d = dets[:, None, :4]
    g = gts[None, :, :]
    iw = np.minimum(d[..., 2], g[..., 2]) - np.maximum(d[..., 0], g[..., 0]) + 1.0
    ih = np.minimum(d[..., 3], g[..., 3]) - np.maximum(d[..., 1], g[..., 1]) + 1.0
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    area_d = (d[..., 2] - d[..., 0] + 1.0) * (d[..., 3] - d[..., 1] + 1.0)
    area_g = (g[..., 2] - g[..., 0] + 1.0) * (g[..., 3] - g[..., 1] + 1.0)
    union = area_d + area_g - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=(inter > 0) & (union > 0))
    return out


def _match(best_gt: np.ndarray, best_iou: np.ndarray, counted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy official matching of score-sorted detections.

    Args:
        best_gt: Per detection, the index of its highest-IoU gt (first one on ties, like ``argmax``).
        best_iou: Per detection, that IoU.
        counted: Per gt, whether it counts in this setting.

    Returns:
        ``proposal`` (bool, False for ignored detections) and ``recalled`` (the running number of counted gts
        recalled after each detection, the official ``pred_recall``).

    """
    hit = best_iou >= IOU_THRESHOLD
    on_counted = hit & counted[best_gt]
    # Detections on ignored gts are not proposals; an ignored gt can absorb any number of them.
    proposal = ~(hit & ~counted[best_gt])
    # A counted gt is recalled by the first detection (in score order) matched to it; later ones are FPs.
    tp = np.zeros(len(best_gt), dtype=bool)
    cand = np.flatnonzero(on_counted)
    if cand.size:
        _, first = np.unique(best_gt[cand], return_index=True)
        tp[cand[first]] = True
    return proposal, np.cumsum(tp)


def _voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # make precision non-increasing from the right
    step = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


def _as_detections(value: Any, where: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 5)
    if arr.ndim != 2 or arr.shape[1] != 5:
        raise ValueError(f"detections for {where} must be (M, 5) x1, y1, x2, y2, score; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"detections for {where} contain NaN or infinite values")
    return arr


def evaluate_detections(gt: WiderGroundTruth, detections: Mapping[str, np.ndarray]) -> WiderFaceResult:
    """Compute easy / medium / hard AP of detections with the official WIDER FACE protocol.

    Args:
        gt: Ground truth of the evaluated images (from :func:`load_ground_truth`).
        detections: Per image path (``WiderImage.path``), an ``(M, 5)`` array of ``x1, y1, x2, y2, score``.
            An image without an entry has no detections.

    Returns:
        The APs, the number of images and the counted faces per setting.

    Raises:
        ValueError: A detection array is malformed, or a key names no image of ``gt``.

    """
    known = {im.path for im in gt.images}
    unknown = sorted(set(detections) - known)
    if unknown:
        raise ValueError(f"detections for {len(unknown)} image(s) not in the ground truth, e.g. {unknown[:3]}")
    dets = {im.path: _as_detections(detections.get(im.path, ()), im.path) for im in gt.images}

    # Normalise scores over the whole evaluated set. Official quirk kept: min/max are global, not per image.
    # The official code divides by zero when every score is equal; here such scores all become 1.0 instead.
    # (The official Python port starts min/max at 1/0, which only matters when all scores lie outside [0, 1].)
    all_scores = np.concatenate([d[:, 4] for d in dets.values()]) if dets else np.zeros(0)
    lo = float(all_scores.min()) if all_scores.size else 0.0
    hi = float(all_scores.max()) if all_scores.size else 1.0
    span = hi - lo

    thresholds = 1.0 - (np.arange(THRESHOLD_COUNT) + 1.0) / THRESHOLD_COUNT  # 0.999 ... 0.0
    curves = {s: np.zeros((THRESHOLD_COUNT, 2)) for s in SETTINGS}  # (proposals, recalled) per threshold
    faces = {s: 0 for s in SETTINGS}
    for im in gt.images:
        for s in SETTINGS:
            faces[s] += len(im.keep[s])
        d = dets[im.path]
        # Official quirk: an image with no gt box (or no detection) is skipped, so its detections are not FPs.
        # (The official .mat files give face-free images one dummy 0x0 box, so this never fires on them.)
        if len(im.boxes) == 0 or len(d) == 0:
            continue
        scores = (d[:, 4] - lo) / span if span > 0 else np.ones(len(d))
        order = np.argsort(-scores, kind="stable")
        d, scores = d[order], scores[order]
        iou = _iou_matrix(d, im.boxes)
        best_gt = iou.argmax(axis=1)
        best_iou = iou[np.arange(len(d)), best_gt]
        # Detections above each threshold: scores are sorted, so it is a prefix; n_above = 0 means none.
        n_above = np.searchsorted(-scores, -thresholds, side="right")
        has = n_above > 0
        last = n_above[has] - 1  # official img_pr_info: index of the last detection above the threshold
        for s in SETTINGS:
            counted = np.zeros(len(im.boxes), dtype=bool)
            counted[im.keep[s]] = True
            proposal, recalled = _match(best_gt, best_iou, counted)
            curves[s][has, 0] += np.cumsum(proposal)[last]
            curves[s][has, 1] += recalled[last]

    aps: dict[str, float] = {}
    for s in SETTINGS:
        props, rec = curves[s][:, 0], curves[s][:, 1]
        # Official: precision = recalled / proposals (recalled == TP proposals). Where there is no proposal
        # the official code gets NaN; 0 is used here, which gives the same AP (recall is 0 there, and the
        # envelope only reads precision where recall steps up).
        precision = np.divide(rec, props, out=np.zeros_like(rec), where=props > 0)
        recall = rec / faces[s] if faces[s] else np.zeros_like(rec)
        aps[s] = _voc_ap(recall, precision) if faces[s] else 0.0  # no counted face: AP reported as 0
    return WiderFaceResult(
        ap_easy=aps["easy"],
        ap_medium=aps["medium"],
        ap_hard=aps["hard"],
        images=len(gt.images),
        faces=faces,
    )


# -------------------------------------------------------------------------------------------------- command


def _progress(items: Sequence[WiderImage], enabled: bool) -> Iterable[WiderImage]:
    if not enabled:
        yield from items
        return
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        yield from tqdm(items, desc="widerface", unit="img", file=sys.stderr)
        return
    total = len(items)
    for n, item in enumerate(items, 1):
        yield item
        if n == total or n % 10 == 0:
            print(
                f"\rwiderface: {n}/{total} images",
                end="\n" if n == total else "",
                file=sys.stderr,
                flush=True,
            )


def evaluate_widerface(
    root: Path,
    detect: Detector,
    *,
    limit: int | None = None,
    images: Iterable[str] | None = None,
    progress: bool = False,
) -> WiderFaceResult:
    """Run a detector on the WIDER FACE val images present under ``root`` and score it.

    Args:
        root: WIDER FACE root (holds ``WIDER_val/images`` and ``ground_truth/*.mat``).
        detect: Takes an RGB uint8 HxWx3 image, returns ``(x1, y1, x2, y2, score)`` per face.
        limit: Evaluate only the first ``limit`` present images (official order); their gt alone is counted.
        images: Evaluate only these image paths (``"<event>/<name>.jpg"``, e.g. a trained detector's held-out
            list); applied before ``limit``.
        progress: Print progress to stderr (with tqdm when it is installed).

    Returns:
        The easy / medium / hard APs.

    Raises:
        DatasetError: The dataset is missing or malformed, or an image cannot be read.

    """
    import cv2

    gt = load_ground_truth(Path(root))
    if images is not None:
        gt = gt.select(images)
    gt = gt.subset(limit)
    images_dir = Path(root) / _IMAGES_DIR
    detections: dict[str, np.ndarray] = {}
    for im in _progress(gt.images, progress):
        path = images_dir / im.path
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f"cannot read WIDER FACE image {path}")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        detections[im.path] = _as_detections(detect(rgb), im.path)
    return evaluate_detections(gt, detections)

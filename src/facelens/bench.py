"""``facelens bench``: reproducible speed measurements on generated, public-domain inputs.

Each measurement runs a warm-up, then ``repeat`` timed rounds of ``number`` calls, and reports the minimum,
median and maximum time per call. Inputs are the bundled public-domain portrait placed on generated
backgrounds, so anyone can rerun the numbers.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SAMPLE = Path(__file__).resolve().parent / "assets" / "astronaut.jpg"


@dataclass(frozen=True)
class Timing:
    """Milliseconds per call over the timed rounds."""

    name: str
    min_ms: float
    median_ms: float
    max_ms: float
    rounds: int
    calls_per_round: int
    note: str = ""


def time_call(name: str, fn: Callable[[], object], number: int = 20, repeat: int = 5, note: str = "") -> Timing:
    """Time ``fn``: one warm-up call, then ``repeat`` rounds of ``number`` calls."""
    fn()
    per_call = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        per_call.append((time.perf_counter() - t0) * 1000 / number)
    return Timing(name, min(per_call), statistics.median(per_call), max(per_call), repeat, number, note)


def frame_with_faces(width: int, height: int, faces: int = 1, seed: int = 0) -> np.ndarray:
    """A ``height x width`` RGB frame: a smooth generated background with ``faces`` copies of the sample portrait."""
    import cv2

    from .io import load_image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / width * 200, yy / height * 200, np.full_like(xx, 90)], axis=2)
    frame = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    face = load_image(SAMPLE)[40:220, 140:310]  # head and shoulders of the portrait
    side = min(height // 2, width // max(faces, 1) - 8)
    tile = cv2.resize(face, (side, round(side * face.shape[0] / face.shape[1])))
    th, tw = tile.shape[:2]
    th = min(th, height)
    for i in range(faces):
        x = 4 + i * (width // faces)
        y = (height - th) // 2
        frame[y : y + th, x : x + tw] = tile[:th]
    return frame


def run_detect_bench(number: int, repeat: int) -> list[Timing]:
    """Detection alone on 640x480 and 1280x720 frames."""
    from .detect import create_detector

    det = create_detector("yunet")
    out = []
    for w, h in ((640, 480), (1280, 720)):
        frame = frame_with_faces(w, h, 1)
        n = len(det.detect(frame))
        out.append(time_call(f"detect {w}x{h}", lambda f=frame: det.detect(f), number, repeat, f"{n} face(s)"))
    full = create_detector("yunet", max_side=None)
    frame = frame_with_faces(1280, 720, 1)
    out.append(time_call("detect 1280x720 full size", lambda: full.detect(frame), number, repeat))
    return out


def machine() -> dict[str, object]:
    """A short description of this machine."""
    import os

    import cv2
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def register(sub: argparse._SubParsersAction) -> None:
    """Add the bench subcommand."""
    p = sub.add_parser("bench", help="measure speed on generated inputs; prints a table and JSON")
    p.add_argument("what", nargs="*", metavar="WHAT", help="benchmarks to run: detect (default: all)")
    p.add_argument("--number", type=int, default=20, help="calls per timed round (default 20)")
    p.add_argument("--repeat", type=int, default=5, help="timed rounds (default 5)")
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the selected benchmarks and print the table."""
    timings: list[Timing] = []
    what = args.what or ["detect"]
    if "detect" in what:
        timings += run_detect_bench(args.number, args.repeat)
    info = machine()
    print(f"machine: {info}", file=sys.stderr)
    print(f"{'benchmark':<32} {'min ms':>8} {'median ms':>10} {'max ms':>8}  note")
    for t in timings:
        print(f"{t.name:<32} {t.min_ms:8.2f} {t.median_ms:10.2f} {t.max_ms:8.2f}  {t.note}")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "timings": [asdict(t) for t in timings]}, indent=2))
    return 0

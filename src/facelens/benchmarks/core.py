"""Measurement rows, the timing loop, generated inputs and the machine description used by every benchmark."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE = Path(__file__).resolve().parent.parent / "assets" / "astronaut.jpg"
"""The bundled public-domain portrait (NASA) every input is made from."""

SAMPLE_FACE_CENTER = (223.5, 119.5)
"""Centre (x, y) of the face in :data:`SAMPLE` (its box is about 178,63 - 269,176)."""


@dataclass(frozen=True)
class Timing:
    """Milliseconds per call over the timed rounds.

    Attributes:
        name: What was measured (unique within a report).
        min_ms: Fastest round, in ms per call.
        median_ms: Median round, in ms per call.
        max_ms: Slowest round, in ms per call.
        rounds: Timed rounds.
        calls_per_round: Calls per round.
        note: Free text (faces found, settings...).
        group: The benchmark it belongs to (``detect``, ``heads``, ``e2e``, ``video``, ``folder``, ``cold``,
            ``peers``).
        items: Items handled by one call (frames, faces, chips), for the per-item time and the rate.
        unit: What an item is (``"frame"``, ``"face"``, ``"chip"``...).
        vs: For a peer: the name of the facelens row it is compared with.
        cpu_ms: Median CPU time of this process per call (all its threads; children excluded), or NaN. On a busy
            machine it stays close to what the call costs on an idle one, where the wall times do not.

    """

    name: str
    min_ms: float
    median_ms: float
    max_ms: float
    rounds: int
    calls_per_round: int
    note: str = ""
    group: str = ""
    items: float = 1.0
    unit: str = ""
    vs: str = ""
    cpu_ms: float = float("nan")

    @property
    def per_item_ms(self) -> float:
        """Median milliseconds per item."""
        return self.median_ms / self.items if self.items else float("nan")

    @property
    def rate(self) -> float:
        """Items per second at the median."""
        return 1000.0 * self.items / self.median_ms if self.median_ms > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (with the derived per-item time and rate)."""
        return {"kind": "timing", **asdict(self), "per_item_ms": self.per_item_ms, "rate_per_s": self.rate}


@dataclass(frozen=True)
class Quantity:
    """A measured amount that is not a time (e.g. peak memory), over several rounds."""

    name: str
    unit: str
    min: float
    median: float
    max: float
    rounds: int
    note: str = ""
    group: str = ""
    vs: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"kind": "quantity", **asdict(self)}


@dataclass(frozen=True)
class Skipped:
    """A benchmark (usually a peer) that could not run, with the reason."""

    name: str
    reason: str
    group: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"kind": "skipped", **asdict(self)}


Row = Timing | Quantity | Skipped
"""What a benchmark function returns a list of."""


def time_call(
    name: str,
    fn: Callable[[], object],
    number: int = 20,
    repeat: int = 5,
    note: str = "",
    *,
    group: str = "",
    items: float = 1.0,
    unit: str = "",
    vs: str = "",
    warmup: bool = True,
) -> Timing:
    """Time ``fn``: one warm-up call, then ``repeat`` rounds of ``number`` calls; ms per call per round."""
    number, repeat = max(1, int(number)), max(1, int(repeat))
    if warmup:
        fn()
    per_call, cpu = [], []
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(number):
            fn()
        per_call.append((time.perf_counter() - t0) * 1000 / number)
        cpu.append((time.process_time() - c0) * 1000 / number)
    med = statistics.median
    return Timing(
        name, min(per_call), med(per_call), max(per_call), repeat, number, note, group, items, unit, vs, med(cpu)
    )


def summarize(name: str, samples_ms: Sequence[float], note: str = "", **kw: Any) -> Timing:
    """A :class:`Timing` from ms samples taken one call per round (subprocesses, whole folder runs)."""
    s = list(samples_ms)
    return Timing(name, min(s), statistics.median(s), max(s), len(s), 1, note, **kw)


# ---- generated inputs -----------------------------------------------------------------------------------------


def sample_rgb() -> np.ndarray:
    """The bundled portrait as an RGB array."""
    from ..io import load_image

    return load_image(SAMPLE)


def frame_with_faces(width: int, height: int, faces: int = 1, seed: int = 0) -> np.ndarray:
    """A ``height x width`` RGB frame: a smooth generated background with ``faces`` copies of the sample portrait."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / width * 200, yy / height * 200, np.full_like(xx, 90)], axis=2)
    frame = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    face = sample_rgb()[40:220, 140:310]  # head and shoulders of the portrait
    side = min(height // 2, width // max(faces, 1) - 8)
    tile = cv2.resize(face, (side, round(side * face.shape[0] / face.shape[1])))
    th, tw = tile.shape[:2]
    th = min(th, height)
    for i in range(faces):
        x = 4 + i * (width // faces)
        y = (height - th) // 2
        frame[y : y + th, x : x + tw] = tile[:th]
    return frame


def make_chips(folder: str | os.PathLike, count: int = 300, size: int = 200, seed: int = 0) -> list[Path]:
    """Write ``count`` ``size x size`` JPEG face chips cut from the sample portrait into ``folder``.

    Each chip is centred on the portrait's face with a random shift of up to 8% of ``size`` and a random
    brightness factor in [0.8, 1.2], so the files differ (no caching across files) but every one holds a face.
    """
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    img = sample_rgb()
    h, w = img.shape[:2]
    cx, cy = SAMPLE_FACE_CENTER
    half = size / 2
    max_shift = 0.08 * size
    out = []
    for i in range(count):
        dx, dy = rng.uniform(-max_shift, max_shift, 2)
        x0 = int(round(min(max(cx + dx - half, 0), w - size)))
        y0 = int(round(min(max(cy + dy - half, 0), h - size)))
        chip = img[y0 : y0 + size, x0 : x0 + size].astype(np.float32) * rng.uniform(0.8, 1.2)
        p = folder / f"chip_{i:04d}.jpg"
        Image.fromarray(np.clip(chip, 0, 255).astype(np.uint8)).save(p, quality=92)
        out.append(p)
    return out


# ---- the machine --------------------------------------------------------------------------------------------


def _cpu_name() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def load_average() -> float | None:
    """The 1-minute load average (``None`` where the platform has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def machine() -> dict[str, object]:
    """A short description of this machine and of the software measured."""
    import cv2
    import onnxruntime

    from .. import __version__

    return {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "onnxruntime": onnxruntime.__version__,
        "facelens": __version__,
        "load_average_1m": load_average(),
    }


@dataclass
class Report:
    """Everything one ``facelens bench`` run measured, with where and how."""

    command: str
    machine: dict[str, object]
    settings: dict[str, object] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    started: str = ""
    load_average_end: float | None = None
    profile: str = ""

    def timings(self) -> list[Timing]:
        """The timing rows."""
        return [r for r in self.rows if isinstance(r, Timing)]

    def row(self, name: str) -> Timing | Quantity | None:
        """The measured row with this name (``None`` if absent or skipped)."""
        for r in self.rows:
            if r.name == name and not isinstance(r, Skipped):
                return r
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, targets and peer ratios included."""
        from .report import evaluate_targets, peer_ratios

        return {
            "schema": "facelens.bench/2",
            "command": self.command,
            "started": self.started,
            "machine": self.machine,
            "load_average_1m_end": self.load_average_end,
            "settings": self.settings,
            "rows": [r.to_dict() for r in self.rows],
            "targets": [t.to_dict() for t in evaluate_targets(self)],
            "peers": [p.to_dict() for p in peer_ratios(self)],
            "profile": self.profile,
        }

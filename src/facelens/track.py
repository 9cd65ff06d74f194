"""Follow faces across video frames: an IoU tracker with per-track smoothing of the head outputs.

Detections of a frame are matched to existing tracks greedily by IoU (highest first, at least ``iou_threshold``);
unmatched detections start new tracks; a track not seen for ``max_missed`` frames ends. Each track keeps an
exponential moving average of the heads' probability outputs (age distribution, gender, ethnicity, attributes),
so predictions are stable over a track, and the heads can be skipped on a track between refreshes
(``head_every``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .types import Box, Detection


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    ix = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    iy = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = ix * iy
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    """A face followed over frames (mutable: the tracker updates it every frame)."""

    track_id: int
    detection: Detection
    first_frame: int
    last_frame: int
    hits: int = 1
    missed: int = 0
    last_head_frame: int | None = None
    probs: dict[str, np.ndarray] = field(default_factory=dict)
    updates: int = 0

    def smooth(self, new: dict[str, np.ndarray], alpha: float) -> None:
        """Blend new head probabilities into the track's running average (the first update is taken as is)."""
        for task, p in new.items():
            old = self.probs.get(task)
            self.probs[task] = p.copy() if old is None else (1 - alpha) * old + alpha * p
        self.updates += 1


@dataclass(frozen=True)
class TrackSummary:
    """What is known about one track at the end of a video."""

    track_id: int
    first_frame: int
    last_frame: int
    frames_seen: int
    head_updates: int


class IoUTracker:
    """Greedy IoU tracker.

    Args:
        iou_threshold: Minimum IoU to continue a track.
        max_missed: Frames a track may go unseen before it ends.
        alpha: Weight of a new observation in the moving average of head outputs (1 = no smoothing).
    """

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 5, alpha: float = 0.3) -> None:
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.alpha = alpha
        self.tracks: dict[int, Track] = {}
        self.finished: list[Track] = []
        self._next_id = 1

    def update(self, frame: int, detections: list[Detection]) -> list[Track]:
        """Match a frame's detections to tracks; returns the track of each detection, in detection order."""
        pairs = []
        live = list(self.tracks.values())
        for di, det in enumerate(detections):
            for t in live:
                v = iou(det.box, t.detection.box)
                if v >= self.iou_threshold:
                    pairs.append((v, di, t.track_id))
        pairs.sort(reverse=True)
        assigned: dict[int, Track] = {}
        used: set[int] = set()
        for _, di, tid in pairs:
            if di in assigned or tid in used:
                continue
            t = self.tracks[tid]
            t.detection, t.last_frame, t.missed = detections[di], frame, 0
            t.hits += 1
            assigned[di] = t
            used.add(tid)
        for di, det in enumerate(detections):
            if di not in assigned:
                t = Track(self._next_id, det, frame, frame)
                self._next_id += 1
                self.tracks[t.track_id] = t
                assigned[di] = t
                used.add(t.track_id)
        for tid in [tid for tid in self.tracks if tid not in used]:
            t = self.tracks[tid]
            t.missed += 1
            if t.missed > self.max_missed:
                self.finished.append(self.tracks.pop(tid))
        return [assigned[i] for i in range(len(detections))]

    def summaries(self) -> list[TrackSummary]:
        """Summaries of every track seen so far (finished and live), by id."""
        all_tracks = sorted([*self.finished, *self.tracks.values()], key=lambda t: t.track_id)
        return [TrackSummary(t.track_id, t.first_frame, t.last_frame, t.hits, t.updates) for t in all_tracks]

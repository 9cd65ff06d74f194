"""Video analysis: detection every frame, tracking, heads per track (optionally not every frame), smoothing.

Used by ``facelens analyze VIDEO --track`` and by the webcam stream of ``facelens serve``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .heads import HeadOutputs
from .pipeline import FaceAnalyzer, _merge
from .track import IoUTracker, Track
from .types import Age, Face, ImageResult, Label, predictions_to_dict


@dataclass(frozen=True)
class TrackResult:
    """Per-track summary: when the face was seen and its smoothed predictions at the end."""

    track_id: int
    first_frame: int
    last_frame: int
    frames_seen: int
    head_updates: int
    age: Age | None = None
    gender: Label | None = None
    race: Label | None = None
    attributes: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (prediction keys as in ``docs/schema.md``)."""
        d: dict[str, Any] = {
            "track_id": self.track_id,
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "frames_seen": self.frames_seen,
            "head_updates": self.head_updates,
        }
        d.update(predictions_to_dict(self.age, self.gender, self.race, self.attributes))
        return d


class VideoAnalyzer:
    """Analyse a sequence of frames with tracking.

    Args:
        analyzer: Supplies the detector and heads.
        head_every: Run the heads on a track at most every N frames (1 = every frame); new tracks always run.
        iou_threshold: Tracker IoU threshold.
        max_missed: Frames a track may be unseen before it ends.
        alpha: Smoothing weight of a new head observation (1 = no smoothing).
    """

    def __init__(
        self,
        analyzer: FaceAnalyzer,
        head_every: int = 1,
        iou_threshold: float = 0.3,
        max_missed: int = 5,
        alpha: float = 0.3,
    ) -> None:
        if head_every < 1:
            raise ValueError("head_every must be >= 1")
        self.analyzer = analyzer
        self.head_every = head_every
        self.tracker = IoUTracker(iou_threshold, max_missed, alpha)

    def process_frame(self, image: np.ndarray, frame: int, path: str | None = None) -> ImageResult:
        """Detect, track and (where due) run the heads on one RGB frame."""
        detections = self.analyzer.detect(image)
        tracks = self.tracker.update(frame, detections)
        due = [
            i for i, t in enumerate(tracks) if t.last_head_frame is None or frame - t.last_head_frame >= self.head_every
        ]
        heads = self.analyzer.heads
        if due:
            for hi, head in enumerate(heads):
                probs = head.run_crops(head.align(image, [detections[i] for i in due]))
                for j, i in enumerate(due):
                    tracks[i].smooth({f"{hi}/{task}": p[j] for task, p in probs.items()}, self.tracker.alpha)
            for i in due:
                tracks[i].last_head_frame = frame
        faces = []
        for det, t in zip(detections, tracks, strict=True):
            outs = self._decode(t)
            face = _merge(0, det, outs)
            faces.append(Face(face.detection, face.age, face.gender, face.race, face.attributes, t.track_id))
        return ImageResult(path, image.shape[1], image.shape[0], tuple(faces), frame=frame)

    def _decode(self, track: Track) -> list[HeadOutputs]:
        outs = []
        for hi, head in enumerate(self.analyzer.heads):
            probs = {k.split("/", 1)[1]: v[None] for k, v in track.probs.items() if k.startswith(f"{hi}/")}
            outs.append(head.decode(probs) if probs else HeadOutputs())
        return outs

    def process(self, frames: Iterable[tuple[int, np.ndarray]], path: str | None = None) -> Iterator[ImageResult]:
        """Process ``(frame_index, rgb)`` pairs in order, yielding one result per frame."""
        for index, image in frames:
            yield self.process_frame(image, index, path)

    def track_results(self) -> list[TrackResult]:
        """Summaries with the final smoothed predictions of every track seen so far."""
        tracks = sorted([*self.tracker.finished, *self.tracker.tracks.values()], key=lambda t: t.track_id)
        out = []
        for t in tracks:
            face = _merge(0, t.detection, self._decode(t))
            out.append(
                TrackResult(
                    t.track_id,
                    t.first_frame,
                    t.last_frame,
                    t.hits,
                    t.updates,
                    face.age,
                    face.gender,
                    face.race,
                    face.attributes,
                )  # fmt: skip
            )
        return out


def write_annotated_video(
    results_and_frames: Iterable[tuple[ImageResult, np.ndarray]], out_path: str | os.PathLike, fps: float
) -> int:
    """Write annotated frames to a video file (codec from the extension: mp4v for .mp4, MJPG otherwise).

    Returns:
        The number of frames written.
    """
    import cv2

    from .annotate import annotate

    writer = None
    n = 0
    try:
        for res, image in results_and_frames:
            if writer is None:
                fourcc = cv2.VideoWriter_fourcc(*("mp4v" if str(out_path).lower().endswith(".mp4") else "MJPG"))
                writer = cv2.VideoWriter(str(out_path), fourcc, fps, (image.shape[1], image.shape[0]))
            writer.write(cv2.cvtColor(annotate(image, res), cv2.COLOR_RGB2BGR))
            n += 1
    finally:
        if writer is not None:
            writer.release()
    return n

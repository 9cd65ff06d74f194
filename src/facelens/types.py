"""Typed results: what every stage of the pipeline returns.

All are frozen dataclasses. ``to_dict()`` gives the JSON form documented in ``docs/schema.md`` (and the JSON schema
shipped as ``facelens/schema/result.schema.json``); keys of heads that are not installed are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _r(x: float, nd: int = 2) -> float:
    return round(float(x), nd)


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixel coordinates of the original image (x2, y2 exclusive)."""

    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        """Width in pixels."""
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        """Height in pixels."""
        return self.y2 - self.y1

    def to_list(self) -> list[float]:
        """Return ``[x1, y1, x2, y2]`` rounded to 0.01 px."""
        return [_r(self.x1), _r(self.y1), _r(self.x2), _r(self.y2)]


@dataclass(frozen=True)
class Landmarks:
    """Five facial landmarks: right eye, left eye (as seen in the image: left-most first), nose, mouth corners."""

    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if len(self.points) != 5:
            raise ValueError(f"Landmarks needs 5 points, got {len(self.points)}")

    @classmethod
    def from_array(cls, arr: np.ndarray) -> Landmarks:
        """Build from a ``(5, 2)`` array."""
        a = np.asarray(arr, dtype=np.float64).reshape(5, 2)
        return cls(tuple((float(x), float(y)) for x, y in a))

    def to_array(self) -> np.ndarray:
        """Return a ``(5, 2)`` float32 array."""
        return np.asarray(self.points, dtype=np.float32)

    def to_list(self) -> list[list[float]]:
        """Return ``[[x, y], ...]`` rounded to 0.01 px."""
        return [[_r(x), _r(y)] for x, y in self.points]


@dataclass(frozen=True)
class Detection:
    """One face found by a detector."""

    box: Box
    score: float
    landmarks: Landmarks


@dataclass(frozen=True)
class Label:
    """A single-label classification: the chosen label and the probability of every label."""

    label: str
    score: float
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Age:
    """Age estimate: expected value, an interval holding ``coverage`` of the predicted mass, and groups."""

    years: float
    interval: tuple[float, float]
    groups: dict[str, str] = field(default_factory=dict)
    coverage: float = 0.8


def predictions_to_dict(
    age: Age | None, gender: Label | None, race: Label | None, attributes: dict[str, float] | None
) -> dict[str, Any]:
    """JSON keys of the head predictions; a prediction that is ``None`` leaves its keys out.

    Keys: ``age``, ``age_interval``, ``age_group``, ``gender``, ``race``, ``attributes`` (see ``docs/schema.md``).
    """
    d: dict[str, Any] = {}
    if age is not None:
        d["age"] = _r(age.years, 1)
        d["age_interval"] = [_r(age.interval[0], 1), _r(age.interval[1], 1)]
        d["age_group"] = dict(age.groups)
    if gender is not None:
        d["gender"] = {"label": gender.label, "score": _r(gender.score, 4)}
    if race is not None:
        d["race"] = {"label": race.label, "scores": {k: _r(v, 4) for k, v in race.scores.items()}}
    if attributes is not None:
        d["attributes"] = {k: _r(v, 4) for k, v in attributes.items()}
    return d


@dataclass(frozen=True)
class Face:
    """Everything known about one face. Fields of heads that did not run are ``None``."""

    detection: Detection
    age: Age | None = None
    gender: Label | None = None
    race: Label | None = None
    attributes: dict[str, float] | None = None
    track_id: int | None = None

    @property
    def box(self) -> Box:
        """The face box (shortcut for ``detection.box``)."""
        return self.detection.box

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, see ``docs/schema.md``."""
        d: dict[str, Any] = {
            "box": self.detection.box.to_list(),
            "score": _r(self.detection.score, 4),
            "landmarks": self.detection.landmarks.to_list(),
        }
        if self.track_id is not None:
            d["track_id"] = self.track_id
        d.update(predictions_to_dict(self.age, self.gender, self.race, self.attributes))
        return d


@dataclass(frozen=True)
class ImageResult:
    """The result for one image (or one video frame): its size, its faces, or the error that stopped it."""

    path: str | None
    width: int
    height: int
    faces: tuple[Face, ...] = ()
    error: str | None = None
    error_code: str | None = None
    frame: int | None = None

    @property
    def ok(self) -> bool:
        """True when the image was read and analysed."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, see ``docs/schema.md``."""
        d: dict[str, Any] = {
            "path": self.path,
            "width": self.width,
            "height": self.height,
            "faces": [f.to_dict() for f in self.faces],
            "error": self.error,
        }
        if self.error_code is not None:
            d["error_code"] = self.error_code
        if self.frame is not None:
            d["frame"] = self.frame
        return d

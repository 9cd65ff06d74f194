"""Per-image answers of a head evaluation, and their CSV file (``facelens eval DATASET --predictions FILE``).

A report of :func:`facelens.eval.heads.evaluate_dataset` says how good the heads are; the predictions file says on
which images they were wrong: one row per image of the split with its labels, the face found (or why none), and
every head's answer with its probabilities, ready for pandas or a spreadsheet.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..labels import CELEBA_ATTRIBUTES, GENDERS, RACES

__all__ = ["ImagePredictions", "csv_columns"]


@dataclass(frozen=True)
class ImagePredictions:
    """What the pipeline answered for every image of an evaluated split, one row per image.

    Arrays are filled in place by :meth:`record` / :meth:`fail`; unanswered entries stay NaN (scores, ages,
    attribute probabilities) or -1 (class indices).

    Attributes:
        found: Whether a face was found (and analysed) in the image.
        error: Why the image could not be analysed ("" when it could).
        age: Estimated age in years.
        age_low: Lower end of the age interval.
        age_high: Upper end of the age interval.
        gender: Index of the predicted gender in :data:`~facelens.labels.GENDERS`.
        gender_scores: ``(n, 2)`` probabilities in :data:`~facelens.labels.GENDERS` order.
        race: Index of the predicted ethnicity in :data:`~facelens.labels.RACES`.
        race_scores: ``(n, 5)`` probabilities in :data:`~facelens.labels.RACES` order.
        attributes: ``(n, 40)`` probabilities in :data:`~facelens.labels.CELEBA_ATTRIBUTES` order.
        age_coverage: Nominal coverage of each age interval (e.g. 0.8).

    """

    found: np.ndarray
    error: list[str]
    age: np.ndarray
    age_low: np.ndarray
    age_high: np.ndarray
    gender: np.ndarray
    gender_scores: np.ndarray
    race: np.ndarray
    race_scores: np.ndarray
    attributes: np.ndarray
    age_coverage: np.ndarray

    @classmethod
    def empty(cls, n: int) -> ImagePredictions:
        """Room for ``n`` images, nothing answered yet."""

        def nan(*shape: int) -> np.ndarray:
            return np.full((n, *shape), np.nan)

        return cls(
            found=np.zeros(n, bool), error=[""] * n, age=nan(), age_low=nan(), age_high=nan(),
            gender=np.full(n, -1), gender_scores=nan(len(GENDERS)), race=np.full(n, -1), race_scores=nan(len(RACES)),
            attributes=nan(len(CELEBA_ATTRIBUTES)), age_coverage=nan(),
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.found)

    @property
    def coverage(self) -> float:
        """Nominal coverage of the age intervals (the first answered face's; 0.8 when no face has an age)."""
        known = self.age_coverage[np.isfinite(self.age_coverage)]
        return float(known[0]) if known.size else 0.8

    def record(self, i: int, face: Any) -> None:
        """Store the answers for image ``i`` from its chosen :class:`facelens.types.Face`."""
        self.found[i] = True
        if face.age is not None:
            self.age[i], (self.age_low[i], self.age_high[i]) = face.age.years, face.age.interval
            self.age_coverage[i] = face.age.coverage
        if face.gender is not None:
            self.gender[i] = GENDERS.index(face.gender.label)
            self.gender_scores[i] = [face.gender.scores.get(g, np.nan) for g in GENDERS]
        if face.race is not None:
            self.race[i] = RACES.index(face.race.label)
            self.race_scores[i] = [face.race.scores.get(r, np.nan) for r in RACES]
        if face.attributes is not None:
            self.attributes[i] = [face.attributes.get(a, np.nan) for a in CELEBA_ATTRIBUTES]

    def fail(self, i: int, message: str) -> None:
        """Mark image ``i`` as unreadable or unanalysable, with the reason."""
        self.error[i] = message

    def write_csv(self, path: str | Path, samples: Sequence[Any]) -> Path:
        """Write one row per image (see :func:`csv_columns`) and return the path (its folder is created).

        Args:
            path: The CSV file to write.
            samples: The evaluated :class:`facelens.data.FaceSample` list, in the same order.

        Returns:
            ``path`` as a :class:`~pathlib.Path`.

        """
        if len(samples) != len(self):
            raise ValueError(f"{len(samples)} samples for {len(self)} predictions")
        with_attrs = any(s.attributes is not None for s in samples) or bool(np.isfinite(self.attributes).any())
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(csv_columns(with_attrs))
            for i, s in enumerate(samples):
                writer.writerow(self._row(i, s, with_attrs))
        return path

    def _row(self, i: int, s: Any, with_attrs: bool) -> list[object]:
        rng = f"{s.age_range[0]}-{s.age_range[1]}" if s.age_range is not None else ""
        row: list[object] = [
            str(s.path), int(self.found[i]), self.error[i],
            _num(s.age), rng, _name(GENDERS, s.gender), _name(RACES, s.race),
            _num(self.age[i]), _num(self.age_low[i]), _num(self.age_high[i]),
            _name(GENDERS, self.gender[i]), *map(_num, self.gender_scores[i]),
            _name(RACES, self.race[i]), *map(_num, self.race_scores[i]),
        ]  # fmt: skip
        if with_attrs:
            truth = s.attributes if s.attributes is not None else (None,) * len(CELEBA_ATTRIBUTES)
            row += [_num(v) for v in self.attributes[i]] + ["" if v is None else int(v) for v in truth]
        return row


def csv_columns(with_attributes: bool) -> list[str]:
    """Header of the predictions CSV.

    ``true_*`` columns are the dataset's labels, the others the pipeline's answers (empty where not known or not
    answered); ``p_*`` are class probabilities, attribute columns the probability that the attribute is present.

    Args:
        with_attributes: Add one probability column per CelebA attribute and one ``true_<attribute>`` column each.

    Returns:
        The column names.

    """
    cols = ["path", "face_found", "error", "true_age", "true_age_range", "true_gender", "true_race"]
    cols += ["age", "age_low", "age_high", "gender", *(f"p_{g}" for g in GENDERS)]
    cols += ["race", *(f"p_{r}" for r in RACES)]
    if with_attributes:
        cols += [*CELEBA_ATTRIBUTES, *(f"true_{a}" for a in CELEBA_ATTRIBUTES)]
    return cols


def _num(value: float | None) -> str:
    """A number as CSV text, '' when unknown."""
    if value is None or not np.isfinite(value):
        return ""
    return f"{float(value):.6g}"


def _name(labels: Sequence[str], index: float | None) -> str:
    """The label of a class index, '' when unknown (None, NaN or -1)."""
    if index is None or not np.isfinite(index) or index < 0:
        return ""
    return labels[int(index)]

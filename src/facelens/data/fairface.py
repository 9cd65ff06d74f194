"""FairFace reader: age group, gender and race (7 FairFace races folded into facelens' 5)."""

from __future__ import annotations

import csv
from pathlib import Path

from facelens.data.base import (
    DatasetIndex,
    DatasetReader,
    FaceSample,
    SkippedEntry,
    read_text_lines,
    register_dataset,
    write_tiny_jpeg,
)
from facelens.errors import DatasetError
from facelens.labels import RACES

FAIRFACE_SPLITS: dict[str, str] = {"train": "fairface_label_train.csv", "val": "fairface_label_val.csv"}
"""Split -> label file name."""

FAIRFACE_RACES: dict[str, int] = {
    "White": RACES.index("white"),
    "Black": RACES.index("black"),
    "East Asian": RACES.index("asian"),
    "Southeast Asian": RACES.index("asian"),
    "Indian": RACES.index("indian"),
    "Latino_Hispanic": RACES.index("other"),
    "Middle Eastern": RACES.index("other"),
}
"""FairFace's 7 races -> index into :data:`facelens.labels.RACES` (UTKFace's 5 classes).

East and Southeast Asian both become ``asian``; Latino_Hispanic and Middle Eastern become ``other``, which is
how UTKFace's "Others" class is usually read. The 7-way label is not kept.
"""

FAIRFACE_GENDERS: dict[str, int] = {"Male": 0, "Female": 1}
"""FairFace gender -> index into :data:`facelens.labels.GENDERS`."""

OPEN_TOP_AGE = 100
"""Upper bound used for the open top group ``"more than 70"`` -> ``(70, 100)``."""

_REQUIRED = ("file", "age", "gender", "race")


def parse_fairface_age(text: str) -> tuple[float, tuple[int, int]]:
    """Parse a FairFace age group such as ``"3-9"`` or ``"more than 70"``.

    Args:
        text: The field.

    Returns:
        ``(midpoint, (low, high))``; ``"more than 70"`` gives ``(85.0, (70, 100))``.

    Raises:
        ValueError: If the field is not an age group.

    """
    s = text.strip()
    if s.startswith("more than "):
        lo_s, hi_s = s[len("more than ") :].strip(), str(OPEN_TOP_AGE)
    else:
        lo_s, sep, hi_s = s.partition("-")
        if not sep:
            raise ValueError(f"age group {s!r} is neither 'low-high' nor 'more than N'")
    lo_s, hi_s = lo_s.strip(), hi_s.strip()
    if not (lo_s.isascii() and lo_s.isdigit() and hi_s.isascii() and hi_s.isdigit()):
        raise ValueError(f"age group {s!r} is not numeric")
    lo, hi = int(lo_s), int(hi_s)
    if lo > hi:
        raise ValueError(f"age group {s!r} is reversed")
    return (lo + hi) / 2.0, (lo, hi)


@register_dataset("fairface")
class FairFaceReader(DatasetReader):
    """FairFace: the official label CSVs, with or without the images.

    Layout::

        root/
            fairface_label_train.csv    header "file,age,gender,race,service_test", e.g.
            fairface_label_val.csv      "val/1.jpg,3-9,Male,East Asian,False"
            train/1.jpg ...  val/1.jpg ...   the images, at root / <file column>

    Label mapping: ``age_range`` from the group (``"more than 70"`` -> ``(70, 100)``), ``age`` its
    midpoint; ``gender`` Male 0 / Female 1; ``race`` per :data:`FAIRFACE_RACES` (White->white, Black->black,
    East Asian and Southeast Asian->asian, Indian->indian, Latino_Hispanic and Middle Eastern->other);
    ``split`` from the file read (``train``/``val``); ``identity`` None (FairFace has no subject ids).
    Columns are found by header name, so their order does not matter. Rows with a missing field or an
    unknown age, gender or race go to ``skipped``.

    Args:
        root: The dataset folder.
        require_images: When True, rows whose image file is missing go to ``skipped``.
        splits: Which label files to read (default both); each must exist.

    """

    def __init__(
        self,
        root: Path | str,
        *,
        require_images: bool = False,
        splits: tuple[str, ...] | list[str] = ("train", "val"),
    ) -> None:
        super().__init__(root)
        splits = tuple(splits)
        if not splits or any(s not in FAIRFACE_SPLITS for s in splits):
            raise DatasetError(f"fairface: option splits must be a non-empty subset of {tuple(FAIRFACE_SPLITS)}")
        self.require_images = bool(require_images)
        self.splits = splits

    def load(self) -> DatasetIndex:
        """Parse the label CSVs; see the class docstring.

        Returns:
            The samples (train first, then val, in file order) and the skipped rows.

        Raises:
            DatasetError: If the root or a label file is missing, or a header lacks a required column.

        """
        root = self._require_root()
        paths = self._require_files(root / FAIRFACE_SPLITS[s] for s in self.splits)
        samples: list[FaceSample] = []
        skipped: list[SkippedEntry] = []
        for split, path in zip(self.splits, paths, strict=True):
            rows = csv.reader(read_text_lines(path))
            header = [h.strip() for h in next(rows, [])]
            missing = [c for c in _REQUIRED if c not in header]
            if missing:
                raise DatasetError(f"fairface: {path} header lacks column(s) {missing}")
            i_file, i_age, i_gender, i_race = (header.index(c) for c in _REQUIRED)
            width = max(i_file, i_age, i_gender, i_race) + 1
            for lineno, row in enumerate(rows, start=2):
                if not row or not any(f.strip() for f in row):
                    continue
                where = f"{path}:{lineno}"
                if len(row) < width:
                    skipped.append(SkippedEntry(where, f"expected {len(header)} fields, found {len(row)}"))
                    continue
                file = row[i_file].strip()
                if not file:
                    skipped.append(SkippedEntry(where, "empty file field"))
                    continue
                try:
                    age, age_range = parse_fairface_age(row[i_age])
                except ValueError as exc:
                    skipped.append(SkippedEntry(where, str(exc)))
                    continue
                gender = FAIRFACE_GENDERS.get(row[i_gender].strip())
                if gender is None:
                    skipped.append(SkippedEntry(where, f"gender {row[i_gender]!r} is not Male or Female"))
                    continue
                race = FAIRFACE_RACES.get(row[i_race].strip())
                if race is None:
                    skipped.append(SkippedEntry(where, f"unknown race {row[i_race]!r}"))
                    continue
                image = root / file
                if self.require_images and not image.is_file():
                    skipped.append(SkippedEntry(where, f"image not found: {image}"))
                    continue
                samples.append(
                    FaceSample(path=image, age=age, age_range=age_range, gender=gender, race=race, split=split)
                )
        return self._index(samples, skipped)

    @classmethod
    def write_example(cls, root: Path) -> int:
        """Write both label CSVs (10 valid rows, 3 bad ones) and two images; see the base class."""
        header = "file,age,gender,race,service_test"
        races = list(FAIRFACE_RACES)
        ages = ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70", "20-29"]
        train = [f"train/{i + 1}.jpg,{ages[i]},{'Male' if i % 2 else 'Female'},{races[i]},True" for i in range(7)]
        train += [
            "train/90.jpg,twenty,Male,White,False",  # malformed age
            "train/91.jpg,20-29,Other,White,False",  # unknown gender
            "train/92.jpg,20-29,Male,Martian,False",  # unknown race
        ]
        val = [f"val/{i - 6}.jpg,{ages[i]},Female,{races[i - 7]},False" for i in range(7, 10)]
        (root / "fairface_label_train.csv").write_text("\n".join([header, *train]) + "\n")
        (root / "fairface_label_val.csv").write_text("\r\n".join([header, *val]) + "\r\n")
        write_tiny_jpeg(root / "train" / "1.jpg")
        write_tiny_jpeg(root / "val" / "1.jpg")
        return 10

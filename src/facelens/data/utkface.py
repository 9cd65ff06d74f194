"""UTKFace reader: age, gender and race from the file names."""

from __future__ import annotations

from pathlib import Path

from facelens.data.base import (
    DatasetIndex,
    DatasetReader,
    FaceSample,
    register_dataset,
    write_tiny_jpeg,
)
from facelens.labels import GENDERS, RACES

MAX_AGE = 120
"""Largest age accepted from a UTKFace name (the dataset's range is 1-116)."""

_SUFFIXES = (".jpg.chip.jpg", ".jpg")


def parse_utkface_name(name: str) -> tuple[int, int, int]:
    """Parse a UTKFace file name ``[age]_[gender]_[race]_[datetime].jpg[.chip.jpg]``.

    Args:
        name: The file name (no folder).

    Returns:
        ``(age, gender, race)`` with gender and race as indices into :data:`~facelens.labels.GENDERS` and
        :data:`~facelens.labels.RACES` (UTKFace uses the same coding).

    Raises:
        ValueError: If the name is malformed; the message says how.

    """
    if any(c.isspace() for c in name):
        raise ValueError("file name contains whitespace")
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            break
    else:
        raise ValueError("file name does not end in '.jpg.chip.jpg' or '.jpg'")
    if name.endswith(".chip.jpg") and not name.endswith(".jpg.chip.jpg"):
        raise ValueError("malformed suffix: expected '.jpg.chip.jpg' (missing dot before 'jpg')")
    fields = stem.split("_")
    if len(fields) != 4:
        raise ValueError(f"expected 4 underscore-separated fields age_gender_race_datetime, found {len(fields)}")
    age_s, gender_s, race_s, stamp = fields
    for label, value in (("age", age_s), ("gender", gender_s), ("race", race_s), ("datetime", stamp)):
        if not (value.isascii() and value.isdigit()):
            raise ValueError(f"{label} field {value!r} is not a non-negative integer")
    age, gender, race = int(age_s), int(gender_s), int(race_s)
    if age > MAX_AGE:
        raise ValueError(f"age {age} out of range 0-{MAX_AGE}")
    if gender >= len(GENDERS):
        raise ValueError(f"gender {gender} out of range 0-{len(GENDERS) - 1}")
    if race >= len(RACES):
        raise ValueError(f"race {race} out of range 0-{len(RACES) - 1}")
    return age, gender, race


def _utkface_sample(path: Path) -> FaceSample:
    age, gender, race = parse_utkface_name(path.name)
    return FaceSample(path=path, age=float(age), gender=gender, race=race)


@register_dataset("utkface")
class UTKFaceReader(DatasetReader):
    """UTKFace: labels encoded in the file names.

    Layout::

        root/                     (or root/UTKFace/ -- the UTKFace subfolder is used when present)
            [age]_[gender]_[race]_[datetime].jpg.chip.jpg     aligned & cropped faces
            [age]_[gender]_[race]_[datetime].jpg              in-the-wild naming, also accepted

    Folders are scanned recursively (option ``recursive=False`` for the top folder only); only image files
    (see :data:`~facelens.data.base.IMAGE_EXTENSIONS`) are considered. gender is 0 male / 1 female and race
    0 white, 1 black, 2 asian, 3 indian, 4 other, as in :mod:`facelens.labels`. Malformed names (a missing
    field, whitespace, a missing dot, non-numeric or out-of-range values) go to ``skipped`` with the reason.
    UTKFace defines no split and no identities: ``split`` and ``identity`` are None.

    Args:
        root: The dataset folder.
        recursive: Scan subfolders too (default True).

    """

    def __init__(self, root: Path | str, *, recursive: bool = True) -> None:
        super().__init__(root)
        self.recursive = bool(recursive)

    def image_folder(self) -> Path:
        """Return the folder that holds the images: ``root/UTKFace`` when it exists, else ``root``.

        Raises:
            DatasetError: If the root folder does not exist.

        """
        return self._first_folder("UTKFace")

    def load(self) -> DatasetIndex:
        """Scan the image names; see the class docstring.

        Returns:
            The samples and the skipped file names.

        Raises:
            DatasetError: If the root folder does not exist or holds no image at all.

        """
        return self._index_file_names(self.image_folder(), _utkface_sample, recursive=self.recursive)

    @classmethod
    def write_example(cls, root: Path) -> int:
        """Write 4 valid and 5 malformed UTKFace names under ``root/UTKFace``; see the base class."""
        folder = root / "UTKFace"
        valid = [
            "25_0_0_20170116174525125.jpg.chip.jpg",
            "1_1_2_20161219140530307.jpg.chip.jpg",
            "116_1_4_20170120134921760.jpg.chip.jpg",
            "wild/40_0_3_20170117135331416.jpg",
        ]
        malformed = [
            "39_1_20170116174525125.jpg.chip.jpg",  # missing race field
            "24_0_1_20170116220224657 .jpg.chip.jpg",  # a space
            "55_0_0_20170116232725357jpg.chip.jpg",  # a missing dot
            "30_3_0_20170116232725357.jpg.chip.jpg",  # gender out of range
            "x_0_7_20170116232725357.jpg.chip.jpg",  # non-numeric age
        ]
        for name in valid + malformed:
            write_tiny_jpeg(folder / name)
        (folder / "README.txt").write_text("not an image; ignored\n")
        return len(valid)

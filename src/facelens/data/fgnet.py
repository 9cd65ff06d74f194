"""FG-NET reader: subject id and age from the file names."""

from __future__ import annotations

import re
from pathlib import Path

from facelens.data.base import (
    DatasetIndex,
    DatasetReader,
    FaceSample,
    register_dataset,
    write_tiny_jpeg,
)

_NAME = re.compile(r"(\d{3})[Aa](\d{2})([A-Za-z]*)\.[A-Za-z]+")


def parse_fgnet_name(name: str) -> tuple[str, int]:
    """Parse an FG-NET file name such as ``001A02.JPG`` or ``001A43a.JPG``.

    Args:
        name: The file name (no folder).

    Returns:
        ``(subject, age)``: the three-digit subject id (``"001"``) and the age in years.

    Raises:
        ValueError: If the name is not of the form ``<3-digit subject>A<2-digit age>[letters].<ext>``.

    """
    m = _NAME.fullmatch(name)
    if m is None:
        raise ValueError("file name is not of the form <3-digit subject>A<2-digit age>[letters].<extension>")
    return m.group(1), int(m.group(2))


def _fgnet_sample(path: Path) -> FaceSample:
    subject, age = parse_fgnet_name(path.name)
    return FaceSample(path=path, age=float(age), identity=subject)


@register_dataset("fgnet")
class FGNetReader(DatasetReader):
    """FG-NET aging database: 1,002 images of 82 subjects, labels in the file names.

    Layout::

        root/                       (or root/images/ or root/FGNET/images/ -- used when present)
            001A02.JPG              subject 001 at age 2
            001A43a.JPG             letter suffixes (a second photo at the same age) are allowed

    Folders are scanned recursively; only image files are considered (the ``points/*.pts`` landmark files of
    the official archive are ignored). ``identity`` is the subject id (``"001"``), ``age`` the age in the
    name. Malformed image names go to ``skipped``. No gender, race or split is defined.

    Args:
        root: The dataset folder.

    """

    def image_folder(self) -> Path:
        """Return ``root/images`` or ``root/FGNET/images`` when present, else ``root``.

        Raises:
            DatasetError: If the root folder does not exist.

        """
        return self._first_folder("images", "FGNET/images")

    def load(self) -> DatasetIndex:
        """Scan the image names; see the class docstring.

        Returns:
            The samples (sorted by path) and the skipped file names.

        Raises:
            DatasetError: If the root folder does not exist or holds no image at all.

        """
        return self._index_file_names(self.image_folder(), _fgnet_sample)

    @classmethod
    def write_example(cls, root: Path) -> int:
        """Write 4 valid and 2 malformed FG-NET names under ``root/images``; see the base class."""
        folder = root / "images"
        for name in ("001A02.JPG", "001A43a.JPG", "002A16.jpg", "082A05b.JPG", "1A02.JPG", "001B02.JPG"):
            write_tiny_jpeg(folder / name)
        (root / "points").mkdir()
        (root / "points" / "001a02.pts").write_text("version: 1\n")
        return 4

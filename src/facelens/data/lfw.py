"""LFW reader: identities only (one folder per person)."""

from __future__ import annotations

import os
from pathlib import Path

from facelens.data.base import (
    DatasetIndex,
    DatasetReader,
    FaceSample,
    SkippedEntry,
    is_image_name,
    register_dataset,
    write_tiny_jpeg,
)
from facelens.errors import DatasetError

WRAPPER_FOLDERS: tuple[str, ...] = ("lfw", "lfw-deepfunneled", "lfw_funneled", "lfw-funneled")
"""Sub-folders of the usual archives; the first one present under ``root`` is used as the image root."""


@register_dataset("lfw")
class LFWReader(DatasetReader):
    """Labeled Faces in the Wild: identities from the folder names, no age/gender/race labels.

    Layout::

        root/                           (or root/lfw/, root/lfw-deepfunneled/, ... -- see WRAPPER_FOLDERS)
            <Person_Name>/<Person_Name>_0001.jpg
            <Person_Name>/<Person_Name>_0002.jpg

    ``identity`` is the folder name. Image files in a person folder whose name is not
    ``<folder>_<4 digits>.<ext>`` go to ``skipped``; files directly in the root (``pairs.txt`` ...) and deeper
    folders are ignored. No split is defined (the official pair lists are not read).

    Args:
        root: The dataset folder.

    """

    def image_folder(self) -> Path:
        """Return the first of :data:`WRAPPER_FOLDERS` under ``root`` that exists, else ``root``.

        Raises:
            DatasetError: If the root folder does not exist.

        """
        return self._first_folder(*WRAPPER_FOLDERS)

    def load(self) -> DatasetIndex:
        """Scan the person folders; see the class docstring.

        Returns:
            The samples (sorted by person, then file) and the skipped files.

        Raises:
            DatasetError: If the root folder does not exist or holds no person folder with images.

        """
        folder = self.image_folder()
        samples: list[FaceSample] = []
        skipped: list[SkippedEntry] = []
        with os.scandir(folder) as it:
            people = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
        n_files = 0
        for person in people:
            with os.scandir(folder / person) as it:
                names = sorted(e.name for e in it if e.is_file() and is_image_name(e.name))
            for name in names:
                n_files += 1
                path = folder / person / name
                stem = os.path.splitext(name)[0]
                number = stem[len(person) + 1 :]
                if not (stem.startswith(person + "_") and len(number) == 4 and number.isdigit()):
                    skipped.append(SkippedEntry(str(path), f"file name is not {person}_<4 digits>.<extension>"))
                    continue
                samples.append(FaceSample(path=path, identity=person))
        if n_files == 0:
            raise DatasetError(f"lfw: no person folder with images found in {folder}")
        return self._index(samples, skipped)

    @classmethod
    def write_example(cls, root: Path) -> int:
        """Write 3 valid images of 2 people and 1 misnamed one; see the base class."""
        for rel in ("Ada_Lovelace/Ada_Lovelace_0001.jpg", "Ada_Lovelace/Ada_Lovelace_0002.jpg",
                    "Alan_Turing/Alan_Turing_0001.jpg", "Alan_Turing/Ada_Lovelace_0003.jpg"):  # fmt: skip
            write_tiny_jpeg(root / "lfw" / rel)
        (root / "pairs.txt").write_text("10\t300\n")
        return 3

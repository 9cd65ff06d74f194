"""CelebA reader: 40 binary attributes, gender from ``Male``, the official train/val/test partition."""

from __future__ import annotations

import os
from pathlib import Path

from facelens.data.base import (
    DatasetIndex,
    DatasetReader,
    FaceSample,
    SkippedEntry,
    find_file,
    is_image_name,
    read_text_lines,
    register_dataset,
    write_tiny_jpeg,
)
from facelens.errors import DatasetError
from facelens.labels import CELEBA_ATTRIBUTES

IMAGE_FOLDERS: tuple[str, ...] = ("face_crops", "img_align_celeba_89x109", "img_align_celeba")
"""Image folders tried, in this order, when no ``images`` option is given."""

PARTITION_SPLITS: dict[str, str] = {"0": "train", "1": "val", "2": "test"}
"""``list_eval_partition.txt`` codes -> split names."""

_ATTR_VALUES: dict[str, int] = {"1": 1, "+1": 1, "-1": 0}
_MALE = CELEBA_ATTRIBUTES.index("Male")
_LABEL_FOLDERS = ("", "Anno", "Eval")  # the official download keeps label files in Anno/ and Eval/


@register_dataset("celeba")
class CelebAReader(DatasetReader):
    """CelebA: attribute labels joined on file name with the images present.

    Layout (label files may be plain or ``.gz``, in ``root`` or in the official ``Anno/`` / ``Eval/``)::

        root/
            list_attr_celeba.txt[.gz]      line 1: count; line 2: the 40 names; then "NNNNNN.jpg v1 ... v40"
            list_eval_partition.txt[.gz]   "NNNNNN.jpg p", p = 0 train, 1 val, 2 test
            identity_CelebA.txt[.gz]       optional: "NNNNNN.jpg identity"
            face_crops/ | img_align_celeba_89x109/ | img_align_celeba/    the images, "NNNNNN.jpg"

    Only images present in the image folder become samples; they are joined with the label files on the file
    name stem, so re-encoded copies (``000001.png``) still match. Attributes are converted from +1/-1 to 1/0
    in :data:`~facelens.labels.CELEBA_ATTRIBUTES` order (the header's order is checked and, if it is a
    permutation, undone); ``gender`` is 0 when ``Male`` is +1, else 1. Skipped: present images without an
    attribute line, and attribute lines that do not hold 40 values of +1/-1. An image without a (valid)
    partition line keeps ``split=None``; without an identity line, ``identity=None``.

    Args:
        root: The dataset folder.
        images: Name of the image folder under ``root`` (default: the first of :data:`IMAGE_FOLDERS` that
            exists). A folder that merely wraps a same-named folder (``img_align_celeba/img_align_celeba/``,
            as some downloads do) is unwrapped.
        identity_file: Path of the identity file (relative to ``root`` or absolute); default
            ``identity_CelebA.txt[.gz]`` when present. An explicitly named file must exist.

    """

    def __init__(self, root: Path | str, *, images: str | None = None, identity_file: Path | str | None = None) -> None:
        super().__init__(root)
        if images is not None and (not isinstance(images, str) or not images.strip()):
            raise DatasetError(f"celeba: option images must be a folder name, got {images!r}")
        self.images = images
        self.identity_file = identity_file

    def image_folder(self) -> Path:
        """Resolve the image folder from the ``images`` option.

        Returns:
            The folder.

        Raises:
            DatasetError: If the root or the requested folder is missing, or no default folder exists.

        """
        root = self._require_root()
        if self.images is not None:
            folder = root / self.images
            if not folder.is_dir():
                raise DatasetError(f"celeba: image folder not found: {folder}")
        else:
            for name in IMAGE_FOLDERS:
                if (root / name).is_dir():
                    folder = root / name
                    break
            else:
                tried = ", ".join(str(root / n) for n in IMAGE_FOLDERS)
                raise DatasetError(f"celeba: no image folder found; tried {tried}")
        nested = folder / folder.name
        if nested.is_dir():
            folder = nested
        return folder

    def _label_folders(self) -> list[Path]:
        return [self.root / sub if sub else self.root for sub in _LABEL_FOLDERS]

    def _label_file(self, stem: str) -> Path:
        path = find_file(self._label_folders(), (stem, stem + ".gz"))
        if path is None:
            raise DatasetError(f"celeba: label file not found: {self.root / stem} (or {stem}.gz)")
        return path

    def load(self) -> DatasetIndex:
        """Join the present images with the label files; see the class docstring.

        Returns:
            The samples (sorted by file name) and the skipped images / label lines.

        Raises:
            DatasetError: If the root, the image folder or a required label file is missing, or the attribute
                file header does not name the 40 CelebA attributes.

        """
        folder = self.image_folder()
        attr_path = self._label_file("list_attr_celeba.txt")
        part_path = self._label_file("list_eval_partition.txt")
        id_path: Path | None
        if self.identity_file is not None:
            id_path = Path(self.identity_file).expanduser()
            if not id_path.is_absolute():
                id_path = self.root / id_path
            if not id_path.is_file():
                raise DatasetError(f"celeba: identity file not found: {id_path}")
        else:
            id_path = find_file(self._label_folders(), ("identity_CelebA.txt", "identity_CelebA.txt.gz"))

        with os.scandir(folder) as it:
            present = {os.path.splitext(e.name)[0]: e.name for e in it if is_image_name(e.name) and e.is_file()}

        skipped: list[SkippedEntry] = []
        attr_lines = read_text_lines(attr_path)
        order = _attribute_order(attr_lines, attr_path)
        # Cheap pass over all ~200k lines: split off the file name only; the 40 values are parsed just for the
        # images that are present.
        attr_rest: dict[str, tuple[int, str]] = {}
        for lineno, line in enumerate(attr_lines[2:], start=3):
            parts = line.split(None, 1)
            if not parts:
                continue
            stem = os.path.splitext(parts[0])[0]
            if stem in present and stem not in attr_rest:
                attr_rest[stem] = (lineno, parts[1] if len(parts) > 1 else "")

        partition = _stem_map(read_text_lines(part_path), present)
        identities = _stem_map(read_text_lines(id_path), present) if id_path is not None else {}

        samples: list[FaceSample] = []
        for stem in sorted(present):
            path = folder / present[stem]
            if stem not in attr_rest:
                skipped.append(SkippedEntry(str(path), f"no line for this image in {attr_path.name}"))
                continue
            lineno, rest = attr_rest[stem]
            values = rest.split()
            where = f"{attr_path}:{lineno}"
            if len(values) != len(CELEBA_ATTRIBUTES):
                skipped.append(
                    SkippedEntry(where, f"expected {len(CELEBA_ATTRIBUTES)} attribute values, found {len(values)}")
                )
                continue
            try:
                coded = [_ATTR_VALUES[v] for v in values]
            except KeyError as exc:
                skipped.append(SkippedEntry(where, f"attribute value {exc.args[0]!r} is not +1/-1"))
                continue
            attributes = tuple(coded[i] for i in order) if order is not None else tuple(coded)
            split = PARTITION_SPLITS.get(partition.get(stem, ""))
            samples.append(
                FaceSample(
                    path=path,
                    gender=0 if attributes[_MALE] == 1 else 1,
                    attributes=attributes,
                    identity=identities.get(stem),
                    split=split,
                )
            )
        return self._index(samples, skipped)

    @classmethod
    def write_example(cls, root: Path) -> int:
        """Write a 6-line CelebA example with 5 images in ``face_crops``; see the base class.

        Images 000001-000003 are valid (train, val, test), 000004 has a malformed attribute line, 000005 has
        no attribute line, 000006 has a line but no image.
        """
        names = list(CELEBA_ATTRIBUTES)
        rows = {
            "000001.jpg": [1 if i % 2 else -1 for i in range(40)],
            "000002.jpg": [-1] * 40,
            "000003.jpg": [1] * 40,
            "000006.jpg": [1] * 40,
        }
        lines = ["5", " ".join(names)]
        lines += [f"{n} " + " ".join(f"{v:2d}" for v in vals) for n, vals in rows.items()]
        lines.insert(5, "000004.jpg " + " ".join(["1"] * 39))
        (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
        parts = {"000001.jpg": 0, "000002.jpg": 1, "000003.jpg": 2, "000004.jpg": 0, "000006.jpg": 0}
        (root / "list_eval_partition.txt").write_text("".join(f"{n} {p}\r\n" for n, p in parts.items()))
        for i in range(1, 6):
            write_tiny_jpeg(root / "face_crops" / f"{i:06d}.jpg")
        return 3


def _attribute_order(lines: list[str], path: Path) -> list[int] | None:
    """Check the attribute header; return None for the canonical order, else the permutation to undo."""
    if len(lines) < 2:
        raise DatasetError(f"celeba: {path} is too short to hold the count and header lines")
    header = lines[1].split()
    if tuple(header) == CELEBA_ATTRIBUTES:
        return None
    if sorted(header) != sorted(CELEBA_ATTRIBUTES):
        raise DatasetError(f"celeba: line 2 of {path} does not name the 40 CelebA attributes")
    return [header.index(a) for a in CELEBA_ATTRIBUTES]


def _stem_map(lines: list[str], wanted: dict[str, str]) -> dict[str, str]:
    """Map file-name stem -> second field for two-column label lines whose stem is in ``wanted``."""
    out: dict[str, str] = {}
    for line in lines:
        parts = line.split()
        if len(parts) != 2:
            continue
        stem = os.path.splitext(parts[0])[0]
        if stem in wanted and stem not in out:
            out[stem] = parts[1]
    return out

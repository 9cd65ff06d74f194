"""Common types of the dataset readers and the registry that finds a reader by name.

A reader turns a dataset folder in its published layout into a :class:`DatasetIndex`: one
:class:`FaceSample` per usable image with the labels the dataset provides, and one :class:`SkippedEntry` per
file or label line that could not be used, with the reason. Readers never open images and never fail on a
single bad entry; they raise :class:`~facelens.errors.DatasetError` only when the dataset as a whole cannot be
read (missing root folder, missing label file, unknown option).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from facelens.errors import DatasetError

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
"""File extensions (lower case) that readers treat as images when they scan a folder."""

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""The split names a :class:`FaceSample` may carry."""

# A valid 1x1 grey baseline JPEG (331 bytes), used by the ``write_example`` methods so that the synthetic
# examples are real, decodable image files without importing an image library here.
TINY_JPEG: bytes = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb00430050373c463c32504641465a55505f78c882786e6e78f5afb991c8"
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffc0000b080001000101011100"
    "ffc4001f0000010501010101010100000000000000000102030405060708090a0bffc400b5100002010303020403050504040000"
    "017d01020300041105122131410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a2526272829"
    "2a3435363738393a434445464748494a535455565758595a636465666768696a737475767778797a838485868788898a929394"
    "95969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9"
    "eaf1f2f3f4f5f6f7f8f9faffda0008010100003f002bffd9"
)


@dataclass(frozen=True)
class FaceSample:
    """One face image and the labels its dataset gives it.

    Attributes:
        path: The image file. It may not exist for label-only copies of a dataset; readers do not open it.
        age: Age in years; the midpoint of ``age_range`` when only a range is known.
        age_range: Inclusive ``(low, high)`` years when the dataset gives only a range (Adience, FairFace).
        gender: Index into :data:`facelens.labels.GENDERS` (0 male, 1 female).
        race: Index into :data:`facelens.labels.RACES`.
        attributes: 40 values 0/1 in :data:`facelens.labels.CELEBA_ATTRIBUTES` order.
        identity: Subject id where known, for subject-disjoint splits.
        split: ``"train"``, ``"val"`` or ``"test"`` where the dataset defines a split.
        fold: Cross-validation fold (Adience).

    """

    path: Path
    age: float | None = None
    age_range: tuple[int, int] | None = None
    gender: int | None = None
    race: int | None = None
    attributes: tuple[int, ...] | None = None
    identity: str | None = None
    split: str | None = None
    fold: int | None = None


@dataclass(frozen=True)
class SkippedEntry:
    """A file or label line a reader could not use.

    Attributes:
        path_or_line: The file path, or ``"<label file>:<line number>"`` for a label line.
        reason: Why it was skipped, in words.

    """

    path_or_line: str
    reason: str


@dataclass(frozen=True)
class DatasetIndex:
    """What a reader found in a dataset folder.

    Attributes:
        name: Registry name of the reader that built it.
        root: The dataset root folder, as given to the reader.
        samples: The usable samples, in a deterministic order.
        skipped: The entries that were left out, with reasons.

    """

    name: str
    root: Path
    samples: tuple[FaceSample, ...]
    skipped: tuple[SkippedEntry, ...]

    def __len__(self) -> int:
        return len(self.samples)


class DatasetReader:
    """Base class of the dataset readers.

    Subclasses set :attr:`name`, document the expected folder layout in their class docstring, take their
    options as keyword arguments of ``__init__``, and implement :meth:`load` and :meth:`write_example`.
    """

    name: ClassVar[str] = ""

    def __init__(self, root: Path | str, **options: Any) -> None:
        if options:
            raise DatasetError(f"dataset {self.name!r} takes no option(s) {sorted(options)}")
        self.root = Path(root).expanduser()

    def load(self) -> DatasetIndex:
        """Scan the dataset folder and parse its labels.

        Returns:
            The samples and the skipped entries.

        Raises:
            DatasetError: If the root folder or a required label file is missing or unreadable as a whole.

        """
        raise NotImplementedError

    @classmethod
    def write_example(cls, root: Path) -> int:
        """Write a tiny synthetic example of this dataset's layout into ``root`` (for tests and docs).

        The example contains some malformed entries where the format allows them.

        Args:
            root: An existing, empty folder.

        Returns:
            The number of valid samples that :meth:`load` should find with default options.

        """
        raise NotImplementedError

    # Helpers for subclasses.

    def _require_root(self) -> Path:
        """Return the root folder, raising :class:`DatasetError` if it is not an existing folder."""
        if not self.root.is_dir():
            raise DatasetError(f"{self.name}: dataset root folder not found: {self.root}")
        return self.root

    def _index(self, samples: Iterable[FaceSample], skipped: Iterable[SkippedEntry]) -> DatasetIndex:
        return DatasetIndex(name=self.name, root=self.root, samples=tuple(samples), skipped=tuple(skipped))

    def _first_folder(self, *candidates: str) -> Path:
        """Return ``root / candidate`` for the first candidate that is a folder, else ``root``.

        Raises:
            DatasetError: If the root folder does not exist.

        """
        root = self._require_root()
        for rel in candidates:
            if (root / rel).is_dir():
                return root / rel
        return root

    def _require_files(self, paths: Iterable[Path]) -> list[Path]:
        """Return ``paths`` as a list, raising :class:`DatasetError` naming the first one that is not a file."""
        paths = list(paths)
        for path in paths:
            if not path.is_file():
                raise DatasetError(f"{self.name}: label file not found: {path}")
        return paths

    def _index_file_names(
        self, folder: Path, sample: Callable[[Path], FaceSample], recursive: bool = True
    ) -> DatasetIndex:
        """Index a folder of images whose labels are in their file names.

        Args:
            folder: The folder to scan (see :func:`iter_image_files`).
            sample: Builds the sample of an image path; a :class:`ValueError` (malformed name) skips the file,
                with the error message as the reason.
            recursive: Also scan subfolders.

        Returns:
            The samples, in scan order, and the skipped files.

        Raises:
            DatasetError: If the folder holds no image file at all.

        """
        samples: list[FaceSample] = []
        skipped: list[SkippedEntry] = []
        n_files = 0
        for path in iter_image_files(folder, recursive=recursive):
            n_files += 1
            try:
                samples.append(sample(path))
            except ValueError as exc:
                skipped.append(SkippedEntry(str(path), str(exc)))
        if n_files == 0:
            raise DatasetError(f"{self.name}: no image files found in {folder}")
        return self._index(samples, skipped)


DATASETS: dict[str, type[DatasetReader]] = {}
"""Registered readers: name -> reader class."""

_R = TypeVar("_R", bound=type[DatasetReader])


def register_dataset(name: str) -> Callable[[_R], _R]:
    """Class decorator that registers a reader under ``name`` and sets its ``name`` attribute.

    Args:
        name: Registry name, e.g. ``"utkface"``.

    Returns:
        The decorator.

    Raises:
        ValueError: If another class is already registered under ``name``.

    """

    def decorator(cls: _R) -> _R:
        existing = DATASETS.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"dataset name {name!r} is already registered to {existing.__qualname__}")
        cls.name = name
        DATASETS[name] = cls
        return cls

    return decorator


def create_dataset(name: str, root: Path | str, **options: Any) -> DatasetReader:
    """Create the reader registered under ``name``.

    Args:
        name: Registry name (see :data:`DATASETS`).
        root: The dataset root folder.
        **options: Reader-specific options (see each reader's docstring).

    Returns:
        The reader; call :meth:`DatasetReader.load` to read the dataset.

    Raises:
        DatasetError: If the name is unknown or an option is not accepted by the reader.

    """
    cls = DATASETS.get(name)
    if cls is None:
        known = ", ".join(sorted(DATASETS)) or "(none)"
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {known}")
    signature = inspect.signature(cls)
    try:
        signature.bind(root, **options)
    except TypeError as exc:
        accepted = [p for p in signature.parameters if p != "root"]
        raise DatasetError(
            f"bad options for dataset {name!r}: {exc}; accepted options: {', '.join(accepted) or '(none)'}"
        ) from None
    return cls(root, **options)


def is_image_name(name: str) -> bool:
    """Tell whether a file name has one of :data:`IMAGE_EXTENSIONS` and is not hidden.

    Args:
        name: A file name.

    Returns:
        True for a visible image file name.

    """
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def iter_image_files(folder: Path, recursive: bool = True) -> Iterator[Path]:
    """Yield the image files of a folder in sorted order, skipping hidden files and folders.

    Args:
        folder: The folder to scan.
        recursive: Also scan subfolders (depth first, sorted by name).

    Yields:
        Paths of the image files, as ``folder / relative path``.

    """
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    subfolders = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            subfolders.append(entry.name)
        elif is_image_name(entry.name):
            yield folder / entry.name
    if recursive:
        for sub in subfolders:
            yield from iter_image_files(folder / sub, recursive=True)


def write_tiny_jpeg(path: Path) -> None:
    """Write :data:`TINY_JPEG` to ``path``, creating parent folders.

    Args:
        path: Destination file.

    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(TINY_JPEG)


def find_file(folders: Iterable[Path], names: Iterable[str]) -> Path | None:
    """Return the first existing file among ``folder / name`` for each folder and name, in that order.

    Args:
        folders: Folders to look in, in order of preference.
        names: File names to try in each folder, in order of preference.

    Returns:
        The first path that is an existing file, or None.

    """
    names = tuple(names)
    for folder in folders:
        for name in names:
            candidate = folder / name
            if candidate.is_file():
                return candidate
    return None


def read_text_lines(path: Path) -> list[str]:
    """Read a text label file, plain or gzip-compressed (by the ``.gz`` suffix), into lines.

    Decoding is UTF-8 with a BOM allowed; undecodable bytes are replaced rather than fatal.

    Args:
        path: The file.

    Returns:
        The lines, without line endings.

    Raises:
        DatasetError: If the file cannot be read.

    """
    try:
        if path.suffix == ".gz":
            import gzip

            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except OSError as exc:  # includes gzip.BadGzipFile and EOFError-free truncation reports
        raise DatasetError(f"cannot read label file {path}: {exc}") from exc
    except EOFError as exc:
        raise DatasetError(f"cannot read label file {path}: truncated gzip data") from exc
    return data.decode("utf-8-sig", errors="replace").splitlines()

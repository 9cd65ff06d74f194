"""Adience reader: age range or exact age, gender, subject id and the benchmark fold of each face."""

from __future__ import annotations

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

FOLDS: tuple[int, ...] = (0, 1, 2, 3, 4)
"""The five benchmark folds, ``fold_{k}_data.txt``."""

IMAGE_LAYOUTS: dict[str, tuple[str, str]] = {
    "aligned": ("aligned", "landmark_aligned_face"),
    "faces": ("faces", "coarse_tilt_aligned_face"),
}
"""``images`` option -> (folder under root, file name prefix)."""

ADIENCE_GENDERS: dict[str, int | None] = {"m": 0, "f": 1, "u": None, "": None}
"""Adience gender codes -> index into :data:`facelens.labels.GENDERS` (u and blank: unknown)."""

_COLUMNS = ("user_id", "original_image", "face_id", "age", "gender")


def parse_adience_age(text: str) -> tuple[float | None, tuple[int, int] | None]:
    """Parse an Adience age field.

    ``"(25, 32)"`` gives ``(28.5, (25, 32))``; an exact age ``"35"`` gives ``(35.0, None)``; ``"None"`` or a
    blank field gives ``(None, None)``. Every range is kept as written, including the few non-canonical ones
    of the official files (``(8, 23)``, ``(27, 32)``, ``(38, 42)``, ``(38, 48)``); map ``age`` with
    :func:`facelens.labels.age_group` and the ``"adience"`` scheme to get one of the eight canonical groups.

    Args:
        text: The field.

    Returns:
        ``(age, age_range)``: age in years (the range midpoint for a range) and the inclusive range.

    Raises:
        ValueError: If the field is none of these forms, or a range is reversed.

    """
    s = text.strip()
    if s in ("", "None"):
        return None, None
    if s.startswith("(") and s.endswith(")"):
        parts = s[1:-1].split(",")
        if len(parts) == 2:
            lo_s, hi_s = parts[0].strip(), parts[1].strip()
            if lo_s.isascii() and lo_s.isdigit() and hi_s.isascii() and hi_s.isdigit():
                lo, hi = int(lo_s), int(hi_s)
                if lo > hi:
                    raise ValueError(f"age range {s!r} is reversed")
                return (lo + hi) / 2.0, (lo, hi)
        raise ValueError(f"age range {s!r} is not of the form '(low, high)'")
    if s.isascii() and s.isdigit():
        return float(int(s)), None
    raise ValueError(f"age {s!r} is neither '(low, high)', an integer, nor 'None'")


@register_dataset("adience")
class AdienceReader(DatasetReader):
    """Adience benchmark: the five fold label files, with or without the face images.

    Layout::

        root/
            fold_0_data.txt ... fold_4_data.txt    tab-separated, a header line, then one face per line:
                user_id original_image face_id age gender x y dx dy tilt_ang fiducial_yaw_angle fiducial_score
            aligned/<user_id>/landmark_aligned_face.<face_id>.<original_image>      (images="aligned")
            faces/<user_id>/coarse_tilt_aligned_face.<face_id>.<original_image>     (images="faces")

    Label mapping: ``age`` -- see :func:`parse_adience_age` (a range gives ``age_range`` and its midpoint as
    ``age``; an exact age gives ``age`` only; ``None``/blank gives neither, and the sample is kept).
    ``gender`` -- ``m`` 0, ``f`` 1, ``u``/blank None (kept). ``identity`` is the Flickr ``user_id`` (all
    faces of a user are in the same fold); ``fold`` the fold number; ``split`` None (the folds are the
    split). Lines with fewer than 5 fields, an empty id field, or an unparseable age or gender go to
    ``skipped``; repeated header lines are ignored.

    Args:
        root: The dataset folder.
        images: ``"aligned"`` (default) or ``"faces"``: which image layout the sample paths point to.
        require_images: When True, rows whose image file is missing go to ``skipped``.
        folds: Which folds to read (default all five); each named fold file must exist.

    """

    def __init__(
        self,
        root: Path | str,
        *,
        images: str = "aligned",
        require_images: bool = False,
        folds: tuple[int, ...] | list[int] = FOLDS,
    ) -> None:
        super().__init__(root)
        if images not in IMAGE_LAYOUTS:
            raise DatasetError(f"adience: option images must be one of {sorted(IMAGE_LAYOUTS)}, got {images!r}")
        folds = tuple(folds)
        if not folds or any(f not in FOLDS for f in folds):
            raise DatasetError(f"adience: option folds must be a non-empty subset of {FOLDS}, got {folds!r}")
        self.images = images
        self.require_images = bool(require_images)
        self.folds = folds

    def load(self) -> DatasetIndex:
        """Parse the fold files; see the class docstring.

        Returns:
            The samples (in fold and line order) and the skipped lines.

        Raises:
            DatasetError: If the root or a requested fold file is missing.

        """
        root = self._require_root()
        folder, prefix = IMAGE_LAYOUTS[self.images]
        image_root = root / folder
        paths = self._require_files(root / f"fold_{k}_data.txt" for k in self.folds)
        samples: list[FaceSample] = []
        skipped: list[SkippedEntry] = []
        for fold, path in zip(self.folds, paths, strict=True):
            for lineno, line in enumerate(read_text_lines(path), start=1):
                if not line.strip():
                    continue
                fields = line.split("\t")
                where = f"{path}:{lineno}"
                if fields[0].strip() == "user_id":
                    continue  # header
                if len(fields) < len(_COLUMNS):
                    skipped.append(SkippedEntry(where, f"expected at least {len(_COLUMNS)} tab-separated fields"))
                    continue
                user_id, original, face_id, age_s, gender_s = (f.strip() for f in fields[:5])
                if not (user_id and original and face_id):
                    skipped.append(SkippedEntry(where, "empty user_id, original_image or face_id"))
                    continue
                try:
                    age, age_range = parse_adience_age(age_s)
                except ValueError as exc:
                    skipped.append(SkippedEntry(where, str(exc)))
                    continue
                if gender_s.lower() not in ADIENCE_GENDERS:
                    skipped.append(SkippedEntry(where, f"gender {gender_s!r} is not f, m, u or blank"))
                    continue
                image = image_root / user_id / f"{prefix}.{face_id}.{original}"
                if self.require_images and not image.is_file():
                    skipped.append(SkippedEntry(where, f"image not found: {image}"))
                    continue
                samples.append(
                    FaceSample(
                        path=image,
                        age=age,
                        age_range=age_range,
                        gender=ADIENCE_GENDERS[gender_s.lower()],
                        identity=user_id,
                        fold=fold,
                    )
                )
        return self._index(samples, skipped)

    @classmethod
    def write_example(cls, root: Path) -> int:
        """Write five small fold files (2 valid lines each, fold 0 also 2 malformed ones); see the base class.

        The ``aligned`` images of the first line of each fold are written too.
        """
        header = (
            "user_id\toriginal_image\tface_id\tage\tgender\tx\ty\tdx\tdy\ttilt_ang\tfiducial_yaw_angle\tfiducial_score"
        )
        ages = ["(25, 32)", "35", "None", "(8, 23)", "", "(60, 100)", "13", "(0, 2)", "(38, 42)", "(4, 6)"]
        genders = ["f", "m", "u", "", "f", "m", "f", "u", "m", "f"]
        for fold in FOLDS:
            lines = [header]
            for j in range(2):
                i = 2 * fold + j
                user, image, face = f"user{fold}@N0{j}", f"{1000 + i}_abc_o.jpg", str(i + 1)
                lines.append(f"{user}\t{image}\t{face}\t{ages[i]}\t{genders[i]}\t0\t0\t10\t10\t0\t0\t50")
                if j == 0:
                    write_tiny_jpeg(root / "aligned" / user / f"landmark_aligned_face.{face}.{image}")
            if fold == 0:
                lines.append("u\tx.jpg\t9\t(25 32)\tm\t0\t0\t10\t10\t0\t0\t50")  # malformed age
                lines.append("u\tx.jpg\t9\t(25, 32)\tq\t0\t0\t10\t10\t0\t0\t50")  # malformed gender
            (root / f"fold_{fold}_data.txt").write_text("\n".join(lines) + "\n")
        return 2 * len(FOLDS)

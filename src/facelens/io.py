"""Image and video input.

:func:`load_image` turns a path, bytes, a file object, a numpy array or a PIL image into an ``H x W x 3`` uint8
RGB array. It applies EXIF orientation, converts every mode (grayscale, RGBA, palette, 16-bit, CMYK...) to RGB,
takes the first frame of animations, and checks the pixel count against a limit *before* decoding, so a
decompression bomb costs nothing. Every failure is a :class:`~facelens.errors.FaceLensError` that names the input.
"""

from __future__ import annotations

import errno
import io
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageTooLarge, UnreadableImage, UnsupportedInput

DEFAULT_MAX_PIXELS = 64_000_000
"""Default pixel limit (e.g. 8000 x 8000). Larger images raise :class:`ImageTooLarge` before decoding."""

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v"})

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO | np.ndarray | Image.Image
"""Everything :func:`load_image` accepts."""


def describe(source: object) -> str:
    """A short human name for an input, used in error messages."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    if isinstance(source, np.ndarray):
        return f"<array {source.shape} {source.dtype}>"
    if isinstance(source, Image.Image):
        return f"<PIL image {source.size} {source.mode}>"
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, str) else f"<{type(source).__name__}>"


def load_image(source: ImageSource, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image as an ``H x W x 3`` uint8 RGB array.

    Args:
        source: A path, encoded bytes, a binary file object, a PIL image, or a numpy array. Arrays are taken as
            RGB (not OpenCV's BGR): ``H x W`` gray, ``H x W x 1``, ``x 3`` or ``x 4`` (alpha dropped), uint8,
            uint16 (scaled to 8 bits) or float: in [0, 1], or in [0, 255] when any value exceeds 1 (as float
            TIFFs are read; clipped, NaN as 0). A C-contiguous uint8 ``H x W x 3`` array is returned as is, without
            a copy.
        max_pixels: Refuse images with more pixels than this (``None``: no limit).

    Returns:
        A C-contiguous ``H x W x 3`` uint8 RGB array.

    Raises:
        UnreadableImage: The data is not a decodable image (corrupt, truncated, empty, wrong format).
        ImageTooLarge: The image has more than ``max_pixels`` pixels.
        UnsupportedInput: The source is of an unsupported type or array shape.

    """
    name = describe(source)
    if isinstance(source, np.ndarray):
        return _from_array(source, name, max_pixels)
    if isinstance(source, Image.Image):
        _check_size(source.size, name, max_pixels)
        try:
            return _to_rgb(source, name)
        except (OSError, ValueError, TypeError) as exc:
            raise UnreadableImage(f"{name}: cannot convert this image to RGB ({exc})") from exc
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            why = (link_problem(path) or "no such file") if not path.exists() else "not a file"
            raise UnreadableImage(f"{name}: {why}")
        if path.stat().st_size == 0:
            raise UnreadableImage(f"{name}: empty file")
        try:
            with open(path, "rb") as fh:
                return _decode(fh, name, max_pixels)
        except OSError as exc:
            raise UnreadableImage(f"{name}: cannot read file ({exc.strerror or exc})") from exc
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise UnreadableImage(f"{name}: empty input")
        return _decode(io.BytesIO(bytes(source)), name, max_pixels)
    if hasattr(source, "read"):
        return _decode(source, name, max_pixels)
    raise UnsupportedInput(f"cannot read an image from {type(source).__name__}")


def link_problem(path: str | os.PathLike) -> str | None:
    """Why a path that does not exist cannot be followed, if a symbolic link is the reason.

    ``Path.exists()`` is False for a symbolic link loop (``ln -s loop loop``) and for a link whose target is
    missing; this tells them apart from a plain missing path, so messages can say what is wrong.

    Args:
        path: A path for which ``Path.exists()`` is False.

    Returns:
        ``"symbolic link loop (cannot be resolved)"``, ``"broken symbolic link (its target does not exist)"``,
        or ``None`` when no symbolic link is at fault (the path is simply missing).
    """
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (cannot be resolved)"
        if os.path.islink(path):
            return "broken symbolic link (its target does not exist)"
    return None


def _check_size(size: tuple[int, int], name: str, max_pixels: int | None) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise UnreadableImage(f"{name}: image has zero size {w}x{h}")
    if max_pixels is not None and w * h > max_pixels:
        raise ImageTooLarge(
            f"{name}: {w}x{h} = {w * h:,} pixels exceeds the limit of {max_pixels:,}",
            hint="raise it with max_pixels / --max-pixels if this image is legitimate",
        )


_pil_limit_lock = threading.Lock()


def _open_unlimited(fh: BinaryIO) -> Image.Image:
    """``Image.open`` with Pillow's own decompression-bomb limit lifted: facelens' ``max_pixels`` decides.

    Pillow checks its global ``MAX_IMAGE_PIXELS`` while parsing the header; we lift it only for that call (under a
    lock) and check our own limit right after, still before any pixel is decoded.
    """
    with _pil_limit_lock:
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(fh)
        finally:
            Image.MAX_IMAGE_PIXELS = old


def _decode(fh: BinaryIO, name: str, max_pixels: int | None) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _open_unlimited(fh) as im:
                _check_size(im.size, name, max_pixels)
                im.seek(0)
                return _to_rgb(im, name)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"{name}: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise UnreadableImage(f"{name}: not a recognised image format") from exc
    except (UnreadableImage, ImageTooLarge):
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure on a hostile file is that file's error
        raise UnreadableImage(f"{name}: corrupt or truncated image ({type(exc).__name__}: {exc})") from exc


def _to_rgb(im: Image.Image, name: str) -> np.ndarray:
    try:
        im = ImageOps.exif_transpose(im) or im
    except Exception:  # noqa: BLE001 - a corrupt EXIF block (struct.error, KeyError...): keep the stored orientation
        pass
    mode = im.mode
    if mode in ("RGB",):
        out = np.asarray(im)
    elif mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im)
        out = _gray_to_rgb(_scale_to_uint8(arr, 65535.0 if mode != "F" else None))
    elif mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        # Composite on white so transparent regions are not black.
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        out = np.asarray(Image.alpha_composite(bg, rgba).convert("RGB"))
    else:
        out = np.asarray(im.convert("RGB"))
    if out.ndim != 3 or out.shape[2] != 3:
        raise UnreadableImage(f"{name}: could not convert mode {mode} to RGB")
    return np.ascontiguousarray(out, dtype=np.uint8)


def _scale_to_uint8(arr: np.ndarray, full_scale: float | None) -> np.ndarray:
    a = arr.astype(np.float32)  # one float32 working copy, scaled in place (a 64 Mpx image: 256 MB)
    np.nan_to_num(a, copy=False)
    if full_scale is None:  # float image: [0, 1] if it looks like it, else clip to [0, 255]
        full_scale = 1.0 if a.max(initial=0.0) <= 1.0 else 255.0
    elif full_scale > 255.0 and a.max(initial=0.0) <= 255.0 and arr.dtype not in (np.uint16, np.dtype(">u2")):
        full_scale = 255.0
    a *= np.float32(255.0 / full_scale)
    np.clip(a, 0, 255, out=a)
    np.rint(a, out=a)
    return a.astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def _from_array(arr: np.ndarray, name: str, max_pixels: int | None) -> np.ndarray:
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise UnsupportedInput(f"{name}: expected H x W, H x W x 1, x 3 or x 4 array")
    _check_size((arr.shape[1], arr.shape[0]), name, max_pixels)
    if arr.dtype == np.uint8:
        a = arr
    elif arr.dtype == np.uint16:
        a = _scale_to_uint8(arr, 65535.0)
    elif np.issubdtype(arr.dtype, np.floating):
        a = _scale_to_uint8(arr, None)  # [0, 1], or [0, 255] (e.g. OpenCV arithmetic on uint8 images)
    elif arr.dtype == np.bool_:
        a = arr.astype(np.uint8) * 255
    else:
        raise UnsupportedInput(f"{name}: unsupported array dtype {arr.dtype}")
    if a.ndim == 2:
        a = _gray_to_rgb(a)
    elif a.shape[2] == 1:
        a = _gray_to_rgb(a[:, :, 0])
    elif a.shape[2] == 4:
        a = a[:, :, :3]
    return np.ascontiguousarray(a)


def is_video(path: str | os.PathLike) -> bool:
    """True when the file name has a video extension (mp4, avi, mkv, webm, mov, m4v)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


@dataclass(frozen=True)
class VideoFrame:
    """One decoded video frame."""

    index: int
    time_s: float
    image: np.ndarray


def iter_video_frames(
    path: str | os.PathLike, every: int = 1, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> Iterator[VideoFrame]:
    """Decode a video file frame by frame with OpenCV, yielding every ``every``-th frame as RGB.

    Args:
        path: The video file.
        every: Yield every ``every``-th frame (the others are skipped without decoding them to RGB).
        max_pixels: Refuse a video whose frames have more pixels than this (checked before the first frame).

    Raises:
        UnreadableImage: If the file cannot be opened as a video.
        ImageTooLarge: If its frames are larger than ``max_pixels``.

    """
    import cv2

    if every < 1:
        raise ValueError("every must be >= 1")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise UnreadableImage(f"{path}: cannot open as a video")
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    try:
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if w > 0 and h > 0:
            _check_size((w, h), f"{path} (video frames)", max_pixels)
        index = 0
        while True:
            if index % every == 0:
                ok, frame = cap.read()
                if not ok:
                    break
                yield VideoFrame(index, index / fps if fps > 0 else 0.0, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            elif not cap.grab():
                break
            index += 1
    finally:
        cap.release()


def expand_inputs(items: list[str], recursive: bool = True) -> Iterator[Path]:
    """Expand CLI inputs (files, folders, glob patterns) into files, in a stable sorted order.

    Folders yield their image and video files (recursively by default). A pattern or path that matches nothing
    is yielded as-is so the caller reports it as an error for that input rather than silently skipping it.
    """
    import glob

    for item in items:
        p = Path(item)
        if p.is_dir():
            it = p.rglob("*") if recursive else p.glob("*")
            for f in sorted(x for x in it if x.is_file()):
                if f.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS:
                    yield f
        elif p.exists():
            yield p
        elif glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                yield p
            for m in matches:
                if Path(m).is_file():
                    yield Path(m)
                elif Path(m).is_dir():
                    yield from expand_inputs([m], recursive)
        else:
            yield p

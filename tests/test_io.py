"""Tests of facelens.io: load_image for every input kind, format and mode, its errors, and expand_inputs."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from facelens.errors import FaceLensError, ImageTooLarge, UnreadableImage, UnsupportedInput
from facelens.io import DEFAULT_MAX_PIXELS, describe, expand_inputs, is_video, link_problem, load_image

H, W = 24, 40


def _pattern() -> np.ndarray:
    """A smooth, asymmetric RGB test pattern (survives lossy codecs, shows rotations and channel swaps)."""
    y, x = np.mgrid[0:H, 0:W]
    r = (x * 255 // (W - 1)).astype(np.uint8)
    g = (y * 255 // (H - 1)).astype(np.uint8)
    b = np.full((H, W), 60, np.uint8)
    return np.stack([r, g, b], axis=2)


PATTERN = _pattern()


def _encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _check_rgb(out: np.ndarray, shape: tuple[int, int] = (H, W)) -> None:
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.uint8
    assert out.shape == (*shape, 3)
    assert out.flags.c_contiguous


# ----------------------------------------------------------------------------------------------------------------
# Input kinds


@pytest.fixture
def png_file(tmp_path: Path) -> Path:
    p = tmp_path / "pattern.png"
    Image.fromarray(PATTERN).save(p)
    return p


def test_path_str_and_pathlike(png_file: Path) -> None:
    for src in (str(png_file), png_file):
        out = load_image(src)
        _check_rgb(out)
        np.testing.assert_array_equal(out, PATTERN)


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview"])
def test_encoded_buffers(png_file: Path, kind: str) -> None:
    data = png_file.read_bytes()
    src = {"bytes": data, "bytearray": bytearray(data), "memoryview": memoryview(data)}[kind]
    out = load_image(src)
    _check_rgb(out)
    np.testing.assert_array_equal(out, PATTERN)


def test_file_objects(png_file: Path) -> None:
    with open(png_file, "rb") as fh:
        np.testing.assert_array_equal(load_image(fh), PATTERN)
    np.testing.assert_array_equal(load_image(io.BytesIO(png_file.read_bytes())), PATTERN)


def test_pil_image() -> None:
    out = load_image(Image.fromarray(PATTERN))
    _check_rgb(out)
    np.testing.assert_array_equal(out, PATTERN)


def test_array_uint8_rgb() -> None:
    out = load_image(PATTERN)
    _check_rgb(out)
    np.testing.assert_array_equal(out, PATTERN)


def test_array_uint8_non_contiguous() -> None:
    view = PATTERN[:, ::-1]  # negative strides
    out = load_image(view)
    _check_rgb(out)
    np.testing.assert_array_equal(out, view)


@pytest.mark.parametrize("shape", [(H, W), (H, W, 1)])
def test_array_gray(shape: tuple[int, ...]) -> None:
    gray = PATTERN[:, :, 0].reshape(shape)
    out = load_image(gray)
    _check_rgb(out)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], PATTERN[:, :, 0])


def test_array_rgba_drops_alpha() -> None:
    rgba = np.concatenate([PATTERN, np.full((H, W, 1), 7, np.uint8)], axis=2)
    out = load_image(rgba)
    _check_rgb(out)
    np.testing.assert_array_equal(out, PATTERN)


def test_array_uint16_scaled() -> None:
    a = np.array([[0, 257, 32896, 65535]], np.uint16)
    out = load_image(a)
    _check_rgb(out, (1, 4))
    assert out[0, :, 0].tolist() == [0, 1, 128, 255]
    out3 = load_image(np.repeat(a[:, :, None], 3, axis=2))
    assert out3[0, :, 2].tolist() == [0, 1, 128, 255]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_array_float_unit_range(dtype: type) -> None:
    a = (PATTERN.astype(np.float64) / 255.0).astype(dtype)
    out = load_image(a)
    _check_rgb(out)
    assert np.abs(out.astype(int) - PATTERN.astype(int)).max() <= 1


def test_array_float_nan_and_clipping() -> None:
    a = np.array([[0.0, 0.5, 1.0, np.nan]], np.float32)
    assert load_image(a)[0, :, 0].tolist() == [0, 128, 255, 0]
    neg = np.array([[-1.0, 0.5]], np.float64)
    assert load_image(neg)[0, :, 0].tolist() == [0, 128]


def test_array_float_in_the_0_255_range_is_not_clipped_to_white() -> None:
    a = PATTERN.astype(np.float32)  # values up to 255: e.g. the result of OpenCV arithmetic on a uint8 image
    assert np.array_equal(load_image(a), PATTERN)
    assert load_image(np.array([[0.0, 1.5, 300.0]], np.float32))[0, :, 0].tolist() == [0, 2, 255]


def test_array_bool() -> None:
    out = load_image(np.array([[False, True]]))
    assert out[0, :, 0].tolist() == [0, 255]


# ----------------------------------------------------------------------------------------------------------------
# Formats


@pytest.mark.parametrize(
    ("fmt", "suffix", "lossy"),
    [
        ("JPEG", ".jpg", True),
        ("PNG", ".png", False),
        ("WEBP", ".webp", True),
        ("BMP", ".bmp", False),
        ("TIFF", ".tif", False),
        ("GIF", ".gif", True),  # palette quantisation
    ],
)
def test_formats(tmp_path: Path, fmt: str, suffix: str, lossy: bool) -> None:
    kw: dict[str, object] = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    p = tmp_path / f"img{suffix}"
    Image.fromarray(PATTERN).save(p, fmt, **kw)
    out = load_image(p)
    _check_rgb(out)
    err = np.abs(out.astype(int) - PATTERN.astype(int))
    if lossy:
        assert err.mean() < 12
    else:
        assert err.max() == 0


def test_animated_gif_first_frame(tmp_path: Path) -> None:
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (W, H), c) for c in colors]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(p) as im:
        assert getattr(im, "n_frames", 1) == 3
    out = load_image(p)
    _check_rgb(out)
    assert tuple(out[H // 2, W // 2]) == (255, 0, 0)
    # Also when the file object was already advanced to a later frame by someone else.
    im = Image.open(p)
    im.seek(2)
    assert tuple(load_image(io.BytesIO(p.read_bytes()))[0, 0]) == (255, 0, 0)
    im.close()


@pytest.mark.parametrize(("orientation", "clockwise"), [(6, True), (8, False)])
def test_exif_orientation_applied(tmp_path: Path, orientation: int, clockwise: bool) -> None:
    # Stored pixels: left half dark, right half bright; a wide image.
    stored = np.zeros((H, W, 3), np.uint8)
    stored[:, W // 2 :] = 230
    exif = Image.Exif()
    exif[0x0112] = orientation
    p = tmp_path / f"orient{orientation}.jpg"
    Image.fromarray(stored).save(p, "JPEG", exif=exif, quality=95)
    out = load_image(p)
    _check_rgb(out, (W, H))  # rotated: tall
    top, bottom = out[: W // 4].mean(), out[-W // 4 :].mean()
    # Orientation 6: rotate 90 deg clockwise to display -> the stored left (dark) half goes to the top.
    if clockwise:
        assert top < 60 < 170 < bottom
    else:
        assert bottom < 60 < 170 < top


def test_exif_orientation_from_bytes_and_pil(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(Image.fromarray(PATTERN), "JPEG", exif=exif)
    assert load_image(data).shape == (W, H, 3)
    assert load_image(Image.open(io.BytesIO(data))).shape == (W, H, 3)


def _corrupt_exif_jpeg() -> bytes:
    """A JPEG whose EXIF block says "rotate" but has one tag with an impossible type (Pillow raises struct.error)."""
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 6, "Canon"
    raw = exif.tobytes()
    bad = raw.replace(b"\x01\x0f\x00\x02", b"\x01\x50\x00\x02", 1)
    assert bad != raw
    return _encode(Image.fromarray(PATTERN), "JPEG", exif=bad)


def test_corrupt_exif_keeps_the_stored_orientation_instead_of_failing(tmp_path: Path) -> None:
    data = _corrupt_exif_jpeg()
    with pytest.raises(Exception):  # noqa: B017, PT011 - what Pillow itself does with it
        ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    p = tmp_path / "badexif.jpg"
    p.write_bytes(data)
    for source in (data, p, Image.open(io.BytesIO(data))):
        _check_rgb(load_image(source))  # read, in the stored orientation


# ----------------------------------------------------------------------------------------------------------------
# Modes


def _mode_image(mode: str) -> Image.Image:
    gray = PATTERN[:, :, 0]
    if mode == "L":
        return Image.fromarray(gray, "L")
    if mode == "LA":
        return Image.merge("LA", [Image.fromarray(gray), Image.new("L", (W, H), 255)])
    if mode == "RGBA":
        return Image.fromarray(np.concatenate([PATTERN, np.full((H, W, 1), 255, np.uint8)], axis=2), "RGBA")
    if mode == "P":
        return Image.fromarray(PATTERN).quantize(16)
    if mode == "1":
        return Image.fromarray(gray, "L").point(lambda v: 255 if v > 127 else 0).convert("1")
    if mode == "I;16":
        return Image.fromarray(gray.astype(np.uint16) * 257)
    if mode == "I":
        return Image.fromarray(gray.astype(np.int32) * 257)
    if mode == "F":
        return Image.fromarray(gray.astype(np.float32) / 255.0)
    if mode == "CMYK":
        return Image.fromarray(PATTERN).convert("CMYK")
    raise AssertionError(mode)


MODES_FORMATS = [
    ("L", "PNG"), ("L", "JPEG"), ("LA", "PNG"), ("RGBA", "PNG"), ("RGBA", "WEBP"), ("P", "PNG"), ("P", "GIF"),
    ("1", "PNG"), ("1", "BMP"), ("I;16", "PNG"), ("I;16", "TIFF"), ("I", "TIFF"), ("F", "TIFF"),
    ("CMYK", "JPEG"), ("CMYK", "TIFF"),
]  # fmt: skip


@pytest.mark.parametrize(("mode", "fmt"), MODES_FORMATS)
def test_modes_encoded(mode: str, fmt: str) -> None:
    im = _mode_image(mode)
    assert im.mode == mode
    data = _encode(im, fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    out = load_image(data)
    _check_rgb(out)
    gray_modes = {"L", "LA", "1", "I;16", "I", "F"}
    if mode in gray_modes:
        # Grey stays grey, and the intensity follows the pattern's red ramp (thresholded for mode 1).
        assert np.abs(out[:, :, 0].astype(int) - out[:, :, 2].astype(int)).max() <= 2
        ref = np.asarray(im.convert("L")) if mode == "1" else PATTERN[:, :, 0]
        assert np.abs(out[:, :, 0].astype(int) - ref.astype(int)).mean() < 4
    else:
        assert np.abs(out.astype(int) - PATTERN.astype(int)).mean() < 12


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "1", "I;16", "I", "F", "CMYK"])
def test_modes_pil(mode: str) -> None:
    _check_rgb(load_image(_mode_image(mode)))


def test_unconvertible_pil_mode_is_facelens_error() -> None:
    im = Image.new("La", (4, 4))
    try:
        out = load_image(im)
    except FaceLensError:
        return
    _check_rgb(out, (4, 4))


def test_sixteen_bit_full_scale() -> None:
    im = Image.fromarray(np.array([[0, 256, 32768, 65535]], np.uint16))
    assert im.mode == "I;16"
    assert load_image(_encode(im, "PNG"))[0, :, 0].tolist() == [0, 1, 128, 255]


def test_transparency_composited_on_white() -> None:
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[:, : W // 2] = (10, 20, 30, 255)  # opaque left half, fully transparent right half
    out = load_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert tuple(out[0, 0]) == (10, 20, 30)
    assert tuple(out[0, -1]) == (255, 255, 255)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_and_without_transparency(fmt: str) -> None:
    pal = Image.new("P", (W, H), 0)
    pal.putpalette([0, 0, 0, 200, 30, 40] + [0] * (256 - 2) * 3)
    pal.paste(1, (0, 0, W // 2, H))
    plain = load_image(_encode(pal, fmt))
    assert tuple(plain[0, 0]) == (200, 30, 40)
    assert tuple(plain[0, -1]) == (0, 0, 0)
    transp = load_image(_encode(pal, fmt, transparency=0))
    assert tuple(transp[0, 0]) == (200, 30, 40)
    assert tuple(transp[0, -1]) == (255, 255, 255)  # transparent index -> white, not black


# ----------------------------------------------------------------------------------------------------------------
# Failures


def _assert_error(exc_info: pytest.ExceptionInfo[BaseException], cls: type, name: str | None) -> None:
    assert type(exc_info.value) is cls
    assert isinstance(exc_info.value, FaceLensError)
    if name is not None:
        assert name in str(exc_info.value)


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.jpg"
    with pytest.raises(UnreadableImage) as ei:
        load_image(p)
    _assert_error(ei, UnreadableImage, str(p))
    assert ei.value.code == "unreadable_image"


def test_symlink_loop_and_broken_symlink_say_so(symlinks: tuple[Path, Path], tmp_path: Path) -> None:
    loop, dangling = symlinks
    with pytest.raises(UnreadableImage, match=r"loop: symbolic link loop \(cannot be resolved\)$") as ei:
        load_image(loop)
    assert ei.value.code == "unreadable_image"
    with pytest.raises(UnreadableImage, match=r"dangling\.jpg: broken symbolic link \(its target does not exist\)$"):
        load_image(dangling)
    assert link_problem(loop / "x.jpg") == "symbolic link loop (cannot be resolved)"  # a loop on the way
    assert link_problem(tmp_path / "nope.jpg") is None
    with pytest.raises(UnreadableImage, match=r"nope\.jpg: no such file$"):
        load_image(tmp_path / "nope.jpg")
    # passed on by expand_inputs like any missing path, to be reported as that input's error
    assert list(expand_inputs([str(loop), str(dangling)])) == [loop, dangling]


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(UnreadableImage) as ei:
        load_image(tmp_path)
    _assert_error(ei, UnreadableImage, str(tmp_path))
    assert "not a file" in str(ei.value)


@pytest.mark.parametrize("empty", [b"", bytearray()])
def test_empty_bytes(empty: bytes) -> None:
    with pytest.raises(UnreadableImage) as ei:
        load_image(empty)
    _assert_error(ei, UnreadableImage, "<0 bytes>")


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    with pytest.raises(UnreadableImage) as ei:
        load_image(p)
    _assert_error(ei, UnreadableImage, str(p))
    assert str(ei.value).endswith(": empty file")


def test_text_file_named_jpg(tmp_path: Path) -> None:
    p = tmp_path / "notes.jpg"
    p.write_text("this is not a picture\n" * 20)
    with pytest.raises(UnreadableImage) as ei:
        load_image(p)
    _assert_error(ei, UnreadableImage, str(p))


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_jpeg(tmp_path: Path, astronaut_path: Path, keep: float) -> None:
    data = astronaut_path.read_bytes()
    p = tmp_path / "truncated.jpg"
    p.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(UnreadableImage) as ei:
        load_image(p)
    _assert_error(ei, UnreadableImage, str(p))
    with pytest.raises(UnreadableImage):
        load_image(data[: int(len(data) * keep)])


def test_huge_png_refused_quickly(huge_png_path: Path, huge_png_bytes: bytes) -> None:
    assert len(huge_png_bytes) < 200
    t0 = time.perf_counter()
    with pytest.raises(ImageTooLarge) as ei:
        load_image(huge_png_path)
    _assert_error(ei, ImageTooLarge, str(huge_png_path))
    assert "pixels" in str(ei.value)
    assert ei.value.code == "image_too_large"
    with pytest.raises(ImageTooLarge):
        load_image(huge_png_bytes)
    with pytest.raises(ImageTooLarge):
        load_image(io.BytesIO(huge_png_bytes))
    assert time.perf_counter() - t0 < 1.0  # header check only, no 2.7 GB allocation


def test_max_pixels_limit_and_none() -> None:
    data = _encode(Image.fromarray(PATTERN), "PNG")
    assert load_image(data, max_pixels=H * W).shape == (H, W, 3)  # at the limit: fine
    with pytest.raises(ImageTooLarge) as ei:
        load_image(data, max_pixels=H * W - 1)
    _assert_error(ei, ImageTooLarge, f"<{len(data)} bytes>")
    assert load_image(data, max_pixels=None).shape == (H, W, 3)
    # Arrays and PIL images are checked too.
    with pytest.raises(ImageTooLarge):
        load_image(PATTERN, max_pixels=10)
    with pytest.raises(ImageTooLarge):
        load_image(Image.fromarray(PATTERN), max_pixels=10)
    assert load_image(PATTERN, max_pixels=None).shape == (H, W, 3)


def test_max_pixels_none_overrides_pillow_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # Stand-in for a legitimate 200-megapixel scan: shrink Pillow's global limit instead of allocating 600 MB.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    data = _encode(Image.fromarray(PATTERN), "PNG")  # 960 px > 2 * 100
    assert load_image(data, max_pixels=None).shape == (H, W, 3)


def test_default_limit_above_typical_photos() -> None:
    assert DEFAULT_MAX_PIXELS >= 8000 * 8000


@pytest.mark.parametrize("source", [12345, 3.5, None, ["a.jpg"], {"path": "a.jpg"}])
def test_unsupported_source_type(source: object) -> None:
    with pytest.raises(UnsupportedInput) as ei:
        load_image(source)  # type: ignore[arg-type]
    _assert_error(ei, UnsupportedInput, type(source).__name__)


@pytest.mark.parametrize(
    "arr",
    [
        np.zeros((4,), np.uint8),
        np.zeros((2, 3, 4, 3), np.uint8),
        np.zeros((4, 4, 2), np.uint8),
        np.zeros((4, 4, 5), np.uint8),
    ],
    ids=["1d", "4d", "2ch", "5ch"],
)
def test_bad_array_shape(arr: np.ndarray) -> None:
    with pytest.raises(UnsupportedInput) as ei:
        load_image(arr)
    _assert_error(ei, UnsupportedInput, describe(arr))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.complex64, object])
def test_bad_array_dtype(dtype: type) -> None:
    arr = np.zeros((4, 4, 3), dtype=dtype)
    with pytest.raises(UnsupportedInput) as ei:
        load_image(arr)
    _assert_error(ei, UnsupportedInput, describe(arr))
    assert str(np.dtype(dtype)) in str(ei.value)


def test_zero_size_array() -> None:
    with pytest.raises(FaceLensError):
        load_image(np.zeros((0, 5, 3), np.uint8))


def test_describe() -> None:
    assert describe("a/b.jpg") == "a/b.jpg"
    assert describe(Path("x.png")) == "x.png"
    assert describe(b"abc") == "<3 bytes>"
    assert "array" in describe(PATTERN)
    assert "PIL" in describe(Image.new("RGB", (2, 2)))
    assert describe(io.BytesIO(b"")) == "<BytesIO>"


def test_is_video() -> None:
    assert is_video("clip.MP4") and is_video(Path("a/b.avi"))
    assert not is_video("a.jpg") and not is_video("noext")


# ----------------------------------------------------------------------------------------------------------------
# expand_inputs


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    for rel in ["b.jpg", "a.PNG", "notes.txt", "clip.mp4", "sub/c.webp", "sub/deeper/d.gif", "sub/e.json"]:
        (tmp_path / rel).write_bytes(b"x")
    return tmp_path


def test_expand_folder_recursive(tree: Path) -> None:
    got = [p.relative_to(tree).as_posix() for p in expand_inputs([str(tree)])]
    assert got == ["a.PNG", "b.jpg", "clip.mp4", "sub/c.webp", "sub/deeper/d.gif"]


def test_expand_folder_non_recursive(tree: Path) -> None:
    got = [p.name for p in expand_inputs([str(tree)], recursive=False)]
    assert got == ["a.PNG", "b.jpg", "clip.mp4"]


def test_expand_files_kept_as_given(tree: Path) -> None:
    # An explicitly named file is yielded even with a non-image extension (it then fails per input).
    got = list(expand_inputs([str(tree / "notes.txt"), str(tree / "b.jpg")]))
    assert got == [tree / "notes.txt", tree / "b.jpg"]


def test_expand_glob(tree: Path) -> None:
    got = [p.relative_to(tree).as_posix() for p in expand_inputs([str(tree / "**" / "*.gif")])]
    assert got == ["sub/deeper/d.gif"]
    got = [p.name for p in expand_inputs([str(tree / "*.jpg"), str(tree / "sub" / "*")])]
    assert got == ["b.jpg", "c.webp", "d.gif", "e.json"]  # the matched folder 'deeper' is expanded (images only)


def test_expand_non_matching_yielded_as_is(tree: Path) -> None:
    missing = str(tree / "missing.jpg")
    no_match = str(tree / "*.heic")
    assert list(expand_inputs([missing, no_match])) == [Path(missing), Path(no_match)]
    # ...so that loading reports a per-input error naming it.
    with pytest.raises(UnreadableImage, match="missing.jpg"):
        load_image(Path(missing))

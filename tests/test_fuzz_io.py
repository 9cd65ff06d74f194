"""Fuzz load_image: random and mutated image files decode to H x W x 3 uint8 or raise only FaceLensError.

The default run takes about 10 s. Set ``FACELENS_FUZZ_EXAMPLES`` to scale the number of examples (it is the
number for the mutated-file test; the others are fractions of it), e.g. ``FACELENS_FUZZ_EXAMPLES=100000``.
"""

from __future__ import annotations

import io
import os
import struct

import numpy as np
import pytest
from PIL import Image

from facelens.errors import FaceLensError
from facelens.io import DEFAULT_MAX_PIXELS, load_image

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")  # Pillow warns about corrupt EXIF / truncated reads

N_MUTATED = int(os.environ.get("FACELENS_FUZZ_EXAMPLES", "4000"))
N_RANDOM = max(1, N_MUTATED // 3)

FUZZ_SETTINGS = settings(
    deadline=None,
    database=None,  # do not write .hypothesis/ into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

MAX_PIXELS = st.sampled_from([DEFAULT_MAX_PIXELS, DEFAULT_MAX_PIXELS, 1_000_000, 4096, 300, 1])


def _encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:20, 0:28]
    base = np.stack([x * 9, y * 12, (x + y) * 5], axis=2).astype(np.uint8)
    base[5:9, 5:9] = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)
    im = Image.fromarray(base)
    exif = Image.Exif()
    exif[0x0112] = 6
    rgba = im.convert("RGBA")
    rgba.putalpha(128)
    pal = im.quantize(8)
    return {
        "jpeg": _encode(im, "JPEG", quality=80),
        "jpeg_progressive": _encode(im, "JPEG", progressive=True),
        "jpeg_exif": _encode(im, "JPEG", exif=exif),
        "jpeg_cmyk": _encode(im.convert("CMYK"), "JPEG"),
        "jpeg_gray": _encode(im.convert("L"), "JPEG"),
        "png": _encode(im, "PNG"),
        "png_rgba": _encode(rgba, "PNG"),
        "png_palette_transparent": _encode(pal, "PNG", transparency=0),
        "png_16bit": _encode(Image.fromarray(base[:, :, 0].astype(np.uint16) * 257), "PNG"),
        "gif": _encode(pal, "GIF"),
        "gif_animated": _encode(im, "GIF", save_all=True, append_images=[im.rotate(90), im.rotate(180)]),
        "webp": _encode(im, "WEBP", quality=80),
        "webp_lossless": _encode(rgba, "WEBP", lossless=True),
        "webp_animated": _encode(im, "WEBP", save_all=True, append_images=[im.rotate(90)]),
        "bmp": _encode(im, "BMP"),
        "bmp_palette": _encode(pal, "BMP"),
        "tiff": _encode(im, "TIFF"),
        "tiff_lzw": _encode(im, "TIFF", compression="tiff_lzw"),
        "tiff_float": _encode(Image.fromarray(base[:, :, 0].astype(np.float32) / 255), "TIFF"),
        "tiff_exif": _encode(im, "TIFF", exif=exif),
    }


SEEDS = _seeds()
MAGIC = [
    b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"GIF87a",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"BM", b"II*\x00", b"MM\x00*",
]  # fmt: skip
INTERESTING = [0, 1, 0x7F, 0x80, 0xFF]


def _check(data: bytes, max_pixels: int | None, as_file: bool = False) -> None:
    src: object = io.BytesIO(data) if as_file else data
    try:
        out = load_image(src, max_pixels=max_pixels)  # type: ignore[arg-type]
    except FaceLensError as exc:
        if not as_file:
            assert f"<{len(data)} bytes>" in str(exc)  # the message names the input
        return
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.uint8
    assert out.ndim == 3 and out.shape[2] == 3
    assert out.shape[0] > 0 and out.shape[1] > 0
    if max_pixels is not None:
        assert out.shape[0] * out.shape[1] <= max_pixels


@st.composite
def mutated_files(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    for _ in range(draw(st.integers(1, 6))):
        if len(data) < 2:
            data += b"\x00\x00"
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "header", "dim"]))
        # Headers are where parsers go wrong: bias half of the positions to the first 64 bytes.
        limit = len(data) - 1 if draw(st.booleans()) else min(len(data) - 1, 63)
        pos = draw(st.integers(0, limit))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[pos] = draw(st.sampled_from(INTERESTING))
        elif op == "truncate":
            data = data[: max(1, pos)]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=32))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 32))]
        elif op == "header":
            data[pos : pos + 4] = draw(st.binary(min_size=4, max_size=4))
        else:  # plausible dimension fields: big values, zero, negatives
            value = draw(st.sampled_from([0, 1, 0xFFFF, 0x7FFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF, 30000]))
            fmt = draw(st.sampled_from([">H", "<H", ">I", "<I"]))
            packed = struct.pack(fmt, value & (0xFFFF if "H" in fmt else 0xFFFFFFFF))
            data[pos : pos + len(packed)] = packed
    return bytes(data)


@settings(FUZZ_SETTINGS, max_examples=N_MUTATED)
@given(data=mutated_files(), max_pixels=MAX_PIXELS, as_file=st.booleans())
def test_mutated_files(data: bytes, max_pixels: int, as_file: bool) -> None:
    _check(data, max_pixels, as_file)


@settings(FUZZ_SETTINGS, max_examples=N_RANDOM)
@given(data=st.binary(min_size=0, max_size=2048), max_pixels=MAX_PIXELS)
def test_random_bytes(data: bytes, max_pixels: int) -> None:
    if not data:
        with pytest.raises(FaceLensError):
            load_image(data, max_pixels=max_pixels)
        return
    _check(data, max_pixels)


@settings(FUZZ_SETTINGS, max_examples=N_RANDOM)
@given(magic=st.sampled_from(MAGIC), body=st.binary(min_size=0, max_size=1024), max_pixels=MAX_PIXELS)
def test_magic_prefixed_junk(magic: bytes, body: bytes, max_pixels: int) -> None:
    _check(magic + body, max_pixels)


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_seeds_decode(name: str) -> None:
    out = load_image(SEEDS[name])
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert out.shape[:2] in ((20, 28), (28, 20))  # (28, 20): EXIF orientation 6 applied


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_every_truncation_point_of_headers(name: str) -> None:
    data = SEEDS[name]
    for n in range(1, min(len(data), 96)):
        _check(data[:n], DEFAULT_MAX_PIXELS)

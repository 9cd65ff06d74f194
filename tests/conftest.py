"""Shared fixtures: the bundled sample photo, a tiny ONNX head model, and a crafted huge PNG."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

ASTRONAUT = Path(__file__).resolve().parents[1] / "src" / "facelens" / "assets" / "astronaut.jpg"
ASTRONAUT_BOX = (178.0, 63.0, 269.0, 176.0)
"""Approximate face box (x1, y1, x2, y2) of the sample photo."""
ASTRONAUT_LANDMARKS = np.array(
    [[200.22, 101.70], [246.89, 102.42], [219.98, 124.45], [199.11, 142.93], [239.68, 143.66]]
)
"""YuNet's landmarks on the sample photo, rounded; used as fixed input for golden tests."""

TINY_SIZE = 16
TINY_NAME = "tiny-test"
AGE_BINS = 101


# --------------------------------------------------------------------------------------------------------------
# Generic helpers


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """IoU of two (x1, y1, x2, y2) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk with length and CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid-looking PNG whose header claims ``width x height`` RGB pixels but holds only a tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


# --------------------------------------------------------------------------------------------------------------
# The tiny head model


def tiny_metadata(test_time_flip: bool = False, name: str = TINY_NAME):  # noqa: ANN201 - ModelMetadata
    """The facelens metadata of the tiny model."""
    from facelens.align import LOOSE_V1
    from facelens.heads import InputSpec, ModelMetadata, OutputSpec
    from facelens.labels import AGE_GROUP_SCHEMES, CELEBA_ATTRIBUTES, GENDERS, RACES

    return ModelMetadata(
        name=name,
        version="0.0.1",
        input=InputSpec("input", TINY_SIZE, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
        alignment=LOOSE_V1.to_dict(),
        outputs=(
            OutputSpec("age_probs", "age"),
            OutputSpec("gender_probs", "gender", GENDERS),
            OutputSpec("race_probs", "race", RACES),
            OutputSpec("attr_probs", "attributes", CELEBA_ATTRIBUTES),
        ),
        age_min=0,
        age_groups={k: [list(r) for r in v] for k, v in AGE_GROUP_SCHEMES.items()},
        interval_coverage=0.8,
        test_time_flip=test_time_flip,
        license="CC0 (test fixture)",
        description="tiny synthetic head for tests",
        metrics={"age_mae": 99.0},
        extra={"purpose": "tests"},
    )


def tiny_weights() -> dict[str, np.ndarray]:
    """Fixed weights of the tiny model (the mean pixel -> age, race, attributes; all pixels -> gender)."""
    rng = np.random.default_rng(1234)
    k = np.arange(AGE_BINS, dtype=np.float32)
    return {
        # age logits = m * w + b: a bump around 35 years that moves with the mean normalised pixel m.
        "age_w": (0.05 * (k - 50.0)).reshape(1, AGE_BINS).astype(np.float32),
        "age_b": (-((k - 35.0) ** 2) / (2 * 8.0**2)).astype(np.float32),
        # gender depends on every pixel (not flip-invariant), so test-time flip changes the result.
        "gender_w": rng.normal(0, 0.05, (3 * TINY_SIZE * TINY_SIZE, 2)).astype(np.float32),
        "gender_b": np.array([0.1, -0.1], np.float32),
        "race_w": np.array([[0.5, -0.2, 0.1, 0.3, -0.4]], np.float32),
        "race_b": np.array([0.2, 0.0, -0.1, 0.1, -0.3], np.float32),
        "attr_w": rng.normal(0, 1.0, (1, 40)).astype(np.float32),
        "attr_b": rng.normal(0, 1.0, (40,)).astype(np.float32),
    }


def tiny_reference(x: np.ndarray) -> dict[str, np.ndarray]:
    """NumPy reference of the tiny model on a preprocessed ``(N, 3, S, S)`` input."""
    w = tiny_weights()
    m = x.reshape(len(x), -1).mean(axis=1, keepdims=True)

    def softmax(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    return {
        "age": softmax(m @ w["age_w"] + w["age_b"]),
        "gender": softmax(x.reshape(len(x), -1) @ w["gender_w"] + w["gender_b"]),
        "race": softmax(m @ w["race_w"] + w["race_b"]),
        "attributes": 1 / (1 + np.exp(-(m @ w["attr_w"] + w["attr_b"]))),
    }


def build_tiny_model(
    path: Path,
    *,
    props: dict[str, str] | None = None,
    with_metadata: bool = True,
    test_time_flip: bool = False,
    name: str = TINY_NAME,
) -> Path:
    """Write the tiny ONNX head model to ``path`` and return it.

    Args:
        path: Output ``.onnx`` file.
        props: Metadata props to write instead of the tiny model's own (for malformed-metadata tests).
        with_metadata: Write no metadata at all when False.
        test_time_flip: Value of the metadata flag.
        name: Model name in the metadata.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = tiny_weights()
    inits = [numpy_helper.from_array(v, k) for k, v in w.items()]
    inits.append(numpy_helper.from_array(np.array([0, -1], np.int64), "flat_shape"))
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["m4"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Flatten", ["m4"], ["m"], axis=1),  # (N, 1)
        helper.make_node("Reshape", ["input", "flat_shape"], ["flat"]),  # (N, 3*S*S)
    ]
    for head, src, act in (("age", "m", "Softmax"), ("gender", "flat", "Softmax"), ("race", "m", "Softmax"),
                           ("attr", "m", "Sigmoid")):  # fmt: skip
        nodes.append(helper.make_node("MatMul", [src, f"{head}_w"], [f"{head}_mm"]))
        nodes.append(helper.make_node("Add", [f"{head}_mm", f"{head}_b"], [f"{head}_logits"]))
        kwargs = {"axis": 1} if act == "Softmax" else {}
        nodes.append(helper.make_node(act, [f"{head}_logits"], [f"{head}_probs"], **kwargs))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, TINY_SIZE, TINY_SIZE])],
        [
            helper.make_tensor_value_info("age_probs", TensorProto.FLOAT, ["N", AGE_BINS]),
            helper.make_tensor_value_info("gender_probs", TensorProto.FLOAT, ["N", 2]),
            helper.make_tensor_value_info("race_probs", TensorProto.FLOAT, ["N", 5]),
            helper.make_tensor_value_info("attr_probs", TensorProto.FLOAT, ["N", 40]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="facelens-tests")
    model.ir_version = 8
    if with_metadata:
        meta = props if props is not None else tiny_metadata(test_time_flip, name).to_props()
        helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


# --------------------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session")
def astronaut_path() -> Path:
    """The bundled sample photo (one face)."""
    assert ASTRONAUT.is_file(), ASTRONAUT
    return ASTRONAUT


@pytest.fixture(scope="session")
def astronaut_rgb(astronaut_path: Path) -> np.ndarray:
    """The sample photo as an RGB uint8 array (read-only, do not modify)."""
    from facelens.io import load_image

    img = load_image(astronaut_path)
    img.setflags(write=False)
    return img


@pytest.fixture(scope="session")
def huge_png_bytes() -> bytes:
    """A PNG header claiming 30000 x 30000 pixels (a decompression-bomb stand-in) with a tiny body."""
    return huge_png()


@pytest.fixture
def huge_png_path(tmp_path: Path, huge_png_bytes: bytes) -> Path:
    """``huge_png_bytes`` written to a file."""
    p = tmp_path / "huge.png"
    p.write_bytes(huge_png_bytes)
    return p


@pytest.fixture(scope="session")
def tiny_model_builder() -> Callable[..., Path]:
    """:func:`build_tiny_model`, for tests that need variants."""
    return build_tiny_model


@pytest.fixture(scope="session")
def tiny_metadata_factory() -> Callable[..., object]:
    """:func:`tiny_metadata`: ``(test_time_flip=False, name=...) -> ModelMetadata``."""
    return tiny_metadata


@pytest.fixture(scope="session")
def tiny_reference_fn() -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """:func:`tiny_reference`: NumPy reference outputs of the tiny model for a preprocessed input."""
    return tiny_reference


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding only the tiny model (``tiny.onnx``)."""
    d = tmp_path_factory.mktemp("tiny_models")
    build_tiny_model(d / "tiny.onnx")
    return d


@pytest.fixture(scope="session")
def tiny_model_path(tiny_model_dir: Path) -> Path:
    """The tiny model file."""
    return tiny_model_dir / "tiny.onnx"


@pytest.fixture
def no_package_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the packaged model folder at an empty folder, so only FACELENS_MODEL_PATH counts."""
    empty = tmp_path / "no_package_models"
    empty.mkdir()
    monkeypatch.setattr("facelens.heads.registry.PACKAGE_MODEL_DIR", empty)
    return empty


@pytest.fixture
def tiny_model_env(tiny_model_dir: Path, no_package_models: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Install the tiny model via FACELENS_MODEL_PATH (and hide packaged models); yields the model folder."""
    monkeypatch.setenv("FACELENS_MODEL_PATH", str(tiny_model_dir))
    yield tiny_model_dir


@pytest.fixture
def no_models_env(tmp_path: Path, no_package_models: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No head model installed anywhere; yields the empty FACELENS_MODEL_PATH folder."""
    empty = tmp_path / "empty_models"
    empty.mkdir()
    monkeypatch.setenv("FACELENS_MODEL_PATH", str(empty))
    yield empty


@pytest.fixture()
def symlinks(tmp_path: Path) -> tuple[Path, Path]:
    """``loop -> loop`` and ``dangling.jpg -> gone.jpg`` in tmp_path (skips where links cannot be made)."""
    loop, dangling = tmp_path / "loop", tmp_path / "dangling.jpg"
    try:
        loop.symlink_to("loop")
        dangling.symlink_to("gone.jpg")
    except (OSError, NotImplementedError):
        pytest.skip("symbolic links cannot be created here")
    return loop, dangling

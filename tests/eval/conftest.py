"""Fixtures of the head-evaluation tests: a tiny ONNX head model with constant outputs, and tiny dataset folders.

The model ignores its input (zero weights): its outputs are fixed probability vectors, so every metric of an
end-to-end run can be computed by hand. Images are copies of the bundled public-domain astronaut photo (one
face), a blank image (no face) and a corrupt file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

ASTRONAUT = Path(__file__).resolve().parents[2] / "src" / "facelens" / "assets" / "astronaut.jpg"
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

AGE_PEAK = 30  # expected age of the tiny model (a symmetric distribution around 30)
GENDER_PRED = 1  # female
RACE_PRED = 2  # asian
TINY_METRICS = {"val_age_mae": 7.25, "val_gender_acc": 0.8125, "epoch": 3}


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def tiny_attr_bias() -> np.ndarray:
    """Attribute logits: +2 (yes) for even attribute indices, -2 (no) for odd ones."""
    return np.where(np.arange(40) % 2 == 0, 2.0, -2.0).astype(np.float32)


def build_tiny_model(path: Path, name: str = "tiny-test-heads", size: int = 32) -> Path:
    """Write an ONNX head model with facelens metadata whose outputs do not depend on the input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from facelens.align import TEMPLATES
    from facelens.heads import InputSpec, ModelMetadata, OutputSpec
    from facelens.labels import AGE_GROUP_SCHEMES, CELEBA_ATTRIBUTES, GENDERS, RACES

    years = np.arange(101)
    heads = {
        "age_probs": ("Softmax", (-0.5 * ((years - AGE_PEAK) / 2.0) ** 2).astype(np.float32)),
        "gender_probs": ("Softmax", np.array([-1.0, 1.0], np.float32)),
        "race_probs": ("Softmax", np.array([0.0, 0.0, 2.0, 0.0, 0.0], np.float32)),
        "attr_probs": ("Sigmoid", tiny_attr_bias()),
    }
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
    ]
    inits, outputs = [], []
    for out, (act, bias) in heads.items():
        k = bias.size
        inits += [numpy_helper.from_array(np.zeros((3, k), np.float32), f"{out}_w"),
                  numpy_helper.from_array(bias, f"{out}_b")]  # fmt: skip
        nodes += [
            helper.make_node("Gemm", ["flat", f"{out}_w", f"{out}_b"], [f"{out}_logits"]),
            helper.make_node(act, [f"{out}_logits"], [out], **({"axis": 1} if act == "Softmax" else {})),
        ]
        outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", k]))
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        outputs, inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = ModelMetadata(
        name=name,
        version="0.0.1",
        input=InputSpec("input", size, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        alignment={**TEMPLATES["facelens-loose-v1"].to_dict(), "size": size},
        outputs=(
            OutputSpec("age_probs", "age"),
            OutputSpec("gender_probs", "gender", GENDERS),
            OutputSpec("race_probs", "race", RACES),
            OutputSpec("attr_probs", "attributes", CELEBA_ATTRIBUTES),
        ),
        age_groups={k: [list(g) for g in v] for k, v in AGE_GROUP_SCHEMES.items()},
        license="test model, no data",
        description="constant-output model for tests",
        metrics=TINY_METRICS,
        extra={"datasets": "none", "recipe": "no-such-recipe", "command": "python -c build_tiny_model"},
    )
    for k, v in meta.to_props().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnx")
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny.onnx")


@pytest.fixture(scope="session")
def tiny_expected_interval(tiny_model: Path) -> tuple[float, float]:
    """The 80% interval the tiny model reports (decoded by the runtime)."""
    from facelens.heads import HeadModel

    head = HeadModel(tiny_model)
    age = head.decode({"age": _softmax(-0.5 * ((np.arange(101) - AGE_PEAK) / 2.0) ** 2)[None]}).age
    assert age is not None
    return age[0].interval


def write_blank(path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (120, 120), (128, 128, 128)).save(path)


@pytest.fixture()
def utk_root(tmp_path: Path) -> Path:
    """UTKFace-style folder: 4 astronaut copies (ages 30, 45, 12, 70), 1 blank image, 1 corrupt, 1 misnamed."""
    root = tmp_path / "utk" / "UTKFace"
    root.mkdir(parents=True)
    for name in ("30_1_2_20170101000001.jpg.chip.jpg", "45_0_0_20170101000002.jpg.chip.jpg",
                 "12_1_1_20170101000003.jpg.chip.jpg", "70_0_2_20170101000004.jpg.chip.jpg"):  # fmt: skip
        shutil.copy(ASTRONAUT, root / name)
    write_blank(root / "25_0_3_20170101000005.jpg.chip.jpg")
    (root / "40_1_4_20170101000006.jpg.chip.jpg").write_bytes(b"not a jpeg at all")
    shutil.copy(ASTRONAUT, root / "39_1_20170101000007.jpg.chip.jpg")  # missing race field: reader skips it
    return root.parent

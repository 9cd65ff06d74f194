from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facelens.align import LOOSE_V1
from facelens.heads.metadata import ModelMetadata
from facelens.labels import AGE_GROUP_SCHEMES, CELEBA_ATTRIBUTES, GENDERS, RACES
from facelens.train.engine import load_checkpoint
from facelens.train.export import ProbabilityNet, export_onnx, quantize_int8, read_metadata

SIZE = 32  # the tiny cache's crop size (conftest.SIZE)

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

OUTPUTS = ["age_probs", "gender_probs", "race_probs", "attr_probs"]


@pytest.fixture(scope="module")
def exported(trained_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(trained_checkpoint, tmp_path_factory.mktemp("onnx") / "model.onnx")


def test_onnx_matches_pytorch(exported: Path, trained_checkpoint: Path) -> None:
    model, _, _ = load_checkpoint(trained_checkpoint)
    x = torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))  # batch 3: dynamic axis
    with torch.no_grad():
        expected = [t.numpy() for t in ProbabilityNet(model).eval()(x)]
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == OUTPUTS
    got = session.run(None, {"input": x.numpy()})
    for name, e, g in zip(OUTPUTS, expected, got, strict=True):
        np.testing.assert_allclose(g, e, atol=1e-4, err_msg=name)
    assert [g.shape for g in got] == [(3, 101), (3, 2), (3, 5), (3, 40)]
    for g in got[:3]:
        np.testing.assert_allclose(g.sum(1), 1.0, atol=1e-5)  # probabilities, not logits
    assert ((got[3] >= 0) & (got[3] <= 1)).all()


def test_metadata_round_trips(exported: Path) -> None:
    model = onnx.load(str(exported))
    assert model.opset_import[0].version == 17
    meta = ModelMetadata.from_props({p.key: p.value for p in model.metadata_props})
    assert meta == read_metadata(exported)
    assert meta.input.size == SIZE and meta.input.name == "input"
    assert meta.input.mean == (0.485, 0.456, 0.406) and meta.input.std == (0.229, 0.224, 0.225)
    assert meta.alignment == {**LOOSE_V1.to_dict(), "size": SIZE}
    assert meta.tasks == ("age", "gender", "race", "attributes")
    assert [o.name for o in meta.outputs] == OUTPUTS
    labels = {o.task: o.labels for o in meta.outputs}
    assert labels == {"age": (), "gender": GENDERS, "race": RACES, "attributes": CELEBA_ATTRIBUTES}
    assert meta.age_min == 0
    assert meta.age_groups == {k: [list(g) for g in v] for k, v in AGE_GROUP_SCHEMES.items()}
    assert "NON-COMMERCIAL" in meta.license and "UTKFace" in meta.license and "CelebA" in meta.license
    assert "val_score" in meta.metrics and meta.metrics["epoch"] == 1


def test_explicit_metrics_are_recorded(trained_checkpoint: Path, tmp_path: Path) -> None:
    path = export_onnx(trained_checkpoint, tmp_path / "m.onnx", metrics={"test_age_mae": 5.5}, version="9.9")
    meta = read_metadata(path)
    assert meta.metrics == {"test_age_mae": 5.5} and meta.version == "9.9"


def test_int8_quantisation_keeps_metadata_and_runs(exported: Path, tmp_path: Path) -> None:
    q = quantize_int8(exported, tmp_path / "int8.onnx")
    meta = read_metadata(q)
    assert meta.extra["quantization"] == "dynamic-int8" and meta.input.size == SIZE
    session = ort.InferenceSession(str(q), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": np.zeros((2, 3, SIZE, SIZE), np.float32)})
    assert out[0].shape == (2, 101)
    np.testing.assert_allclose(out[0].sum(1), 1.0, atol=1e-4)

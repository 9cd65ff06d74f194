"""Grad-CAM, feature maps and training curves (facelens.explain) on a tiny random checkpoint."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("yaml")
pytest.importorskip("matplotlib")

import cv2  # noqa: E402

from facelens.align import alignment_matrix  # noqa: E402
from facelens.cli import explain as explain_cli  # noqa: E402
from facelens.errors import ModelError  # noqa: E402
from facelens.explain import (  # noqa: E402
    explain_image,
    feature_grid,
    grad_cam,
    heatmap_to_image,
    parse_head,
    plot_training_curves,
    resolve_checkpoint,
)
from facelens.train.config import DataConfig, DatasetSpec, ModelConfig, TrainConfig, config_to_dict  # noqa: E402
from facelens.train.models import create_model  # noqa: E402
from facelens.types import Landmarks  # noqa: E402

SIZE = 32
LANDMARKS = np.array([[80.0, 90.0], [120.0, 90.0], [100.0, 112.0], [84.0, 135.0], [116.0, 135.0]])


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def save_checkpoint(folder: Path, arch: str = "lenet5", size: int = SIZE, history: bool = True) -> Path:
    """A randomly initialised MultiTaskNet in the format of facelens.train.engine (model + config + state)."""
    config = TrainConfig(
        name="explain-test",
        data=DataConfig(datasets=(DatasetSpec(name="utkface", root="unused"),)),
        model=ModelConfig(arch=arch, pretrained=False, input_size=size, dropout=0.1),
    ).validate()
    torch.manual_seed(0)
    model = create_model(arch, pretrained=False, dropout=0.1)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "best.pt"
    torch.save({"model": model.state_dict(), "config": config_to_dict(config), "epoch": 1, "metrics": {}}, path)
    if history:
        rows = [
            {"epoch": e, "train_loss": 3.0 / e, "lr": 1e-3, "val_loss": 3.2 / e, "val_gender_acc": 0.5 + 0.1 * e,
             "val_age_mae": 12.0 - e, "val_score": e}
            for e in (1, 2, 3)
        ]  # fmt: skip
        (folder / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def photo(h: int = 200, w: int = 180) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    cv2.circle(img, (100, 110), 40, (230, 190, 160), -1)
    return img


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("run"))


@pytest.mark.parametrize("head", ["gender", "age", "race:asian", "attributes", "attributes:smiling"])
def test_grad_cam_shape_range_and_target(head: str) -> None:
    torch.manual_seed(0)
    model = create_model("lenet5", pretrained=False)
    cam = grad_cam(model, torch.randn(1, 3, SIZE, SIZE), head)
    assert cam.heatmap.shape == (SIZE, SIZE) and cam.heatmap.dtype == np.float32
    assert cam.heatmap.min() >= 0.0 and cam.heatmap.max() <= 1.0
    assert cam.heatmap.max() in (0.0, 1.0)
    assert cam.layer == "backbone.features"
    expected = {"age": "expected_age", "race:asian": "asian", "attributes:smiling": "Smiling"}
    if head in expected:
        assert cam.target == expected[head]
    assert (cam.probability is None) == (head == "age")
    assert all(p.grad is None for p in model.parameters())  # no gradient left behind


def test_grad_cam_on_a_torchvision_backbone_and_a_chosen_layer() -> None:
    torch.manual_seed(0)
    model = create_model("resnet18", pretrained=False)
    cam = grad_cam(model, torch.randn(1, 3, 64, 64), "gender", layer="features.6")
    assert cam.heatmap.shape == (64, 64) and cam.layer == "backbone.features.6"
    with pytest.raises(ModelError, match="no layer"):
        grad_cam(model, torch.randn(1, 3, 64, 64), "gender", layer="nope")


def test_head_parsing() -> None:
    assert parse_head("Attributes:eyeglasses") == ("attributes", "Eyeglasses")
    assert parse_head("age") == ("age", None)
    for bad in ("hair", "age:old", "race:martian"):
        with pytest.raises(ModelError):
            parse_head(bad)


def test_heatmap_maps_back_onto_the_original_image() -> None:
    img = photo()
    m = alignment_matrix(LANDMARKS, SIZE)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    heat = np.exp(-((xx - 10.0) ** 2 + (yy - 20.0) ** 2) / 20.0).astype(np.float32)
    back, mask = heatmap_to_image(heat, m, img.shape[1], img.shape[0])
    assert back.shape == mask.shape == img.shape[:2]
    assert not back[mask == 0].any()
    peak = np.unravel_index(np.argmax(back), back.shape)[::-1]  # (x, y) in the photo
    mapped = m @ np.array([peak[0], peak[1], 1.0])  # back into the crop: the Gaussian's centre
    np.testing.assert_allclose(mapped, [10.0, 20.0], atol=1.5)
    again = cv2.warpAffine(back, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
    np.testing.assert_allclose(again[4:-4, 4:-4], heat[4:-4, 4:-4], atol=0.1)


def test_explain_image_writes_everything(checkpoint: Path, tmp_path: Path) -> None:
    img = photo()
    result = explain_image(img, checkpoint.parent, "gender", tmp_path / "out", landmarks=[LANDMARKS])
    assert result.checkpoint == checkpoint and len(result.faces) == 1
    face = result.faces[0]
    assert face.heatmap_image.shape == img.shape[:2]
    assert face.cam.heatmap.shape == (SIZE, SIZE) and face.cam.target in ("male", "female")
    names = {p.name for p in result.files}
    assert {"face0_crop.png", "face0_cam_crop.png", "face0_cam_image.png", "explain.json"} <= names
    assert {"face0_features1.png", "face0_features2.png", "training_curves.png"} <= names
    assert cv2.imread(str(tmp_path / "out" / "face0_cam_image.png")).shape == (*img.shape[:2], 3)
    summary = json.loads((tmp_path / "out" / "explain.json").read_text())
    assert summary["arch"] == "lenet5" and summary["faces"][0]["target"] == face.cam.target
    # the heatmap on the photo lies inside the face's crop, as warped back with the inverse alignment
    corners = np.array([[0, 0, 1], [SIZE, 0, 1], [SIZE, SIZE, 1], [0, SIZE, 1]], float)
    inv = cv2.invertAffineTransform(np.array(face.matrix))
    quad = (corners @ inv.T).astype(np.float32)
    ys, xs = np.nonzero(face.heatmap_image > 0.05)
    if len(xs):
        inside = [cv2.pointPolygonTest(quad, (float(x), float(y)), True) >= -1.5 for x, y in zip(xs, ys, strict=True)]
        assert all(inside)


class FakeFace:
    def __init__(self, lm: np.ndarray) -> None:
        self.landmarks = Landmarks.from_array(lm)


class FakeDetector:
    def detect(self, rgb: np.ndarray) -> list[FakeFace]:
        return [FakeFace(LANDMARKS), FakeFace(LANDMARKS + 5)]


def test_cli_with_a_detector(checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("facelens.train.cache.make_detector", lambda name, options: FakeDetector())
    image = tmp_path / "photo.png"
    cv2.imwrite(str(image), photo())
    parser = argparse.ArgumentParser(prog="facelens")
    explain_cli.register(parser.add_subparsers())
    out = tmp_path / "cli"
    argv = ["explain", str(image), "--checkpoint", str(checkpoint), "--head", "age", "--out", str(out)]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    assert (out / "face1_cam_image.png").is_file() and (out / "training_curves.png").is_file()
    bad = parser.parse_args(["explain", str(image), "--checkpoint", str(tmp_path / "m.onnx"), "--out", str(out)])
    assert bad.func(bad) == 2


def test_checkpoint_resolution(checkpoint: Path, tmp_path: Path) -> None:
    assert resolve_checkpoint(checkpoint.parent) == checkpoint
    with pytest.raises(ModelError, match="ONNX"):
        resolve_checkpoint(tmp_path / "model.onnx")
    with pytest.raises(ModelError, match="no best.pt"):
        resolve_checkpoint(tmp_path)


def test_training_curves_and_feature_grid(checkpoint: Path, tmp_path: Path) -> None:
    png = plot_training_curves(checkpoint.parent / "history.jsonl", tmp_path / "curves.png")
    assert cv2.imread(str(png)) is not None
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ModelError):
        plot_training_curves(empty, tmp_path / "x.png")
    grid = feature_grid(np.random.default_rng(0).normal(size=(6, 5, 5)), cell=10)
    assert grid.dtype == np.uint8 and grid.shape == (2 + 2 * 12, 2 + 3 * 12)

"""``facelens train-detector``: WIDER-format labels, the detector registry, training, the ``trained`` backend."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from facelens.cli import main as cli_main
from facelens.detect import create_detector
from facelens.errors import DatasetError, ModelError
from facelens.eval.widerface import ground_truth_from_boxes, read_annotations
from facelens.train.config import ConfigError
from facelens.train.detector import (
    DETECTOR_ARCHS,
    DetectorDataConfig,
    DetectorLoopConfig,
    DetectorModelConfig,
    DetectorOptimConfig,
    DetectorTrainConfig,
    create_detector_model,
    load_detector_config,
    load_samples,
    split_samples,
    train_detector,
)

SHARED_WIDER = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "wider_face"

TINY_MODEL = {"min_size": [128], "max_size": 160, "pretrained": False, "options": {"fpn_channels": 32}}


def write_wider(root: Path, n: int = 6, seed: int = 0) -> Path:
    """A WIDER-format tree: ``n`` 96x128 noise images with 1-2 bright ellipse "faces" each, plus one image with
    no face and one face flagged invalid."""
    rng = np.random.default_rng(seed)
    images = root / "WIDER_val" / "images" / "0--Parade"
    images.mkdir(parents=True)
    lines = []
    for i in range(n):
        img = rng.integers(0, 80, (96, 128, 3), dtype=np.uint8)
        faces = [] if i == 0 else [[8 + 40 * k, 20, 28, 36] for k in range(1 + i % 2)]
        for x, y, w, h in faces:
            cv2.ellipse(img, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, (230, 190, 160), -1)
        cv2.imwrite(str(images / f"0_Parade_{i}.jpg"), img)
        rows = [f"{x} {y} {w} {h} 0 0 0 0 0 0" for x, y, w, h in faces] or ["0 0 0 0 0 0 0 0 0 0"]
        if i == 1:
            rows.append("1 1 5 5 0 0 0 1 0 0")  # invalid: left out
        lines += [f"0--Parade/0_Parade_{i}.jpg", str(len(rows) if faces else 0), *rows]
    lines += ["0--Parade/missing.jpg", "1", "1 2 3 4 0 0 0 0 0 0"]  # listed but not on disk
    split = root / "wider_face_split"
    split.mkdir()
    (split / "wider_face_val_bbx_gt.txt").write_text("\n".join(lines) + "\n")
    return root


def tiny_config(root: Path, out: Path, **loop: object) -> DetectorTrainConfig:
    return DetectorTrainConfig(
        data=DetectorDataConfig(root=str(root), holdout_fraction=0.34, min_face=4.0),
        model=DetectorModelConfig(min_size=(96,), max_size=128, pretrained=False, options={"fpn_channels": 32}),
        optim=DetectorOptimConfig(epochs=1, batch_size=2, warmup_steps=1, lr=0.005),
        train=DetectorLoopConfig(device="cpu", out_dir=str(out), num_threads=1, **loop),  # type: ignore[arg-type]
    ).validate()


def test_read_annotations_parses_faces_and_skips_invalid(tmp_path: Path) -> None:
    boxes = read_annotations(write_wider(tmp_path) / "wider_face_split" / "wider_face_val_bbx_gt.txt")
    assert len(boxes) == 7
    assert boxes["0--Parade/0_Parade_0.jpg"].shape == (0, 4)  # "0" faces, then a line of zeros
    np.testing.assert_array_equal(boxes["0--Parade/0_Parade_1.jpg"], [[8, 20, 36, 56], [48, 20, 76, 56]])
    assert boxes["0--Parade/0_Parade_2.jpg"].shape == (1, 4)


def test_read_annotations_names_the_bad_line(tmp_path: Path) -> None:
    bad = tmp_path / "gt.txt"
    bad.write_text("a/b.jpg\ntwo\n1 2 3 4 0 0 0 0 0 0\n")
    with pytest.raises(DatasetError, match=r"gt.txt:2"):
        read_annotations(bad)
    with pytest.raises(DatasetError, match="cannot read"):
        read_annotations(tmp_path / "absent.txt")


def test_samples_keep_present_images_and_split_by_seed(tmp_path: Path) -> None:
    samples = load_samples(DetectorDataConfig(root=str(write_wider(tmp_path))))
    assert [s.rel for s in samples] == [f"0--Parade/0_Parade_{i}.jpg" for i in range(6)]
    train, held = split_samples(samples, 0.34, seed=0)
    assert len(held) == 2 and len(train) == 4 and not {s.rel for s in train} & {s.rel for s in held}
    assert [s.rel for s in split_samples(samples, 0.34, seed=0)[1]] == [s.rel for s in held]
    with pytest.raises(DatasetError, match="none of the images"):
        load_samples(DetectorDataConfig(root=str(tmp_path), images=str(tmp_path / "nowhere")))


@pytest.mark.parametrize("arch", sorted(DETECTOR_ARCHS))
def test_every_registered_detector_trains_and_predicts(arch: str) -> None:
    import torch

    torch.manual_seed(0)
    model = create_detector_model(DetectorModelConfig(arch=arch, **TINY_MODEL))  # type: ignore[arg-type]
    images = [torch.rand(3, 128, 150), torch.rand(3, 128, 128)]  # FCOS needs P7 (stride 128) > 1x1
    targets = [
        {"boxes": torch.tensor([[10.0, 10.0, 40.0, 50.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # an image without faces
    ]
    model.train()
    losses = model(images, targets)
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.eval()
    with torch.no_grad():
        out = model([images[0]])[0]
    assert set(out) >= {"boxes", "scores", "labels"} and out["boxes"].shape[1] == 4


def test_unknown_arch_and_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown detector architecture"):
        create_detector_model(DetectorModelConfig(arch="nope"))
    with pytest.raises(ConfigError, match="do not fit"):
        create_detector_model(DetectorModelConfig(pretrained=False, options={"width": 3}))


def test_recipe_loads_with_overrides(tmp_path: Path) -> None:
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "detector_fasterrcnn_mobilenetv2.yaml"
    config = load_detector_config(recipe, ["optim.epochs=3", "model.min_size=[256, 320]"])
    assert config.optim.epochs == 3 and config.model.min_size == (256, 320)
    with pytest.raises(ConfigError, match="unknown config key 'optim.epoch'"):
        load_detector_config(recipe, ["optim.epoch=3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {arch: yolo}\n")
    with pytest.raises(ConfigError, match="yolo"):
        load_detector_config(bad)


def test_train_resume_and_use_as_backend(tmp_path: Path) -> None:
    root = write_wider(tmp_path / "wider")
    config = tiny_config(root, tmp_path / "run")
    seen: list[int] = []
    result = train_detector(config, progress=False, on_epoch_end=lambda epoch, metrics: seen.append(epoch))
    assert seen == [1] and result.epochs_run == 1 and result.stopped == "completed"
    assert result.metrics["protocol"].startswith("all annotated faces")  # this tree has no .mat lists
    assert result.metrics["holdout_images"] == 2 and 0.0 <= result.metrics["ap_easy"] <= 1.0
    assert len(result.holdout.read_text().split()) == 2
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1] and np.isfinite(history[0]["loss"])

    longer = dataclasses.replace(config, optim=DetectorOptimConfig(epochs=2, batch_size=2))
    with pytest.raises(ConfigError, match="already holds a training run"):  # a finished run is never replaced silently
        train_detector(longer, progress=False)
    resumed = train_detector(longer, resume=True, progress=False)
    assert resumed.epochs_run == 2
    lines = (tmp_path / "run" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]

    det = create_detector("trained", checkpoint=str(resumed.detector), score_threshold=0.0)
    assert det.name == "trained"
    bgr = cv2.imread(str(root / "WIDER_val" / "images" / "0--Parade" / "0_Parade_1.jpg"))
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    found = det.detect(image)
    assert all(0 <= d.box.x1 < d.box.x2 <= 128 and 0 <= d.box.y1 < d.box.y2 <= 96 for d in found)
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
    for d in found[:3]:
        eyes = d.landmarks.to_array()[:2]
        assert d.box.x1 <= eyes[0, 0] < eyes[1, 0] <= d.box.x2  # left eye left of right eye, inside the box
    halved = create_detector("trained", checkpoint=str(resumed.detector), score_threshold=0.0, max_side=64)
    small = cv2.resize(image, (64, 48), interpolation=cv2.INTER_AREA)
    expected = [[2 * v for v in (d.box.x1, d.box.y1, d.box.x2, d.box.y2)] for d in det.detect(small)]
    got = [[d.box.x1, d.box.y1, d.box.x2, d.box.y2] for d in halved.detect(image)]
    np.testing.assert_allclose(got, expected, atol=1e-3)  # scanned at half size, boxes mapped back

    from facelens.pipeline import AnalyzerConfig, FaceAnalyzer

    options = {"checkpoint": str(resumed.detector)}
    analyzer = FaceAnalyzer(AnalyzerConfig(detector="trained", score_threshold=0.0, heads=(), detector_options=options))
    result = analyzer.analyze(image)
    assert result.width == 128 and len(result.faces) == len(found)


def test_trained_backend_refuses_other_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="junk.pt"):
        create_detector("trained", checkpoint=str(junk))


def test_cli_fast_dev_run_then_eval_on_its_holdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_wider(tmp_path / "wider")
    recipe = tmp_path / "det.yaml"
    recipe.write_text(
        f"data: {{root: {root}, holdout_fraction: 0.34, min_face: 4}}\n"
        f"model: {json.dumps(TINY_MODEL)}\n"
        "train: {device: cpu, num_threads: 1}\n"
    )
    out = tmp_path / "run"
    code = cli_main(["train-detector", "--config", str(recipe), "--out", str(out), "--fast-dev-run", "--no-progress"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out.split("\nevaluate with")[0])
    smoke = out / "fast-dev-run"  # a smoke run writes to its own sub-folder, never over the run in --out
    assert printed["detector"] == str(smoke / "detector.pt") and printed["epochs"] == 1
    argv = ["train-detector", "--config", str(recipe), "--out", str(smoke), "--no-progress"]
    assert cli_main([*argv, "--set", "optim.epochs=1"]) == 2  # the folder holds a run: refused, nothing replaced
    assert "--resume" in capsys.readouterr().err and (smoke / "detector.pt").is_file()
    assert cli_main([*argv, "--resume", "--overwrite"]) == 2
    assert "give one of them" in capsys.readouterr().err
    assert cli_main(["train-detector", "--config", str(tmp_path / "absent.yaml")]) == 2
    assert "cannot read config" in capsys.readouterr().err


def test_ground_truth_from_boxes_counts_every_face_in_all_settings() -> None:
    gt = ground_truth_from_boxes(Path("."), {"a.jpg": np.array([[0, 0, 10, 10], [5, 5, 20, 20]])})
    assert gt.faces() == {"easy": 2, "medium": 2, "hard": 2}


@pytest.mark.skipif(not SHARED_WIDER.is_dir(), reason="needs ../shared/data/wider_face (not in a fresh clone)")
def test_real_wider_subset_smoke(tmp_path: Path) -> None:
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "detector_fasterrcnn_mobilenetv2.yaml"
    config = load_detector_config(
        recipe,
        [
            f"data.root={SHARED_WIDER}",
            "data.max_images=6",
            "model.min_size=[128]",
            "model.max_size=160",
            "model.pretrained=false",
            "optim.epochs=1",
            "train.fast_dev_run=1",
            "train.device=cpu",
            f"train.out_dir={tmp_path}",
        ],
    )
    result = train_detector(config, progress=False)
    assert result.metrics["protocol"] == "official easy/medium/hard lists"
    assert result.metrics["holdout_images"] == 1 and result.metrics["train_images"] == 4

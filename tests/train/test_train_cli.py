from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facelens.train import cache as cache_mod
from facelens.train.cli import add_subcommands
from facelens.train.export import read_metadata
from facelens.types import Box, Detection, Landmarks

RECIPE = """
name: clitest
data:
  datasets:
    - {{name: utkface, root: {root}}}
  val_fraction: 0.25
  test_fraction: 0.25
  cache_dir: {tmp}/cache
preprocess: {{size: 32, workers: 0}}
model: {{pretrained: false, input_size: 32}}
optim: {{batch_size: 4, epochs: 3}}
train: {{out_dir: {tmp}/run, val_batch_size: 4}}
"""


class FixedFace:
    name = "fixed"

    def detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        pts = np.array([[0.38, 0.42], [0.62, 0.42], [0.5, 0.56], [0.4, 0.7], [0.6, 0.7]]) * [w, h]
        return [Detection(Box(0, 0, w, h), 0.9, Landmarks.from_array(pts))]


@pytest.fixture()
def recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A UTKFace-layout folder of 12 noise images, and a recipe that trains on it; detection is faked."""
    folder = tmp_path / "utk" / "UTKFace"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(12):
        name = f"{10 + 5 * i}_{i % 2}_{i % 5}_2017011617452{i:04d}.jpg.chip.jpg"
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / name, format="JPEG")
    monkeypatch.setattr(cache_mod, "make_detector", lambda name, options: FixedFace())
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE.format(root=tmp_path / "utk", tmp=tmp_path))
    return path


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="facelens")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_preprocess_train_export(recipe: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["preprocess", "--config", str(recipe), "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["samples"], report["faces"], report["no_face"], report["reused"]) == (12, 12, 0, False)

    out = tmp_path / "fast"
    argv = ["train", "--config", str(recipe), "--fast-dev-run", "--out", str(out), "--no-progress"]
    assert run([*argv, "--set", "optim.lr=0.01"]) == 0
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file() and (out / "config.yaml").is_file()
    assert "lr: 0.01" in (out / "config.yaml").read_text()
    assert "export with: facelens export" in capsys.readouterr().out

    assert run(["export", str(out / "best.pt"), "--out", str(tmp_path / "m.onnx")]) == 0
    assert (tmp_path / "m.onnx").is_file() and "outputs age, gender, race, attributes" in capsys.readouterr().out

    assert run(["export", str(out / "best.pt"), "--out", str(tmp_path / "v.onnx"), "--model-version", "7.1"]) == 0
    assert read_metadata(tmp_path / "v.onnx").version == "7.1" and " 7.1, input" in capsys.readouterr().out


def test_train_on_a_copied_cache_needs_no_raw_images(
    recipe: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["preprocess", "--config", str(recipe), "--no-progress"]) == 0
    built = Path(json.loads(capsys.readouterr().out)["cache"])
    moved = built.rename(tmp_path / "copied_cache")
    shutil.rmtree(tmp_path / "utk")  # the raw images are gone, as on a machine that only received the cache
    out = tmp_path / "from_copy"
    argv = ["train", "--config", str(recipe), "--fast-dev-run", "--out", str(out), "--no-progress"]
    assert run([*argv, "--cache", str(moved)]) == 0
    assert (out / "best.pt").is_file()
    assert run(argv) == 2  # without --cache the recipe's raw data is needed
    assert "utk" in capsys.readouterr().err
    assert run([*argv, "--cache", str(tmp_path / "nowhere")]) == 2
    assert "is not a finished facelens cache (missing meta.json, images.npy, labels.npz)" in capsys.readouterr().err


def test_errors_are_reported_not_raised(recipe: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["train", "--config", str(recipe), "--set", "optim.warp=9"]) == 2
    assert "optim.warp" in capsys.readouterr().err
    assert run(["preprocess", "--config", str(recipe.with_name("missing.yaml"))]) == 2
    assert "cannot read training config" in capsys.readouterr().err


def test_mounting_the_cli_does_not_import_torch() -> None:
    code = "import sys, facelens.train.cli, facelens.train.config; assert 'torch' not in sys.modules, 'torch'"
    subprocess.run([sys.executable, "-c", code], check=True)

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facelens.cli import main as cli_main
from facelens.train import cache as cache_mod
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
    return cli_main(argv)


def test_preprocess_train_export(recipe: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["preprocess", "--config", str(recipe), "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["samples"], report["faces"], report["no_face"], report["reused"]) == (12, 12, 0, False)

    out = tmp_path / "fast" / "fast-dev-run"  # a smoke run writes to its own sub-folder of --out
    argv = ["train", "--config", str(recipe), "--fast-dev-run", "--out", str(out.parent), "--no-progress"]
    assert run([*argv, "--set", "optim.lr=0.01"]) == 0
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file() and (out / "config.yaml").is_file()
    assert "lr: 0.01" in (out / "config.yaml").read_text()
    assert f"export with: facelens export {out / 'best.pt'}" in capsys.readouterr().out

    assert run(["export", str(out / "best.pt"), "--out", str(tmp_path / "m.onnx")]) == 0
    assert (tmp_path / "m.onnx").is_file() and "outputs age, gender, race, attributes" in capsys.readouterr().out
    train_command = shlex.join(["facelens", *argv, "--set", "optim.lr=0.01"])  # the run's own, overrides included
    assert read_metadata(tmp_path / "m.onnx").extra["train_command"] == train_command

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
    assert (out / "fast-dev-run" / "best.pt").is_file()
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


FAST = ["--no-progress", "--set", "model.arch=lenet5", "--set", "optim.epochs=1"]
"""A one-epoch run of a small network (seconds on the 12-image recipe)."""


def test_a_finished_run_is_never_replaced_silently(
    recipe: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["train", "--config", str(recipe), "--out", str(out), *FAST]
    assert run(argv) == 0
    capsys.readouterr()
    before = {name: (out / name).read_bytes() for name in ("best.pt", "last.pt", "history.jsonl")}

    assert run(argv) == 2  # the same command again
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds a training run (last.pt, best.pt)" in err and "--overwrite" in err
    assert run([*argv, "--fast-dev-run"]) == 0  # a smoke run goes to its own sub-folder...
    assert (out / "fast-dev-run" / "best.pt").is_file()
    assert run([*argv, "--fast-dev-run"]) == 0  # ...and replaces only an earlier smoke run there
    assert {name: (out / name).read_bytes() for name in before} == before  # the run itself is untouched
    assert run([*argv, "--resume", "--overwrite"]) == 2
    assert "give one of them" in capsys.readouterr().err
    assert run([*argv, "--resume", "--fast-dev-run"]) == 2
    assert "cannot be resumed" in capsys.readouterr().err

    assert run([*argv, "--overwrite", "--set", "train.seed=1"]) == 0  # explicit: a fresh run replaces it
    assert (out / "best.pt").read_bytes() != before["best.pt"]
    assert len((out / "history.jsonl").read_text().splitlines()) == 1


def test_resume_refuses_another_recipe_in_one_line(
    recipe: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["train", "--config", str(recipe), "--out", str(out), *FAST]
    assert run(argv) == 0
    capsys.readouterr()
    assert run([*argv, "--resume", "--set", "model.arch=custom_cnn", "--set", "optim.epochs=2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.arch: 'lenet5' -> 'custom_cnn'" in err and "Traceback" not in err
    assert run([*argv, "--resume", "--set", "optim.lr=0.05", "--set", "optim.epochs=2"]) == 2
    assert "optim.lr: 0.001 -> 0.05" in capsys.readouterr().err
    assert run([*argv, "--resume", "--set", "optim.epochs=2", "--set", "train.patience=1"]) == 0  # allowed
    assert len((out / "history.jsonl").read_text().splitlines()) == 2


def test_readme_override_with_exponent_is_a_number(recipe: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run(["train", "--config", str(recipe), "--out", str(out), *FAST, "--set", "optim.lr=3e-4"]) == 0
    assert "lr: 0.0003" in (out / "config.yaml").read_text()


def test_bad_device_is_refused_before_any_folder_or_cache_is_made(
    recipe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    out = tmp_path / "run"
    argv = ["train", "--config", str(recipe), "--out", str(out), *FAST]
    assert run([*argv, "--set", "train.device=gpu"]) == 2
    assert "train.device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', not 'gpu'" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert run([*argv, "--set", "train.device=cuda"]) == 2
    assert "train.device='cuda', but CUDA is not available on this machine" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_export_refuses_files_that_are_not_training_checkpoints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    random_file = tmp_path / "random.pt"
    random_file.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    onnx_like = tmp_path / "model.onnx"
    onnx_like.write_bytes(b"\x08\x07\x12\x07pytorch" + bytes(200))
    state_dict = tmp_path / "sd.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), state_dict)
    for path in (random_file, onnx_like, state_dict):
        assert run(["export", str(path), "--out", str(tmp_path / "m.onnx")]) == 2, path
        err = capsys.readouterr().err
        assert f"{path} is not a facelens training checkpoint" in err and err.count("\n") == 1
    assert not (tmp_path / "m.onnx").exists()


def test_a_source_without_samples_is_an_error_naming_it(
    recipe: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = tmp_path / "celeba_like"
    wrong.mkdir()
    Image.new("RGB", (40, 40)).save(wrong / "000001.jpg")  # a CelebA file name: not a UTKFace sample
    bad = recipe.with_name("wrong.yaml")
    bad.write_text(recipe.read_text().replace(str(tmp_path / "utk"), str(wrong)))
    assert run(["preprocess", "--config", str(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "data source 'utkface' (utkface reader, root" in err and "yielded no samples" in err
    assert "skipped 1 entries, e.g." in err and "000001.jpg" in err

    assert run(["preprocess", "--config", str(recipe), "--no-progress"]) == 0
    cache = json.loads(capsys.readouterr().out)["cache"]
    two = recipe.with_name("two.yaml")  # a second source that the cache (built without it) lacks
    text = recipe.read_text().replace(
        f"root: {tmp_path / 'utk'}}}", f"root: {tmp_path / 'utk'}}}\n    - {{name: utkface, id: more, root: {wrong}}}"
    )
    two.write_text(text)
    argv = ["train", "--config", str(two), "--cache", cache, "--out", str(tmp_path / "run"), *FAST]
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert "no training samples for the source(s) ['more'] (weight > 0) in the cache" in err
    assert "{'utkface': 6}" in err and not (tmp_path / "run" / "last.pt").exists()

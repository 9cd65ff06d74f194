"""What ``facelens export`` records about the training run (split settings, command) and that it never leaves a
broken file at ``--out`` when it fails."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from facelens.cli import main as cli_main
from facelens.data.base import write_tiny_jpeg
from facelens.eval import split as eval_split
from facelens.train import export
from facelens.train.cache import collect_records
from facelens.train.config import ConfigError
from facelens.train.engine import load_checkpoint
from facelens.train.export import export_onnx, read_metadata

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _variant(src: Path, dst: Path, data: dict[str, Any] | None = None, **entries: Any) -> Path:
    """A copy of a checkpoint with other data settings (merged into its config) and other top-level entries."""
    ckpt = torch.load(src, map_location="cpu", weights_only=False)
    ckpt["config"]["data"].update(data or {})
    ckpt.update(entries)
    torch.save(ckpt, dst)
    return dst


def _utk_folder(folder: Path, n: int = 40) -> Path:
    for i in range(n):
        write_tiny_jpeg(folder / f"{i % 90 + 1}_{i % 2}_{i % 5}_2017010100{i:04d}.jpg.chip.jpg")
    return folder


def test_split_settings_of_the_trained_run_are_stored(trained_checkpoint: Path, tmp_path: Path) -> None:
    utk = _utk_folder(tmp_path / "utk")
    ckpt = torch.load(trained_checkpoint, map_location="cpu", weights_only=False)
    sources = ckpt["config"]["data"]["datasets"]
    sources[0].update(root=str(utk), max_samples=30)
    data = {"datasets": sources, "val_fraction": 0.05, "test_fraction": 0.2, "seed": 3}
    path = export_onnx(_variant(trained_checkpoint, tmp_path / "vf.pt", data), tmp_path / "m.onnx")
    stored = json.loads(read_metadata(path).extra["split"])
    assert stored == {
        "val_fraction": 0.05,
        "test_fraction": 0.2,
        "seed": 3,
        "sources": [
            {"name": "utkface", "id": "utk", "options": {}, "max_samples": 30},
            {"name": "celeba", "id": "celeba", "options": {}, "max_samples": None},
        ],
    }
    # the evaluation reproduces exactly the training cache's split from the stored settings alone
    _, config, _ = load_checkpoint(tmp_path / "vf.pt")
    records, _ = collect_records(replace(config, data=replace(config.data, datasets=config.data.datasets[:1])))
    for split in ("val", "test"):
        chosen, info = eval_split.select_split("utkface", utk, split, None, stored)
        assert sorted(str(s.path) for s in chosen) == sorted(r.path for r in records if r.split == split)
    assert (info.n_train, info.n_val, info.n_test, info.n_unused) == (22, 2, 6, 10)
    stored_info = (eval_split.STORED_SPLIT, "utk", 0.05, 30)
    assert (info.split_from, info.source, info.val_fraction, info.max_samples) == stored_info


def test_train_command_is_the_recorded_one(trained_checkpoint: Path, tmp_path: Path) -> None:
    recorded = "facelens train --config recipes/smoke.yaml --set data.val_fraction=0.05"
    path = export_onnx(_variant(trained_checkpoint, tmp_path / "c.pt", command=recorded), tmp_path / "c.onnx")
    assert read_metadata(path).extra["train_command"] == recorded
    path = export_onnx(trained_checkpoint, tmp_path / "plain.onnx")  # not recorded: the recipe's command, as before
    assert read_metadata(path).extra["train_command"] == "facelens train --config recipes/tiny.yaml"
    config = load_checkpoint(trained_checkpoint)[1]
    assert export.train_command(config, f" {recorded}\n") == recorded
    assert (
        export.train_command(config, "")
        == export.train_command(config, None)
        == "facelens train --config recipes/tiny.yaml"
    )


def test_failed_calibration_keeps_the_existing_model(
    trained_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = export_onnx(trained_checkpoint, tmp_path / "models" / "model.onnx")
    before = out.read_bytes()
    gone = _variant(trained_checkpoint, tmp_path / "gone.pt", cache=str(tmp_path / "deleted_cache"))
    with pytest.raises(ConfigError, match="training cache .* is gone"):
        export_onnx(gone, out, calibrate_interval=True)
    assert cli_main(["export", str(gone), "--out", str(out), "--calibrate-interval"]) == 2
    assert "is gone" in capsys.readouterr().err
    assert out.read_bytes() == before and read_metadata(out).name == "facelens-tiny"
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.onnx"]  # no temporary file left behind


def test_a_failure_while_writing_leaves_no_partial_file(
    trained_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "model.onnx"
    out.write_bytes(b"the previous model")

    def broken(path: Path, props: dict[str, str]) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(export, "write_metadata", broken)
    with pytest.raises(OSError, match="disk full"):
        export_onnx(trained_checkpoint, out)
    assert out.read_bytes() == b"the previous model" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    assert not (tmp_path / "new.onnx").exists()
    monkeypatch.undo()
    q = export_onnx(trained_checkpoint, tmp_path / "new.onnx", int8=True)  # quantised through the temporary file
    meta = read_metadata(q)
    assert meta.extra["quantization"] == "dynamic-int8" and "split" in meta.extra
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "new.onnx"]

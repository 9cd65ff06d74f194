"""``facelens export --test-time-flip`` marks the model; the runtime's averaging is tested in test_heads_runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from facelens.cli import main as cli_main
from facelens.heads.runtime import HeadModel
from facelens.train.export import read_metadata

pytest.importorskip("onnxruntime")


def test_flip_flag_travels_in_the_metadata(trained_checkpoint: Path, tmp_path: Path) -> None:
    assert cli_main(["export", str(trained_checkpoint), "--out", str(tmp_path / "plain.onnx")]) == 0
    assert cli_main(["export", str(trained_checkpoint), "--out", str(tmp_path / "f.onnx"), "--test-time-flip"]) == 0
    assert not read_metadata(tmp_path / "plain.onnx").test_time_flip
    assert HeadModel(tmp_path / "f.onnx").metadata.test_time_flip

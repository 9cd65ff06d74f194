from __future__ import annotations

import pytest

from facelens.train.bench import main, measure_throughput
from facelens.train.config import ConfigError


def test_measure_throughput_times_training_steps_with_frozen_blocks() -> None:
    r = measure_throughput("lenet5", size=32, batch_size=4, steps=1, rounds=2, frozen_blocks=1)
    assert (r.arch, r.size, r.frozen_blocks, len(r.rounds)) == ("lenet5", 32, 1, 2)
    assert 0 < r.median <= r.best


def test_bench_command_prints_one_line_per_setting(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--arch", "lenet5", "--sizes", "32", "--batch-size", "4", "--steps", "1", "--rounds", "1"]
    assert main([*argv, "--frozen-blocks", "0", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "0 frozen blocks" in lines[0] and "1 frozen blocks" in lines[1]
    assert main([*argv, "--precision", "fp32", "bf16"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and " fp32, " in lines[0] and " bf16, " in lines[1]
    with pytest.raises(ConfigError, match="only"):
        main([*argv, "--frozen-blocks", "99"])

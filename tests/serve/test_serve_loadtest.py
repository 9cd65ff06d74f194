"""benchmarks/loadtest.py, run small against a live server on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

LOADTEST = Path(__file__).resolve().parents[2] / "benchmarks" / "loadtest.py"


@pytest.fixture(scope="module")
def loadtest() -> ModuleType:
    spec = importlib.util.spec_from_file_location("facelens_loadtest", LOADTEST)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_loadtest_small_run(loadtest: ModuleType, live_server, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    code = loadtest.main(
        ["--url", live_server.url, "--server-pid", str(os.getpid()), "--clients", "6", "--requests", "40",
         "--max-seconds", "60", "--side", "128"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "requests/s" in out and "p99" in out and "errors             0" in out and "MiB ->" in out
    assert "requests sent      40 " in out


def test_loadtest_refuses_non_loopback(loadtest: ModuleType) -> None:
    with pytest.raises(SystemExit, match="only loopback"):
        loadtest.main(["--url", "http://192.0.2.1:8000", "--requests", "1"])
    loadtest.require_loopback("http://[::1]:8000")
    loadtest.require_loopback("http://localhost:8000")


def test_percentile(loadtest: ModuleType) -> None:
    values = [float(v) for v in range(1, 101)]
    assert (loadtest.percentile(values, 50), loadtest.percentile(values, 95), loadtest.percentile(values, 99)) == (
        50.0, 95.0, 99.0
    )  # fmt: skip
    assert loadtest.percentile([], 50) == 0.0

"""The local engine's process pool: a worker that dies costs only its own input, and a worker that cannot start
stops the batch instead of hanging it."""

import os
import time
from collections import Counter

import pytest

from facelens.batch import WORKER_CRASHED, WorkerStartError, pool_map, run_local
from facelens.types import ImageResult


def _crash_on_marked(path: str) -> dict:
    """Stands in for a decoder that crashes the process on one hostile file."""
    if "crash" in path:
        os._exit(3)
    time.sleep(0.05)  # keep several inputs in flight when the crash comes
    return ImageResult(path, 1, 1, ()).to_dict()


def _always_crash(path: str) -> dict:
    os._exit(3)


def test_a_crashing_input_is_reported_and_the_rest_of_the_batch_goes_on() -> None:
    paths = [f"img{i:02d}.jpg" for i in range(12)]
    paths[3] = "crash.jpg"
    results = list(pool_map(_crash_on_marked, paths, workers=2))
    assert Counter(r["path"] for r in results) == Counter(paths)  # each input once: none lost, none twice
    codes = {r["path"]: r.get("error_code") for r in results}
    assert codes.pop("crash.jpg") == WORKER_CRASHED
    assert set(codes.values()) == {None}


def test_workers_that_die_on_everything_stop_the_batch() -> None:
    with pytest.raises(WorkerStartError, match="died on each of the first 3 inputs"):
        list(pool_map(_always_crash, [f"img{i}.jpg" for i in range(50)], workers=2))


def test_a_worker_that_cannot_build_its_analyzer_stops_the_batch() -> None:
    # the parent's check_settings catches this first in run_batch; the pool must not respawn workers forever
    with pytest.raises(WorkerStartError, match="score_threshold"):
        list(run_local(["a.jpg", "b.jpg"], {"heads": (), "score_threshold": 5.0}, workers=2))

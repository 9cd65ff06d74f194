"""Measure training throughput (images/s, forward + backward + optimiser step) of a registered architecture.

Used to size recipes to a time budget. Run ``python -m facelens.train.bench --sizes 96 112`` (add
``--frozen-blocks 0 4`` to compare freezing the first backbone blocks, ``model.frozen_blocks``, and
``--precision fp32 bf16`` to compare bfloat16 autocast, ``train.precision``); it reports the
median and the best of several timed rounds (the best is the figure for an otherwise idle machine, the median
what a busy one gives) together with the load average, since other processes on the machine skew the numbers.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from dataclasses import dataclass

import torch

from .batches import augment_batch
from .config import PRECISIONS, AugmentConfig, OptimConfig
from .engine import autocast, configure_threads, make_optimizer
from .losses import multitask_loss
from .models import TASK_OUTPUTS, create_model, freeze_blocks


@dataclass(frozen=True)
class Throughput:
    """Result of :func:`measure_throughput` (images per second)."""

    arch: str
    size: int
    batch_size: int
    threads: int
    memory_format: str
    frozen_blocks: int
    precision: str
    median: float
    best: float
    rounds: tuple[float, ...]
    load_average: float


def measure_throughput(
    arch: str = "mobilenet_v2",
    size: int = 112,
    batch_size: int = 64,
    steps: int = 5,
    rounds: int = 5,
    memory_format: str = "channels_last",
    frozen_blocks: int = 0,
    precision: str = "fp32",
) -> Throughput:
    """Time full training steps (augmentation, forward, masked losses, backward, AdamW) on random data.

    Args:
        arch: Registered architecture.
        size: Input side in pixels.
        batch_size: Images per step.
        steps: Steps per timed round.
        rounds: Timed rounds (after two warm-up steps).
        memory_format: ``"channels_last"`` (NHWC, what training uses by default) or ``"contiguous"`` (NCHW).
        frozen_blocks: Backbone blocks without gradients (:func:`facelens.train.models.freeze_blocks`).
        precision: ``"fp32"`` or ``"bf16"`` (autocast of the forward pass and losses, as ``train.precision``).

    Returns:
        Images per second per round, their median and best, and the 1-minute load average at the end.

    """
    threads = configure_threads(0)
    torch.manual_seed(0)
    fmt = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}[memory_format]
    model = create_model(arch, pretrained=False).train().to(memory_format=fmt)
    freeze_blocks(model, frozen_blocks)
    opt = make_optimizer(model, 1e-3, 1e-4)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch_size, size, size, 3), dtype=torch.uint8, generator=gen)
    targets = {
        "age": torch.rand(batch_size, generator=gen) * 90,
        "gender": torch.randint(0, 2, (batch_size,), generator=gen),
        "race": torch.randint(0, 5, (batch_size,), generator=gen),
        "attributes": torch.randint(0, 2, (batch_size, TASK_OUTPUTS["attributes"]), generator=gen).float(),
    }
    optim, aug = OptimConfig(), AugmentConfig()

    def step() -> None:
        x = augment_batch(images, aug, size, gen).contiguous(memory_format=fmt)
        with autocast(torch.device("cpu"), precision):
            loss, _ = multitask_loss(model(x), targets, optim)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    results = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(steps):
            step()
        results.append(steps * batch_size / (time.perf_counter() - t))
    return Throughput(
        arch,
        size,
        batch_size,
        threads,
        memory_format,
        frozen_blocks,
        precision,
        statistics.median(results),
        max(results),
        tuple(round(r, 1) for r in results),
        os.getloadavg()[0],
    )


def main(argv: list[str] | None = None) -> int:
    """Command line: print one line per input size and memory format."""
    p = argparse.ArgumentParser(prog="python -m facelens.train.bench", description=__doc__)
    p.add_argument("--arch", default="mobilenet_v2")
    p.add_argument("--sizes", type=int, nargs="+", default=[96, 112])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--memory-format",
        nargs="+",
        choices=["channels_last", "contiguous"],
        default=["channels_last"],
        help="memory order(s) of weights and batches to time (training uses channels_last unless "
        "train.channels_last is false)",
    )
    p.add_argument(
        "--frozen-blocks",
        type=int,
        nargs="+",
        default=[0],
        help="first backbone blocks to freeze (model.frozen_blocks); several values are timed one after another",
    )
    p.add_argument(
        "--precision",
        nargs="+",
        choices=list(PRECISIONS),
        default=["fp32"],
        help="fp32, or bf16 autocast of the forward pass and losses (train.precision); several are timed in turn",
    )
    args = p.parse_args(argv)
    settings = itertools.product(args.sizes, args.memory_format, args.frozen_blocks, args.precision)
    for size, fmt, frozen, precision in settings:
        r = measure_throughput(args.arch, size, args.batch_size, args.steps, args.rounds, fmt, frozen, precision)
        print(
            f"{r.arch} {r.size}px batch {r.batch_size} {r.memory_format} {r.precision}, "
            f"{r.frozen_blocks} frozen blocks, {r.threads} threads: "
            f"median {r.median:.1f} img/s, best {r.best:.1f} img/s, rounds {list(r.rounds)}, "
            f"load average {r.load_average:.2f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""One-factor comparisons on the same data: the augmentation ablation, or any ``KEY=V1,V2,...`` variation.

Augmentation arms switch the engine's :class:`~facelens.train.config.AugmentConfig` fields on one group at a
time, at the strengths the recipe gives (or the engine's defaults where the recipe has 0):

======================  =============================================
``none``                every augmentation off
``flip``                horizontal flip only
``rotation``            rotation only (``rotate``)
``brightness_contrast`` brightness and contrast jitter only
``warp``                translation only (``shift``, the remaining part of the engine's similarity warp)
``zoom``                zoom only (``scale``)
``all``                 the recipe's full augmentation
======================  =============================================

With ``vary`` (e.g. ``model.arch=mobilenet_v2,custom_cnn``) the arms are the recipe with each value instead,
which is how architectures are compared on identical data. Every arm trains on the same view (the recipe's
train / val splits, task rows, optional caps) and is evaluated on the same test rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from .common import Limits, experiment_view, metrics_line
from .records import ExperimentError, write_json
from .runner import ModelResult, train_and_evaluate, with_out_dir
from .selection import get_task
from .tracking import NullTracker, Tracker

AUGMENT_ARMS: dict[str, tuple[str, ...]] = {
    "none": (),
    "flip": ("flip",),
    "rotation": ("rotate",),
    "brightness_contrast": ("brightness", "contrast"),
    "warp": ("shift",),
    "zoom": ("scale",),
    "all": ("flip", "rotate", "brightness", "contrast", "shift", "scale"),
}
"""Arm name -> the AugmentConfig fields it switches on (all others are 0)."""


@dataclass(frozen=True)
class AblationOptions:
    """Options of an ablation.

    Attributes:
        task: Task to evaluate.
        arms: Augmentation arms to run (names of :data:`AUGMENT_ARMS`); ignored when ``vary`` is given.
        vary: ``KEY=V1,V2,...`` config variations (each value is one arm) instead of augmentation arms.
        limits: Row caps.
        age_scheme: Age-group scheme.
        single_task: Train and select models on the task's labels only.

    """

    task: str = "gender"
    arms: tuple[str, ...] = tuple(AUGMENT_ARMS)
    vary: tuple[str, ...] = ()
    limits: Limits = Limits()
    age_scheme: str = "utkface"
    single_task: bool = False


def augment_arm(config: Any, arm: str) -> Any:
    """The recipe's AugmentConfig with only the fields of ``arm`` switched on."""
    from ..train.config import AugmentConfig

    if arm not in AUGMENT_ARMS:
        raise ExperimentError(f"unknown augmentation arm {arm!r}; known: {', '.join(AUGMENT_ARMS)}")
    defaults, recipe = AugmentConfig(), config.augment
    values = {}
    for f in ("flip", "rotate", "brightness", "contrast", "shift", "scale"):
        strength = getattr(recipe, f) or getattr(defaults, f)
        values[f] = strength if f in AUGMENT_ARMS[arm] else 0.0
    return AugmentConfig(**values)


def arm_configs(config: Any, options: AblationOptions) -> list[tuple[str, Any]]:
    """``(arm name, config)`` of every arm."""
    from ..train.config import apply_overrides

    if not options.vary:
        return [(a, replace(config, augment=augment_arm(config, a))) for a in options.arms]
    arms = []
    for item in options.vary:
        key, _, values = item.partition("=")
        if not key or not values:
            raise ExperimentError(f"--vary expects KEY=V1,V2,..., got {item!r}")
        arms += [
            (f"{key.strip()}={v.strip()}", apply_overrides(config, [f"{key.strip()}={v.strip()}"]))
            for v in values.split(",")
        ]
    return arms


def run_ablation(
    config: Any,
    options: AblationOptions,
    out_dir: Path,
    cache: str | Path | None = None,
    tracker: Tracker | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train and evaluate every arm (resuming at the first arm without a result); writes ``summary.json``."""
    tracker = tracker or NullTracker()
    task = get_task(options.task, options.age_scheme)
    view = experiment_view(config, task, options, out_dir, cache, progress)
    results: list[ModelResult] = []
    with tracker.run(
        f"ablation-{config.name}", {"ablation": asdict(options)}, {"facelens.kind": "ablation"}, key_dir=out_dir
    ):
        for i, (arm, cfg) in enumerate(arm_configs(config, options)):
            safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in arm)
            res = train_and_evaluate(
                arm,
                with_out_dir(cfg, out_dir / f"arm_{i + 1:02d}_{safe}"),
                view,
                task,
                options.age_scheme,
                tracker,
                progress,
                extra={"arm": arm, "augment": asdict(cfg.augment)},
                tags={"facelens.kind": "ablation-arm"},
            )
            assert res is not None
            results.append(res)
            print(f"{arm}: " + metrics_line(res.test), flush=True)
    summary = {
        "kind": "ablation",
        "task": task.name,
        "positive": task.positive,
        "varied": list(options.vary) or ["augment"],
        "single_task": options.single_task,
        "arms": [r.to_dict() for r in results],
    }
    write_json(out_dir / "summary.json", summary)
    return summary

"""Training toolkit: recipes, preprocessing cache, multi-task networks, training loop and ONNX export.

Needs the ``train`` extra (torch, torchvision, onnx, pyyaml, tqdm). ``import facelens`` never imports this
package, and importing ``facelens.train`` itself is cheap: the submodules load torch when first used::

    from facelens.train import load_config, train, export_onnx

    result = train(load_config("recipes/mtl_mobilenetv2.yaml"))
    export_onnx(result.best_checkpoint, "model.onnx")
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": "config",
    "ConfigError": "config",
    "load_config": "config",
    "save_config": "config",
    "apply_overrides": "config",
    "build_cache": "cache",
    "open_cache": "cache",
    "ARCHITECTURES": "models",
    "MultiTaskNet": "models",
    "create_model": "models",
    "register_arch": "models",
    "ensure_imagenet_weights": "models",
    "TrainResult": "engine",
    "train": "engine",
    "evaluate_checkpoint": "engine",
    "export_onnx": "export",
    "quantize_int8": "export",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

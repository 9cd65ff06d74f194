"""Find installed head models by name.

Models are ONNX files with facelens metadata, looked up in (first match wins):

1. the folders listed in the ``FACELENS_MODEL_PATH`` environment variable (``os.pathsep``-separated);
2. the ``models/`` folder shipped inside the facelens package.

Nothing is loaded until asked for; listing reads only metadata.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from .metadata import ModelMetadata
from .runtime import read_metadata

PACKAGE_MODEL_DIR = Path(__file__).resolve().parent.parent / "models"


def model_dirs() -> list[Path]:
    """Folders searched for models, in priority order."""
    env = os.environ.get("FACELENS_MODEL_PATH", "")
    dirs = [Path(p) for p in env.split(os.pathsep) if p]
    return [*dirs, PACKAGE_MODEL_DIR]


@dataclass(frozen=True)
class ModelInfo:
    """An installed model: its file and metadata."""

    path: Path
    metadata: ModelMetadata

    @property
    def name(self) -> str:
        """The model's name."""
        return self.metadata.name


def list_models(strict: bool = False) -> list[ModelInfo]:
    """All installed models, in search order, without duplicates by name.

    Args:
        strict: Raise on an ONNX file without valid facelens metadata instead of skipping it with a warning.

    """
    seen: set[str] = set()
    out: list[ModelInfo] = []
    for d in model_dirs():
        if not d.is_dir():
            continue
        for f in sorted(d.glob("*.onnx")):
            try:
                meta = read_metadata(f)
            except ModelError as exc:
                if strict:
                    raise
                warnings.warn(f"facelens: skipping {exc}", stacklevel=2)
                continue
            if meta.name not in seen:
                seen.add(meta.name)
                out.append(ModelInfo(f, meta))
    return out


def find_model(name: str) -> ModelInfo:
    """The installed model with this name, or a file path to an ONNX model.

    Raises:
        ModelError: If no such model is installed (the message lists the installed ones).

    """
    if name.endswith(".onnx") or os.sep in name:
        p = Path(name)
        return ModelInfo(p, read_metadata(p))
    models = list_models()
    for m in models:
        if m.name == name:
            return m
    known = ", ".join(m.name for m in models) or "none"
    raise ModelError(f"no head model named {name!r} is installed (installed: {known})")

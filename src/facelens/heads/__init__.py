"""Attribute heads: ONNX models carrying their own preprocessing metadata, found by name."""

from .metadata import InputSpec, ModelMetadata, OutputSpec
from .registry import ModelInfo, find_model, list_models, model_dirs
from .runtime import HeadModel, HeadOutputs, read_metadata, unanswered_tasks

__all__ = [
    "HeadModel",
    "HeadOutputs",
    "InputSpec",
    "ModelInfo",
    "ModelMetadata",
    "OutputSpec",
    "find_model",
    "list_models",
    "model_dirs",
    "read_metadata",
    "unanswered_tasks",
]

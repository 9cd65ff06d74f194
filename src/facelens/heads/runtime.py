"""Run attribute-head models (ONNX) on aligned faces and decode their outputs into typed predictions."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..align import Template, align_faces
from ..errors import ModelError
from ..types import Age, Detection, Label
from .metadata import TASKS, ModelMetadata


def read_metadata(path: str | os.PathLike) -> ModelMetadata:
    """Read and validate the facelens metadata of an ONNX file.

    Uses an ONNX Runtime session with graph optimisation off (about 8 ms for the shipped 9 MB model), so that a
    file ONNX Runtime cannot load, or whose metadata names inputs, outputs or label counts the graph does not
    have, is refused here, not at the first image.

    Raises:
        ModelError: If the file is missing, unreadable, lacks facelens metadata, or its metadata does not match
            the graph.

    """
    import onnxruntime as ort

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"model file not found: {p}")
    try:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"{p}: not a loadable ONNX model ({exc})") from exc
    meta = ModelMetadata.from_props(dict(sess.get_modelmeta().custom_metadata_map), source=str(p))
    if problem := _graph_mismatch(meta, {i.name: i.shape for i in sess.get_inputs()}, sess.get_outputs()):
        raise ModelError(f"{p}: the metadata does not match the ONNX graph: {problem}")
    return meta


def _graph_mismatch(meta: ModelMetadata, inputs: dict[str, list], outputs: list) -> str | None:
    """How the metadata disagrees with the graph's inputs and outputs (static sizes only), or None."""
    shape = inputs.get(meta.input.name)
    if shape is None:
        return f"no input named {meta.input.name!r} (the graph's: {sorted(inputs)})"
    want = [3, meta.input.size, meta.input.size]
    if len(shape) != 4 or any(isinstance(d, int) and d != w for d, w in zip(shape[1:], want, strict=True)):
        return f"input {meta.input.name!r} has shape {shape}, not [batch, {', '.join(map(str, want))}]"
    graph = {o.name: o.shape for o in outputs}
    for o in meta.outputs:
        if o.name not in graph:
            return f"no output named {o.name!r} (the graph's: {sorted(graph)})"
        width = graph[o.name][-1] if graph[o.name] else None
        if o.labels and isinstance(width, int) and width != len(o.labels):
            return f"output {o.name!r} has {width} values per face but {len(o.labels)} labels"
    return None


class CropSpec(NamedTuple):
    """How a head model wants its faces cropped: an alignment template and a square crop size.

    Hashable, so heads that share one can share the crops: :class:`facelens.pipeline.FaceAnalyzer` aligns each
    image's faces once per distinct spec among its heads.

    Attributes:
        template: The canonical landmark layout the model was trained with.
        size: Side of the square crop in pixels (the model's input size).

    """

    template: Template
    size: int

    def align(self, image: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
        """Aligned ``(N, size, size, 3)`` uint8 crops of the detected faces of an RGB image."""
        return align_faces(image, [d.landmarks.to_array() for d in detections], self.size, self.template)


@dataclass(frozen=True)
class HeadOutputs:
    """Decoded predictions for a batch of faces; each list has one entry per face, or is None if not answered."""

    age: list[Age] | None = None
    gender: list[Label] | None = None
    race: list[Label] | None = None
    attributes: list[dict[str, float]] | None = None


class HeadModel:
    """An ONNX head model with its metadata: aligns faces, batches them, runs, and decodes.

    The steps are separate so that heads with the same :attr:`crop_spec` can share one alignment:
    ``crops = head.crop_spec.align(image, detections)``, then ``head.decode(head.run_crops(crops))`` per head;
    :meth:`run` does all three for one head. The ONNX Runtime session is created on first use. ``run`` and
    ``run_crops`` are safe to call from several threads.

    Args:
        path: The ``.onnx`` file.
        threads: ONNX Runtime intra-op threads (``0``: ONNX Runtime's default).

    """

    def __init__(self, path: str | os.PathLike, threads: int = 0) -> None:
        self.path = Path(path)
        self.metadata = read_metadata(self.path)
        self.threads = threads
        self._session = None
        self._lock = threading.Lock()
        align = self.metadata.alignment
        try:
            self.template = Template.from_dict(align)
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelError(f"{self.path}: malformed alignment template in metadata ({exc})") from exc
        m = self.metadata.input
        self._mean = np.asarray(m.mean, np.float32).reshape(1, 3, 1, 1)
        self._inv_std = (1.0 / np.asarray(m.std, np.float32)).reshape(1, 3, 1, 1)

    @property
    def name(self) -> str:
        """The model's name from its metadata."""
        return self.metadata.name

    @property
    def tasks(self) -> tuple[str, ...]:
        """Tasks the model answers (age, gender, race, attributes)."""
        return self.metadata.tasks

    @property
    def crop_spec(self) -> CropSpec:
        """The alignment template and input size of the model: heads with equal specs take the same crops."""
        return CropSpec(self.template, self.metadata.input.size)

    def _get_session(self):  # noqa: ANN202 - onnxruntime type
        if self._session is None:
            with self._lock:
                if self._session is None:
                    import onnxruntime as ort

                    opts = ort.SessionOptions()
                    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                    # Idle ONNX Runtime threads spin after each call and steal the CPU from the detector that runs
                    # next (measured: 29.9 -> 15.4 ms per 640x480 frame with one face on 2 cores).
                    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
                    if self.threads:
                        opts.intra_op_num_threads = self.threads
                    self._session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        return self._session

    def align(self, image: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
        """Aligned ``(N, S, S, 3)`` uint8 crops of the detected faces, as this model expects them.

        The same as ``self.crop_spec.align(image, detections)``.
        """
        return self.crop_spec.align(image, detections)

    def preprocess(self, crops: np.ndarray) -> np.ndarray:
        """Normalise ``(N, S, S, 3)`` uint8 RGB crops into the model's float32 NCHW input."""
        x = crops.astype(np.float32).transpose(0, 3, 1, 2) * np.float32(1.0 / 255.0)
        return np.ascontiguousarray((x - self._mean) * self._inv_std)

    def run_crops(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """Run the model on aligned crops; returns ``task -> (N, ...)`` probabilities."""
        if len(crops) == 0:
            return {}
        sess = self._get_session()
        x = self.preprocess(crops)
        if self.metadata.test_time_flip:
            x = np.concatenate([x, x[:, :, :, ::-1]], axis=0)
        names = [o.name for o in self.metadata.outputs]
        outs = sess.run(names, {self.metadata.input.name: x})
        result = {}
        for spec, out in zip(self.metadata.outputs, outs, strict=True):
            if self.metadata.test_time_flip:
                out = 0.5 * (out[: len(crops)] + out[len(crops) :])
            result[spec.task] = out
        return result

    def decode(self, probs: dict[str, np.ndarray]) -> HeadOutputs:
        """Turn raw probabilities into typed predictions."""
        specs = {o.task: o for o in self.metadata.outputs}
        age = gender = race = attrs = None
        if "age" in probs:
            age = [self._decode_age(p) for p in probs["age"]]
        if "gender" in probs:
            gender = [_label(p, specs["gender"].labels) for p in probs["gender"]]
        if "race" in probs:
            race = [_label(p, specs["race"].labels) for p in probs["race"]]
        if "attributes" in probs:
            names = specs["attributes"].labels
            attrs = [{n: float(v) for n, v in zip(names, p, strict=True)} for p in probs["attributes"]]
        return HeadOutputs(age, gender, race, attrs)

    def run(self, image: np.ndarray, detections: Sequence[Detection]) -> HeadOutputs:
        """Align, run and decode all faces of one image in a single batch (one head; see :attr:`crop_spec`).

        Args:
            image: ``H x W x 3`` uint8 RGB image.
            detections: The faces to analyse.

        Returns:
            One prediction per face for each task the model answers; empty (the model not run) without faces.

        """
        if not detections:
            return HeadOutputs()
        return self.decode(self.run_crops(self.align(image, detections)))

    def _decode_age(self, p: np.ndarray) -> Age:
        from ..labels import age_group_label, nearest_group

        md = self.metadata
        mean, lo, hi = age_intervals(np.asarray(p)[None], md.age_min, md.interval_mass or md.interval_coverage)
        groups = {}
        for scheme, ranges in md.age_groups.items():
            idx = nearest_group(float(mean[0]), ranges)
            groups[scheme] = age_group_label(int(ranges[idx][0]), int(ranges[idx][1]))
        return Age(
            years=float(mean[0]), interval=(float(lo[0]), float(hi[0])), groups=groups, coverage=md.interval_coverage
        )


def age_intervals(probs: np.ndarray, age_min: int, mass: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected ages and central intervals of age distributions (the rule the runtime answers with).

    Args:
        probs: ``(N, K)`` probabilities over the years ``age_min .. age_min + K - 1`` (renormalised here).
        age_min: Year of the first bin.
        mass: Central probability mass each interval spans, e.g. 0.8: from the year where the cumulative
            probability first reaches 0.1 to the year where it first reaches 0.9.

    Returns:
        ``(mean, lo, hi)``, each ``(N,)``; every interval contains its mean.

    """
    p = np.asarray(probs, np.float64)
    p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)
    years = np.arange(p.shape[1], dtype=np.float64) + age_min
    mean = p @ years
    cdf = np.cumsum(p, axis=1)
    last = p.shape[1] - 1
    lo = years[np.minimum((cdf < (1 - mass) / 2).sum(axis=1), last)]  # == np.searchsorted(cdf_row, q) per row
    hi = years[np.minimum((cdf < 1 - (1 - mass) / 2).sum(axis=1), last)]
    return mean, np.minimum(lo, mean), np.maximum(hi, mean)


def _label(p: np.ndarray, labels: tuple[str, ...]) -> Label:
    i = int(np.argmax(p))
    return Label(labels[i], float(p[i]), {n: float(v) for n, v in zip(labels, p, strict=True)})


def unanswered_tasks(heads: Sequence[HeadModel]) -> list[str]:
    """The tasks (age, gender, race, attributes; in that order) that none of ``heads`` answers."""
    answered = {t for h in heads for t in h.tasks}
    return [t for t in TASKS if t not in answered]

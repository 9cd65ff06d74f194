"""Age-interval calibration: the fitted mass reaches the coverage on the faces it was fitted on, and no less."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facelens.cli import main as cli_main
from facelens.heads.runtime import age_intervals
from facelens.train.calibrate import MASS_GRID, fit_interval_mass, validation_age_probs
from facelens.train.config import ConfigError
from facelens.train.export import read_metadata

YEARS = np.arange(101, dtype=np.float64)


def gaussian_faces(n: int, model_sigma: float, true_sigma: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Distributions of width ``model_sigma`` around random centres; true ages spread by ``true_sigma``."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(20, 80, n)
    probs = np.exp(-0.5 * ((YEARS[None] - centres[:, None]) / model_sigma) ** 2)
    ages = np.clip(np.round(centres + rng.normal(0, true_sigma, n)), 0, 100)
    return probs, ages


def coverage(probs: np.ndarray, ages: np.ndarray, mass: float) -> float:
    _, lo, hi = age_intervals(probs, 0, mass)
    return float(np.mean((ages >= lo) & (ages <= hi)))


@pytest.mark.parametrize(("model_sigma", "true_sigma"), [(4.0, 8.0), (8.0, 4.0), (6.0, 6.0)])
def test_fitted_mass_is_the_smallest_reaching_the_coverage(model_sigma: float, true_sigma: float) -> None:
    probs, ages = gaussian_faces(2000, model_sigma, true_sigma)
    mass = fit_interval_mass(probs, ages, 0, 0.8)
    assert coverage(probs, ages, mass) >= 0.8
    smaller = MASS_GRID[MASS_GRID < mass]
    assert len(smaller) == 0 or coverage(probs, ages, float(smaller[-1])) < 0.8
    if model_sigma < true_sigma:  # an over-confident model needs a wider interval than its nominal 80%
        assert mass > 0.8
    elif model_sigma > true_sigma:
        assert mass < 0.8


def test_age_intervals_match_the_per_face_rule() -> None:
    probs, _ = gaussian_faces(50, 5.0, 5.0, seed=1)
    mean, lo, hi = age_intervals(probs, 3, 0.8)
    for i, p in enumerate(probs):
        cdf = np.cumsum(p / p.sum())
        years = YEARS + 3
        assert mean[i] == pytest.approx(float((p / p.sum()) @ years))
        assert lo[i] == min(years[np.searchsorted(cdf, 0.1)], mean[i])
        assert hi[i] == max(years[min(np.searchsorted(cdf, 0.9), 100)], mean[i])


def test_no_faces_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no faces"):
        fit_interval_mass(np.zeros((0, 101)), np.zeros(0), 0)


def test_export_calibrates_on_the_validation_faces(trained_checkpoint: Path, tmp_path: Path) -> None:
    probs, ages = validation_age_probs(trained_checkpoint)
    assert len(probs) == len(ages) == 3 and np.allclose(probs.sum(axis=1), 1, atol=1e-5)  # the tiny cache: 3 val
    assert cli_main(["export", str(trained_checkpoint), "--out", str(tmp_path / "c.onnx"), "--calibrate-interval"]) == 0
    assert read_metadata(tmp_path / "c.onnx").interval_mass == fit_interval_mass(probs, ages, 0, 0.8)
    assert cli_main(["export", str(trained_checkpoint), "--out", str(tmp_path / "p.onnx")]) == 0
    assert read_metadata(tmp_path / "p.onnx").interval_mass is None

"""Metric functions of facelens.eval.metrics against values computed by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from facelens.eval import metrics as M
from facelens.labels import GENDERS, RACES


def test_age_mae_overall_and_by_decade() -> None:
    m = M.age_metrics([5, 15, 25, 27], [7, 10, 25, 30])  # errors +2, -5, 0, +3
    assert m.n == 4
    assert m.mae == pytest.approx(2.5)
    assert m.bias == pytest.approx(0.0)
    assert m.rmse == pytest.approx(math.sqrt((4 + 25 + 0 + 9) / 4))
    assert m.median_ae == pytest.approx(2.5)
    assert [(g.group, g.n) for g in m.by_decade] == [("0-9", 1), ("10-19", 1), ("20-29", 2)]
    assert m.decade("20-29").value == pytest.approx(1.5)
    assert m.decade("10-19").value == pytest.approx(5.0)
    with pytest.raises(KeyError):
        m.decade("30-39")


def test_decade_labels_cap_at_100() -> None:
    assert [M.decade_label(a) for a in (0, 9.9, 10, 99, 100, 116)] == ["0-9", "0-9", "10-19", "90-99", "100+", "100+"]


def test_age_metrics_empty_is_nan_and_json_null() -> None:
    m = M.age_metrics([], [])
    assert m.n == 0 and math.isnan(m.mae)
    d = m.to_dict()
    assert d["mae"] is None and d["by_decade"] == []
    json.dumps(d, allow_nan=False)


def test_adience_exact_and_one_off() -> None:
    # true 30 -> 25-32 (4), pred 36 -> nearest 38-43 (5): 1-off
    # true 10 -> 8-12 (2), pred 30 -> 25-32 (4): off by 2
    # true range (8, 23) -> midpoint 15.5 -> 15-20 (3); pred 17 -> 15-20: exact
    # true 70 -> 60+ (7), pred 65 -> 60+: exact
    g = M.age_group_accuracy([30, 10, 0, 70], [36, 30, 17, 65], "adience", [None, None, (8, 23), None])
    assert g.n == 4
    assert g.exact == pytest.approx(0.5)
    assert g.one_off == pytest.approx(0.75)
    assert g.labels[3] == "15-20" and g.labels[-1] == "60+"
    assert g.confusion[4][5] == 1 and g.confusion[2][4] == 1 and g.confusion[3][3] == 1 and g.confusion[7][7] == 1
    assert sum(map(sum, g.confusion)) == 4


def test_utkface_twelve_groups() -> None:
    # 2 -> 0-2 (0) vs 4 -> 3-9 (1): 1-off; 27 -> 26-30 vs 29 -> same: exact; 50 -> 46-55 (8) vs 70 -> 66-80 (10)
    g = M.age_group_accuracy([2, 27, 50], [4, 29, 70], "utkface")
    assert g.exact == pytest.approx(1 / 3)
    assert g.one_off == pytest.approx(2 / 3)
    assert len(g.labels) == 12


def test_gender_accuracy_and_ethnicity_confusion() -> None:
    g = M.classification_metrics([0, 0, 1, 1, 1], [0, 1, 1, 1, 0], GENDERS)
    assert g.accuracy == pytest.approx(0.6)
    assert g.confusion == ((1, 1), (1, 2))
    assert g.recall("male").value == pytest.approx(0.5)
    assert g.recall("female").value == pytest.approx(2 / 3)
    assert g.balanced_accuracy == pytest.approx((0.5 + 2 / 3) / 2)

    r = M.classification_metrics([0, 0, 1, 2, 3, 4, 4], [0, 2, 1, 2, 0, 4, 3], RACES)
    assert r.accuracy == pytest.approx(4 / 7)
    assert len(r.confusion) == 5 and all(len(row) == 5 for row in r.confusion)
    assert r.confusion[0] == (1, 0, 1, 0, 0)
    assert r.confusion[3] == (1, 0, 0, 0, 0)
    assert r.confusion[4] == (0, 0, 0, 1, 1)
    with pytest.raises(ValueError):
        M.classification_metrics([0, 5], [0, 1], RACES)


def test_roc_auc_by_hand_with_and_without_sklearn(monkeypatch: pytest.MonkeyPatch) -> None:
    # positives 0.35, 0.8 vs negatives 0.1, 0.4: 3 of 4 pairs ordered -> 0.75
    assert M.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # a tie counts half: pairs (0.5 vs 0.5) 0.5, (0.5 vs 0.2) 1, (0.9 vs 0.5) 1, (0.9 vs 0.2) 1 -> 3.5 / 4
    assert M.roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == pytest.approx(0.875)
    assert math.isnan(M.roc_auc([1, 1], [0.2, 0.3]))
    rng = np.random.default_rng(0)
    t, s = rng.integers(0, 2, 200), np.round(rng.random(200), 1)  # many ties
    assert M._auc_numpy(t.astype(bool), s, int(t.sum()), int(200 - t.sum())) == pytest.approx(M.roc_auc(t, s))


def test_attribute_accuracy_auc_and_means() -> None:
    names = ("a", "b", "c")
    true = np.array([[1, 0, 1], [0, 0, 1], [1, 0, -1], [0, 0, 0]])
    scores = np.array([[0.9, 0.2, 0.6], [0.4, 0.7, 0.8], [0.3, 0.1, 0.5], [0.6, 0.3, 0.4]])
    m = M.attribute_metrics(true, scores, names)
    a, b, c = m.per_attribute
    assert a.accuracy == pytest.approx(0.5)  # 0.9 yes ok, 0.4 no ok, 0.3 no wrong, 0.6 yes wrong
    assert a.auc == pytest.approx(0.5)  # positives 0.9, 0.3 vs negatives 0.4, 0.6: 2 of 4 pairs
    assert b.accuracy == pytest.approx(0.75) and math.isnan(b.auc) and b.positive_rate == 0
    assert c.n == 3 and c.accuracy == pytest.approx(1.0) and c.auc == pytest.approx(1.0)  # -1 = unknown, left out
    assert m.mean_accuracy == pytest.approx((0.5 + 0.75 + 1.0) / 3)
    assert m.mean_auc == pytest.approx(0.75)  # NaN AUC of b left out
    assert b.majority_accuracy == 1.0
    assert m.attribute("c") is c
    json.dumps(m.to_dict(), allow_nan=False)


def test_fairness_gender_accuracy_by_ethnicity_gap_in_points() -> None:
    true = [0, 1, 0, 1, 0, 1, 1]
    pred = [0, 1, 1, 1, 0, 0, 1]
    race = [0, 0, 0, 0, 1, 1, 2]  # white 3/4, black 1/2, asian 1/1 (too small with min_count 2)
    g = M.accuracy_by_group(true, pred, race, RACES, "gender_accuracy", "race", min_count=2)
    assert g.group("white").value == pytest.approx(0.75) and g.group("white").n == 4
    assert g.group("black").value == pytest.approx(0.5)
    assert g.group("asian").n == 1 and g.group("indian").n == 0 and math.isnan(g.group("indian").value)
    assert g.gap == pytest.approx(0.25) and g.gap_points == pytest.approx(25.0)
    assert (g.best, g.worst) == ("white", "black")
    d = g.to_dict()
    assert d["gap_points"] == pytest.approx(25.0)
    json.dumps(d, allow_nan=False)
    g1 = M.accuracy_by_group(true, pred, race, RACES, min_count=1)
    assert g1.gap == pytest.approx(0.5) and g1.best == "asian"


def test_fairness_mae_by_group_and_undefined_gap() -> None:
    g = M.mae_by_group([20, 30, 40, 50], [22, 30, 30, 55], [0, 0, 1, 1], GENDERS, "gender")
    assert g.group("male").value == pytest.approx(1.0)  # errors 2, 0
    assert g.group("female").value == pytest.approx(7.5)  # errors 10, 5
    assert g.gap == pytest.approx(6.5) and g.gap_points == pytest.approx(6.5) and g.unit == "years"
    assert (g.best, g.worst) == ("male", "female")
    lonely = M.mae_by_group([20], [25], [0], GENDERS, "gender")
    assert math.isnan(lonely.gap) and lonely.best == "male"
    assert lonely.to_dict()["gap"] is None and lonely.to_dict()["gap_points"] is None


def test_interval_coverage() -> None:
    c = M.interval_coverage([10, 20, 30, 40, 60], [5, 21, 25, 41, 50], [15, 30, 30, 50, 55])
    # 10 in [5, 15]; 20 below [21, 30]; 30 in [25, 30] (inclusive); 40 below [41, 50]; 60 above [50, 55]
    assert c.coverage == pytest.approx(0.4)
    assert c.below == pytest.approx(0.4)
    assert c.above == pytest.approx(0.2)
    assert c.mean_width == pytest.approx((10 + 9 + 5 + 9 + 5) / 5)
    assert c.nominal == 0.8


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="length mismatch"):
        M.age_metrics([1, 2], [1])
    with pytest.raises(ValueError, match="length mismatch"):
        M.accuracy_by_group([0, 1], [0, 1], [0], GENDERS)

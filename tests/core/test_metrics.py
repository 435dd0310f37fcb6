"""Per-patch metrics on hand-made masks."""

from __future__ import annotations

import numpy as np
import pytest
from segexplain.core.engine.metrics import (
    HIST_BINS,
    HIST_LIMIT,
    HIST_WIDTH,
    confident_disagreement,
    confusion_counts,
    iou_from_counts,
    logit_histogram,
    patch_metrics,
    soft_errors,
    uncertainty,
)
from segexplain.core.errors import ConfigurationError
from segexplain.core.figures import overall_iou


def _masks():
    # patch 0: label 4 px, prediction 6 px overlapping 3 -> tp 3, fp 3, fn 1
    label0 = np.zeros((4, 4), np.uint8)
    label0[0, :4] = 1
    pred0 = np.zeros((4, 4), bool)
    pred0[0, 1:4] = True
    pred0[1, 0:3] = True
    # patch 1: both empty
    empty = np.zeros((4, 4), np.uint8)
    # patch 2: label only
    label2 = np.zeros((4, 4), np.uint8)
    label2[2:, 2:] = 1
    labels = np.stack([label0, empty, label2])
    preds = np.stack([pred0, empty.astype(bool), empty.astype(bool)])
    return labels, preds


def test_confusion_counts_by_hand():
    labels, preds = _masks()
    c = confusion_counts(preds, labels)
    assert c["tp"].tolist() == [3, 0, 0]
    assert c["fp"].tolist() == [3, 0, 0]
    assert c["fn"].tolist() == [1, 0, 4]
    assert c["tn"].tolist() == [9, 16, 12]


def test_confusion_counts_ignore_invalid_pixels():
    labels, preds = _masks()
    valid = np.ones_like(preds)
    valid[0, 1, :] = False           # drops the 3 false positives of patch 0
    c = confusion_counts(preds, labels, valid)
    assert c["fp"][0] == 0 and c["tp"][0] == 3 and c["tn"][0] == 9 - 1


@pytest.mark.parametrize("convention, empty_value", [("zero", 0.0), ("one", 1.0),
                                                     ("exclude", None)])
def test_iou_conventions(convention, empty_value):
    labels, preds = _masks()
    prob = preds.astype(np.float32)
    m = patch_metrics(prob, labels, np.ones_like(preds), convention)
    assert m["iou"][0] == pytest.approx(3 / 7)
    assert m["iou"][2] == 0.0                    # label only: a miss, whatever the convention
    if empty_value is None:
        assert np.isnan(m["iou"][1])
    else:
        assert m["iou"][1] == empty_value


def test_unknown_convention_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="half"):
        iou_from_counts(np.array([0]), np.array([0]), np.array([0]), "half")


def test_pixel_metrics_by_hand():
    labels, preds = _masks()
    m = patch_metrics(preds.astype(np.float32), labels, np.ones_like(preds))
    assert m["accuracy"][0] == pytest.approx(12 / 16)
    assert m["precision"][0] == pytest.approx(3 / 6)
    assert m["recall"][0] == pytest.approx(3 / 4)
    assert m["label_frac"].tolist() == pytest.approx([4 / 16, 0, 4 / 16])
    assert m["pred_frac"].tolist() == pytest.approx([6 / 16, 0, 0])
    assert np.isnan(m["precision"][1]) and np.isnan(m["recall"][1])   # undefined, not 0
    assert np.isnan(m["precision"][2]) and m["recall"][2] == 0.0


def test_fractions_only_over_valid_pixels():
    labels, preds = _masks()
    valid = np.zeros_like(preds)
    valid[:, :2, :] = True                        # top half only
    m = patch_metrics(preds.astype(np.float32), labels, valid)
    assert m["label_frac"][0] == pytest.approx(4 / 8)
    assert m["pred_frac"][0] == pytest.approx(6 / 8)


def test_no_valid_pixels_gives_nan():
    labels, preds = _masks()
    m = patch_metrics(preds.astype(np.float32), labels, np.zeros_like(preds), "one")
    for k in ("iou", "accuracy", "label_frac", "pred_frac", "entropy", "uncertain_frac"):
        assert np.isnan(m[k]).all(), k


def test_unlabelled_patches_have_nan_label_columns():
    _, preds = _masks()
    m = patch_metrics(preds.astype(np.float32), None, np.ones_like(preds))
    for k in ("iou", "accuracy", "precision", "recall", "label_frac"):
        assert np.isnan(m[k]).all(), k
    assert m["pred_frac"][0] == pytest.approx(6 / 16)


def test_uncertainty_features():
    prob = np.array([[[0.0, 1.0], [0.5, 0.9]]], np.float32)
    u = uncertainty(prob)
    assert u["entropy"][0] == pytest.approx((0 + 0 + 1.0 + 0.4689956) / 4, abs=1e-4)
    assert u["confidence"][0] == pytest.approx((1.0 + 0.5 + 0.9) / 3)
    assert u["uncertain_frac"][0] == pytest.approx(1 / 4)
    nothing = uncertainty(np.zeros((1, 2, 2), np.float32))
    assert np.isnan(nothing["confidence"][0]) and nothing["entropy"][0] < 1e-5


def test_overall_iou_is_total_intersection_over_total_union():
    assert overall_iou(np.array([3, 0]), np.array([3, 0]), np.array([1, 4])) == \
        pytest.approx(3 / 11)
    assert np.isnan(overall_iou(0, 0, 0))


def test_logit_histogram_counts_valid_pixels_by_logit():
    prob = np.array([[[0.0, 0.2, 0.4999, 0.5], [0.6, 0.99, 1.0, 0.3]]], np.float32)
    valid = np.ones_like(prob, dtype=bool)
    valid[0, 1, 3] = False
    h = logit_histogram(prob, valid)
    assert h.shape == (1, HIST_BINS) and h.dtype == np.int32 and h.sum() == 7
    assert h[0, HIST_BINS // 2:].sum() == 4          # p >= 0.5: the predicted pixels
    assert h[0, 0] == 1 and h[0, -1] == 1            # p = 0 and p = 1 land in the end bins
    z = np.log(0.99 / 0.01)                          # logit 4.6 -> bin (4.6 + 8) / 0.5
    assert h[0, int((z + HIST_LIMIT) / HIST_WIDTH)] == 1


def test_soft_errors_are_the_expected_confusion_of_calibrated_probabilities():
    prob = np.array([[[0.9, 0.6], [0.2, 0.0]]], np.float32)
    s = soft_errors(prob)
    assert s["soft_fp_frac"][0] == pytest.approx((0.1 + 0.4) / 4)
    assert s["soft_fn_frac"][0] == pytest.approx(0.2 / 4)


def test_confident_disagreement_counts_whole_objects_only():
    label = np.zeros((2, 32, 32), np.uint8)
    label[:, 2:12, 2:12] = 1
    prob = np.zeros((2, 32, 32), np.float32)
    prob[:, 2:12, 3:13] = 0.99              # the same building, one pixel to the right
    prob[0, 20:30, 2:12] = 0.6              # a partly missed roof's wing: unsure, no count
    d = confident_disagreement(prob, label)
    np.testing.assert_array_equal(d["conf_fp_frac"], [0.0, 0.0])
    np.testing.assert_array_equal(d["conf_fn_frac"], [0.0, 0.0])
    prob[1, 20:30, 20:30] = 0.95            # a confident building the label lacks (100 px)
    label[1, 2:10, 20:30] = 1               # a label where the model sees nothing (80 px)
    label[1, 28:31, 0:3] = 1                # a 9 px speck: too small to count
    d = confident_disagreement(prob, label)
    np.testing.assert_allclose(d["conf_fp_frac"], [0.0, 100 / 1024])
    np.testing.assert_allclose(d["conf_fn_frac"], [0.0, 80 / 1024])
    m = patch_metrics(prob, None, np.ones_like(label, dtype=bool))
    assert np.isnan(m["conf_fp_frac"]).all() and np.isnan(m["tp"]).all()
    assert m["logit_hist"].sum() == 2 * 1024

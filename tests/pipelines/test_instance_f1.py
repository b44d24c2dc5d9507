"""Instance F1: one-to-one matching of predicted and true nuclei at an IoU threshold."""

import numpy as np
import pytest

from pipelines.errors import ConfigurationError
from pipelines.segment.instance_f1 import iou_matrix, match_instances, mean_f1


def _square(labels: np.ndarray, value: int, y: int, x: int, side: int = 10) -> None:
    labels[y : y + side, x : x + side] = value


def test_exact_shifted_missed_and_extra_nuclei_are_counted() -> None:
    true = np.zeros((60, 60), np.int32)
    pred = np.zeros_like(true)
    _square(true, 1, 0, 0)
    _square(pred, 7, 0, 0)  # exact: IoU 1
    _square(true, 2, 20, 20)
    _square(pred, 9, 20, 25)  # shifted by half: 50 / 150 = IoU 1/3
    _square(true, 3, 40, 0)  # missed
    _square(pred, 4, 40, 40)  # extra
    at_50 = match_instances(true, pred, 0.5)
    assert (at_50.tp, at_50.fp, at_50.fn) == (1, 2, 2)
    assert at_50.f1 == pytest.approx(2 / 6)
    assert at_50.mean_iou == pytest.approx(1.0)
    at_30 = match_instances(true, pred, 0.3)
    assert (at_30.tp, at_30.fp, at_30.fn) == (2, 1, 1)
    assert at_30.f1 == pytest.approx(4 / 6)
    assert at_30.mean_iou == pytest.approx((1.0 + 1 / 3) / 2)
    assert at_30.precision == pytest.approx(2 / 3) and at_30.recall == pytest.approx(2 / 3)


def test_one_prediction_over_two_nuclei_matches_at_most_one() -> None:
    true = np.zeros((20, 40), np.int32)
    true[:, :20], true[:, 20:] = 1, 2
    pred = np.zeros_like(true)
    pred[:, 4:36] = 5  # IoU with each: 16 / 36 = 0.44
    iou, t_ids, p_ids = iou_matrix(true, pred)
    assert t_ids.tolist() == [1, 2] and p_ids.tolist() == [5]
    np.testing.assert_allclose(iou[:, 0], [16 / 36, 16 / 36])
    score = match_instances(true, pred, 0.3)
    assert (score.tp, score.fp, score.fn) == (1, 0, 1)
    assert match_instances(true, pred, 0.5).tp == 0


def test_assignment_maximises_matches_below_one_half() -> None:
    # Pred A overlaps true 1 best (0.39) and true 2 (0.34); pred B overlaps only true 1 (0.32).
    # Best-IoU-first would pair A with 1 and leave B and 2 unmatched; one to one, both match.
    true = np.zeros((20, 40), np.int32)
    true[:, :20], true[:, 20:] = 1, 2
    pred = np.zeros_like(true)
    pred[:10, :16] = 9
    pred[8:, :38] = 8
    iou, _, p_ids = iou_matrix(true, pred)
    a, b = p_ids.tolist().index(8), p_ids.tolist().index(9)
    np.testing.assert_allclose([iou[0, a], iou[1, a], iou[0, b], iou[1, b]],
                               [240 / 616, 216 / 640, 128 / 400, 0.0])
    score = match_instances(true, pred, 0.3)
    assert (score.tp, score.fp, score.fn) == (2, 0, 0)
    assert score.mean_iou == pytest.approx((216 / 640 + 128 / 400) / 2)


def test_empty_images_and_bad_input() -> None:
    empty = np.zeros((8, 8), np.int32)
    one = empty.copy()
    one[2:5, 2:5] = 3
    assert np.isnan(match_instances(empty, empty).f1)
    none_found = match_instances(one, empty)
    assert (none_found.tp, none_found.fn, none_found.f1) == (0, 1, 0.0)
    assert mean_f1([match_instances(one, one), none_found]) == pytest.approx(0.5)
    with pytest.raises(ConfigurationError, match="one shape"):
        match_instances(one, one[:4])
    with pytest.raises(ConfigurationError, match="iou_threshold"):
        match_instances(one, one, 0.0)

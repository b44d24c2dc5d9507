"""Instance segmentation F1: predicted and true nuclei matched one to one at an IoU threshold.

A true and a predicted nucleus form a pair when their intersection over union is at least the
threshold; pairs are chosen one to one to maximise the summed IoU (Hungarian assignment on the
IoU matrix, cut at the threshold). At a threshold of 0.5 or more every nucleus can overlap at
most one partner that well, so the assignment is unique; below 0.5 it is not, and the
assignment decides. Matched pairs are true positives, unmatched predictions false positives,
unmatched true nuclei false negatives; F1 = 2 TP / (2 TP + FP + FN).

pipelines/segment/quality.py's `match_score` matches greedily, best IoU first: the same result
at 0.5 and above; this module's assignment is the one to use below 0.5 (F1 at IoU 0.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipelines.errors import ConfigurationError
from pipelines.segment.quality import match_pairs


@dataclass(frozen=True)
class InstanceScore:
    """Counts and rates of one comparison; `mean_iou` is over the matched pairs (NaN if none)."""

    iou_threshold: float
    n_true: int
    n_pred: int
    tp: int
    fp: int
    fn: int
    mean_iou: float

    @property
    def precision(self) -> float:
        return self.tp / self.n_pred if self.n_pred else float("nan")

    @property
    def recall(self) -> float:
        return self.tp / self.n_true if self.n_true else float("nan")

    @property
    def f1(self) -> float:
        denom = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denom if denom else float("nan")


def iou_matrix(true: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(IoU (n_true, n_pred), true ids, predicted ids) of two label images of the same shape.

    The overlapping pairs come from one pass over the pixels (pipelines/segment/quality.py).
    """
    true, pred = np.asarray(true), np.asarray(pred)
    if true.shape != pred.shape:
        raise ConfigurationError(
            f"Label images to compare must have one shape; got true {true.shape} and predicted "
            f"{pred.shape}. Bring the prediction back onto the annotation's grid first."
        )
    t_of, p_of, iou, t_ids, p_ids = match_pairs(true, pred)
    matrix = np.zeros((t_ids.size, p_ids.size), dtype=np.float64)
    matrix[np.searchsorted(t_ids, t_of), np.searchsorted(p_ids, p_of)] = iou
    return matrix, t_ids, p_ids


def match_instances(
    true: np.ndarray, pred: np.ndarray, iou_threshold: float = 0.5
) -> InstanceScore:
    """TP/FP/FN of `pred` against `true` (int label images, 0 = background) at `iou_threshold`."""
    if not 0.0 < iou_threshold <= 1.0:
        raise ConfigurationError(f"iou_threshold must be in (0, 1], got {iou_threshold}.")
    iou, t_ids, p_ids = iou_matrix(true, pred)
    n_true, n_pred = t_ids.size, p_ids.size
    tp, mean_iou = 0, float("nan")
    if n_true and n_pred:
        eligible = np.where(iou >= iou_threshold, iou, 0.0)
        rows = np.flatnonzero(eligible.any(axis=1))
        cols = np.flatnonzero(eligible.any(axis=0))
        if rows.size:
            sub = eligible[np.ix_(rows, cols)]
            r, c = linear_sum_assignment(sub, maximize=True)
            matched = sub[r, c]
            matched = matched[matched >= iou_threshold]
            tp = int(matched.size)
            mean_iou = float(matched.mean()) if tp else float("nan")
    return InstanceScore(float(iou_threshold), int(n_true), int(n_pred), tp,
                         int(n_pred - tp), int(n_true - tp), mean_iou)


def mean_f1(scores: Sequence[InstanceScore]) -> float:
    """The mean of per-image F1 (images weigh alike, whatever their nucleus count)."""
    values = [s.f1 for s in scores if np.isfinite(s.f1)]
    return float(np.mean(values)) if values else float("nan")

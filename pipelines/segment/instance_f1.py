"""Instance segmentation F1: predicted and true nuclei matched one to one at an IoU threshold.

A true and a predicted nucleus form a pair when their intersection over union is at least the
threshold; pairs are chosen one to one to maximise the summed IoU (Hungarian assignment on the
IoU matrix, cut at the threshold). At a threshold of 0.5 or more every nucleus can overlap at
most one partner that well, so the assignment is unique; below 0.5 it is not, and the
assignment decides. Matched pairs are true positives, unmatched predictions false positives,
unmatched true nuclei false negatives; F1 = 2 TP / (2 TP + FP + FN).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipelines.errors import ConfigurationError


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

    Only overlapping pairs are counted (one pass over the pixels), so the cost grows with the
    image, not with n_true x n_pred.
    """
    true, pred = np.asarray(true), np.asarray(pred)
    if true.shape != pred.shape:
        raise ConfigurationError(
            f"Label images to compare must have one shape; got true {true.shape} and predicted "
            f"{pred.shape}. Bring the prediction back onto the annotation's grid first."
        )
    t_ids, t_inv = np.unique(true.ravel(), return_inverse=True)
    p_ids, p_inv = np.unique(pred.ravel(), return_inverse=True)
    t_area = np.bincount(t_inv, minlength=t_ids.size)
    p_area = np.bincount(p_inv, minlength=p_ids.size)
    both = (true.ravel() != 0) & (pred.ravel() != 0)
    pair = t_inv[both].astype(np.int64) * p_ids.size + p_inv[both]
    codes, inter = np.unique(pair, return_counts=True)
    ti, pi = np.divmod(codes, p_ids.size)
    t_keep, p_keep = t_ids != 0, p_ids != 0
    t_index = np.cumsum(t_keep) - 1
    p_index = np.cumsum(p_keep) - 1
    iou = np.zeros((int(t_keep.sum()), int(p_keep.sum())), dtype=np.float64)
    union = t_area[ti] + p_area[pi] - inter
    iou[t_index[ti], p_index[pi]] = inter / union
    return iou, t_ids[t_keep], p_ids[p_keep]


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

"""Segmentation quality against a ground-truth mask: instance matching by IoU, F1."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MatchScore:
    """Counts of true positives (IoU >= threshold, one-to-one), false positives/negatives."""

    true_positives: int
    false_positives: int
    false_negatives: int
    iou_threshold: float
    mean_matched_iou: float

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        real = self.true_positives + self.false_negatives
        return self.true_positives / real if real else 1.0

    @property
    def f1(self) -> float:
        denominator = 2 * self.true_positives + self.false_positives + self.false_negatives
        return 2 * self.true_positives / denominator if denominator else 1.0


def match_pairs(truth: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, ...]:
    """Every (truth label, predicted label, IoU) pair that overlaps, from one pass over pixels."""
    t = np.asarray(truth).ravel().astype(np.int64)
    p = np.asarray(predicted).ravel().astype(np.int64)
    both = (t != 0) & (p != 0)
    keys, inter = np.unique(t[both] << 32 | p[both], return_counts=True)
    t_of, p_of = keys >> 32, keys & 0xFFFFFFFF
    t_ids, t_area = np.unique(t[t != 0], return_counts=True)
    p_ids, p_area = np.unique(p[p != 0], return_counts=True)
    union = (t_area[np.searchsorted(t_ids, t_of)] + p_area[np.searchsorted(p_ids, p_of)] - inter)
    return t_of, p_of, inter / union, t_ids, p_ids


def match_score(truth: np.ndarray, predicted: np.ndarray, iou_threshold: float = 0.5) -> MatchScore:
    """Greedy one-to-one matching by IoU (exact for thresholds >= 0.5, where matches are unique)."""
    t_of, p_of, iou, t_ids, p_ids = match_pairs(truth, predicted)
    used_t: set[int] = set()
    used_p: set[int] = set()
    matched: list[float] = []
    for k in np.argsort(-iou, kind="stable"):
        if iou[k] < iou_threshold:
            break
        a, b = int(t_of[k]), int(p_of[k])
        if a in used_t or b in used_p:
            continue
        used_t.add(a)
        used_p.add(b)
        matched.append(float(iou[k]))
    tp = len(matched)
    return MatchScore(tp, int(p_ids.size) - tp, int(t_ids.size) - tp, iou_threshold,
                      float(np.mean(matched)) if matched else 0.0)

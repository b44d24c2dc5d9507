"""The algorithms on log1p intensities: Otsu's cut-off on a histogram, a two-Gaussian mixture
fitted by EM from the Otsu split, its separation (Ashman's D) and its crossing.
"""

from __future__ import annotations

import math

import numpy as np


def _otsu_log(values: np.ndarray, bins: int) -> float:
    """Otsu's cut-off on already log-transformed values (equal-width bins over their range)."""
    lo, hi = float(values.min()), float(values.max())
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    counts = counts.astype(np.float64)
    centres = (edges[:-1] + edges[1:]) / 2.0
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(counts * centres)
    mean_low = sum_low / np.maximum(weight_low, 1.0)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1.0)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    between[weight_high == 0] = -1.0
    between = between[:-1]
    first = int(np.argmax(between))
    # Across an empty gap between the populations the criterion is flat: cut in its middle.
    last = first
    while last + 1 < between.size and between[last + 1] >= between[first] * (1.0 - 1e-12):
        last += 1
    return float((edges[first + 1] + edges[last + 1]) / 2.0)


def _gaussian(x: np.ndarray, mean: float, var: float) -> np.ndarray:
    return np.exp(-0.5 * (x - mean) ** 2 / var) / math.sqrt(2.0 * math.pi * var)


def _gmm_log(
    values: np.ndarray, start: float, bins: int, iterations: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(weights, means, variances), ordered by mean, of a two-Gaussian mixture fitted by EM
    from the split at `start`; None when a component empties.

    EM runs on the histogram (bin centres weighted by counts, 4x the Otsu bins), so its cost
    does not grow with the number of nuclei and the result does not depend on row order.
    """
    counts, edges = np.histogram(values, bins=4 * bins, range=(values.min(), values.max()))
    x = (edges[:-1] + edges[1:]) / 2.0
    n = counts.astype(np.float64)
    low, high = x <= start, x > start
    if n[low].sum() < 2 or n[high].sum() < 2:
        return None
    width = float(edges[1] - edges[0])
    floor = max(width * width / 12.0, 1e-8)
    total_n = n.sum()
    mass = np.array([n[low].sum(), n[high].sum()])
    weights = mass / total_n
    means = np.array([(n[low] * x[low]).sum(), (n[high] * x[high]).sum()]) / mass
    variances = np.maximum(np.array([
        (n[low] * (x[low] - means[0]) ** 2).sum() / mass[0],
        (n[high] * (x[high] - means[1]) ** 2).sum() / mass[1],
    ]), floor)
    for _ in range(iterations):
        dens = np.stack([weights[k] * _gaussian(x, means[k], variances[k]) for k in (0, 1)])
        resp = dens / np.maximum(dens.sum(axis=0), 1e-300) * n
        mass = resp.sum(axis=1)
        if np.any(mass < 1e-9):
            return None
        weights = mass / total_n
        means = (resp @ x) / mass
        variances = np.maximum(
            np.array([(resp[k] * (x - means[k]) ** 2).sum() / mass[k] for k in (0, 1)]), floor
        )
    order = np.argsort(means)
    return weights[order], means[order], variances[order]


def _separation(m: np.ndarray, v: np.ndarray) -> float:
    """Ashman's D: distance of the means in units of the pooled SD; > 2 is a clean split."""
    return float(abs(m[1] - m[0]) * math.sqrt(2.0 / (v[0] + v[1])))


def _crossing(w: np.ndarray, m: np.ndarray, v: np.ndarray) -> float | None:
    """Where w0 N(x; m0, v0) = w1 N(x; m1, v1) between the two means, if anywhere."""
    # Solve w0 N(x; m0, v0) = w1 N(x; m1, v1) for x between the means.
    a = 1.0 / v[1] - 1.0 / v[0]
    b = 2.0 * (m[0] / v[0] - m[1] / v[1])
    c = (m[1] ** 2 / v[1] - m[0] ** 2 / v[0]
         + math.log(v[1] / v[0]) - 2.0 * math.log(w[1] / w[0]))
    if abs(a) < 1e-12:
        roots = [-c / b] if abs(b) > 1e-12 else []
    else:
        disc = b * b - 4.0 * a * c
        roots = [] if disc < 0 else [(-b + s * math.sqrt(disc)) / (2.0 * a) for s in (-1.0, 1.0)]
    between = [r for r in roots if m[0] < r < m[1]]
    return float(min(between)) if between else None

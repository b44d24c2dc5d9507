"""Per-slide stain thresholds: the paper's manual cut-offs, with an automatic suggestion beside.

A nucleus is positive for a stain when its mean intensity is greater than the slide's threshold
for that stain. Manual thresholds (a CSV a person keeps, the paper's method) win; every other
stain of the slide gets an automatic threshold from the slide's own distribution of per-nucleus
mean intensities, so per-slide brightness differences do not move the cut-off.

Automatic methods (deterministic: no random numbers, fixed bins and iterations, plain numpy),
both on log1p(mean intensity), so a per-slide gain is a shift:
- `otsu_log1p` (default): Otsu's threshold on a histogram of 256 equal bins between the
  smallest and largest value; the cut-off is the upper edge of the last bin of the lower class,
  or, when several cuts tie (an empty gap between the populations), the middle of the gap.
- `gmm2_log1p`: a two-component Gaussian mixture, started from the Otsu split; the cut-off is
  where the weighted densities of the two components cross between their means (posterior 1/2).
Both first fit the two-component mixture (a fixed 200 EM iterations on a 1024-bin histogram, so
the cost does not grow with the number of nuclei) to ask whether there are two populations at
all: when the components are not separated (Ashman's D below `min_separation`, default 2: one
population, e.g. a stain no nucleus of the slide carries) the cut-off is the mean + 3 SD of the
log1p intensities (or the Otsu cut-off if higher), so only outliers count as positive. The
note says when that, or another fallback, applied. On the synthetic cohort Otsu agrees better
with the true positivity (the mixture's crossing sits a little low when the negative
population has a spillover shoulder), hence the default.
A slide with fewer than `min_nuclei` nuclei, or no spread in a stain, gets its largest value as
threshold (no nucleus positive) and a note that says why.

Each slide's rows carry a `threshold_version`: a short hash of the (stain, threshold, source,
method) rows, which every label made with them carries too.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from pipelines.errors import ConfigurationError, StainError
from pipelines.stains import canonical_stain, stain_key

MEAN_PREFIX = "mean_"
METHODS: tuple[str, ...] = ("otsu_log1p", "gmm2_log1p")

THRESHOLD_SCHEMA: dict[str, pl.DataType] = {
    "slide_id": pl.Utf8(),
    "stain": pl.Utf8(),
    "stain_key": pl.Utf8(),
    "threshold": pl.Float64(),
    "source": pl.Utf8(),
    "method": pl.Utf8(),
    "set_by": pl.Utf8(),
    "note": pl.Utf8(),
    "threshold_version": pl.Utf8(),
}

AutoMethod = Literal["gmm2_log1p", "otsu_log1p"]


@dataclass(frozen=True)
class AutoThresholdParams:
    """How automatic thresholds are found (see the module docstring)."""

    method: AutoMethod = "otsu_log1p"
    bins: int = 256
    em_iterations: int = 200
    min_nuclei: int = 20
    min_separation: float = 2.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigurationError(
                f"Unknown automatic threshold method {self.method!r}; use one of {METHODS}."
            )
        if self.bins < 8 or self.em_iterations < 1 or self.min_nuclei < 2:
            raise ConfigurationError(
                "Automatic thresholds need bins >= 8, em_iterations >= 1 and min_nuclei >= 2."
            )

    @property
    def label(self) -> str:
        """The method as stored beside each threshold, with the settings that shape it."""
        if self.method == "otsu_log1p":
            return (
                f"otsu_log1p(bins={self.bins},iterations={self.em_iterations},"
                f"min_d={self.min_separation})"
            )
        return (
            f"gmm2_log1p(bins={self.bins},iterations={self.em_iterations},"
            f"min_d={self.min_separation})"
        )


@dataclass(frozen=True)
class AutoThreshold:
    threshold: float
    method: str
    note: str


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


def auto_threshold(intensities: np.ndarray, params: AutoThresholdParams) -> AutoThreshold:
    """The automatic cut-off for one stain of one slide, in the slide's intensity units."""
    x = np.asarray(intensities, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < params.min_nuclei:
        return AutoThreshold(
            float(x.max()) if x.size else 0.0, params.label,
            f"too few nuclei ({x.size} < {params.min_nuclei}): threshold at the largest value, "
            "none positive",
        )
    if float(x.max()) == float(x.min()):
        return AutoThreshold(
            float(x.max()), params.label,
            "every nucleus has the same intensity: threshold at that value, none positive",
        )
    logs = np.log1p(np.clip(x, 0.0, None))
    if float(logs.max()) == float(logs.min()):
        return AutoThreshold(float(x.max()), params.label,
                             "no spread after log1p: threshold at the largest value, none positive")
    cut = _otsu_log(logs, params.bins)
    note = ""
    fitted = _gmm_log(logs, cut, params.bins, params.em_iterations)
    if fitted is None:
        note = "mixture lost a component; Otsu cut-off used"
    elif _separation(fitted[1], fitted[2]) < params.min_separation:
        mean, sd = float(logs.mean()), float(logs.std())
        cut = max(cut, mean + 3.0 * sd)
        note = (
            f"no separate positive population (Ashman's D "
            f"{_separation(fitted[1], fitted[2]):.2f} < {params.min_separation}): "
            "cut-off at mean + 3 SD of log1p intensities"
        )
    elif params.method == "gmm2_log1p":
        crossing = _crossing(*fitted)
        if crossing is None:
            note = "mixture found no crossing between its means; Otsu cut-off used"
        else:
            cut = crossing
    return AutoThreshold(float(np.expm1(cut)), params.label, note)


def feature_stains(features: pl.DataFrame) -> dict[str, str]:
    """stain_key -> canonical stain for every `mean_<stain_key>` column of a feature frame."""
    out: dict[str, str] = {}
    for column in features.columns:
        if not column.startswith(MEAN_PREFIX):
            continue
        key = column[len(MEAN_PREFIX):]
        stain = canonical_stain(key)
        if stain_key(stain) != key:
            raise StainError(
                f"Feature column {column!r} does not name a stain by its key "
                f"(expected mean_{stain_key(stain)})."
            )
        out[key] = stain
    return out


def manual_for_slide(manual: pl.DataFrame, slide_id: str) -> pl.DataFrame:
    """The manual rows of one slide with canonical stain names and keys added."""
    rows = manual.filter(pl.col("slide_id") == slide_id)
    stains = [canonical_stain(s) for s in rows["stain"].to_list()]
    keys = [stain_key(s) for s in stains]
    if len(set(keys)) != len(keys):
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        raise StainError(
            f"Slide {slide_id!r}: the thresholds CSV sets {dupes} more than once "
            "(after spelling stains canonically); keep one row per stain."
        )
    return rows.with_columns(pl.Series("stain", stains), pl.Series("stain_key", keys))


def threshold_version(rows: pl.DataFrame) -> str:
    """Short hash of the thresholds that decide labels: (stain_key, threshold, source, method)."""
    digest = hashlib.sha256()
    for key, value, source, method in sorted(
        rows.select("stain_key", "threshold", "source", "method").iter_rows()
    ):
        digest.update(f"{key}\t{float(value)!r}\t{source}\t{method}\n".encode())
    return digest.hexdigest()[:12]


def manual_versions(manual: pl.DataFrame, slide_ids: Sequence[str]) -> dict[str, str]:
    """Per slide, a short hash of its manual rows (canonical stain, threshold, set_by, note).

    Editing the CSV changes the hash of exactly the slides whose rows changed, so only those
    slides need new thresholds and labels. A slide without manual rows hashes to "auto".
    """
    out: dict[str, str] = {}
    for slide_id in slide_ids:
        rows = manual_for_slide(manual, slide_id)
        if rows.height == 0:
            out[slide_id] = "auto"
            continue
        digest = hashlib.sha256()
        for key, value, set_by, note in sorted(
            rows.select("stain_key", "threshold", "set_by", "note").iter_rows()
        ):
            digest.update(f"{key}\t{float(value)!r}\t{set_by}\t{note}\n".encode())
        out[slide_id] = digest.hexdigest()[:12]
    return out


def slide_thresholds(
    slide_id: str,
    features: pl.DataFrame,
    manual: pl.DataFrame,
    params: AutoThresholdParams,
) -> pl.DataFrame:
    """One row per stain of the slide: manual where the CSV has it, automatic elsewhere.

    `features` is the slide's nucleus_features (mean_<stain_key> columns); `manual` holds the
    CSV rows (any slides; only this slide's are used). Columns as in THRESHOLD_SCHEMA.
    """
    stains = feature_stains(features)
    if not stains:
        raise StainError(f"Slide {slide_id!r}: its features have no mean_<stain> columns.")
    mine = manual_for_slide(manual, slide_id)
    unknown = sorted(
        row["stain"] for row in mine.iter_rows(named=True) if row["stain_key"] not in stains
    )
    if unknown:
        raise StainError(
            f"Slide {slide_id!r}: the thresholds CSV sets stain(s) {unknown} that the slide does "
            f"not have (it has {sorted(stains.values())}); fix the stain names in the CSV."
        )
    by_key = {row["stain_key"]: row for row in mine.iter_rows(named=True)}
    records = []
    for key, stain in sorted(stains.items()):
        if key in by_key:
            row = by_key[key]
            records.append((stain, key, float(row["threshold"]), "manual", "manual",
                            row["set_by"] or "", row["note"] or ""))
            continue
        found = auto_threshold(features[MEAN_PREFIX + key].to_numpy(), params)
        records.append((stain, key, found.threshold, "auto", found.method, "", found.note))
    frame = pl.DataFrame(
        records, schema=["stain", "stain_key", "threshold", "source", "method", "set_by", "note"],
        orient="row",
    )
    version = threshold_version(frame)
    return frame.with_columns(
        pl.lit(slide_id).alias("slide_id"), pl.lit(version).alias("threshold_version")
    ).select(list(THRESHOLD_SCHEMA)).cast(THRESHOLD_SCHEMA)


# The review figure's geometry (pixels) and colours: one panel per stain, six panels a row.
PANEL_W_PX, PANEL_H_PX, TITLE_H_PX, PANEL_MARGIN_PX, PANEL_COLUMNS = 192, 136, 22, 6, 6
HISTOGRAM_GREY, MANUAL_RED, AUTO_BLUE = (153, 153, 153), (214, 39, 40), (31, 119, 180)


def review_figure_png(
    slide_id: str, features: pl.DataFrame, thresholds: pl.DataFrame, *, bins: int = 64
) -> bytes:
    """A PNG grid, one panel per stain: histogram of log1p(mean intensity) with the threshold.

    Manual thresholds are drawn in red, automatic ones in blue; the title gives the share of
    nuclei above the threshold, so a person can spot a cut-off that needs correcting. Bar heights
    are log10(1 + count), so rare positive nuclei stay visible beside the negative bulk. Drawn
    with Pillow: every slide's labelling step draws one, and matplotlib cost several seconds each.
    """
    from PIL import Image, ImageDraw, ImageFont

    rows = thresholds.sort("stain_key").to_dicts()
    n_cols = min(PANEL_COLUMNS, max(1, len(rows)))
    n_rows = max(1, math.ceil(len(rows) / n_cols))
    image = Image.new("RGB", (n_cols * PANEL_W_PX, TITLE_H_PX + n_rows * PANEL_H_PX), "white")
    draw = ImageDraw.Draw(image)
    title_font, font, tick_font = (ImageFont.load_default(size=s) for s in (12, 10, 9))
    draw.text((image.width / 2, TITLE_H_PX / 2), f"{slide_id}: log1p(mean intensity) per "
              "nucleus, log10(1 + count)", fill="black", font=title_font, anchor="mm")
    for i, row in enumerate(rows):
        x0 = (i % n_cols) * PANEL_W_PX
        y0 = TITLE_H_PX + (i // n_cols) * PANEL_H_PX
        left, right = x0 + PANEL_MARGIN_PX, x0 + PANEL_W_PX - PANEL_MARGIN_PX
        top, bottom = y0 + 16, y0 + PANEL_H_PX - 16
        values = features[MEAN_PREFIX + row["stain_key"]].to_numpy().astype(np.float64)
        values = values[np.isfinite(values)]
        logs = np.log1p(np.clip(values, 0.0, None))
        cut = math.log1p(max(row["threshold"], 0.0))
        lo, hi = (min(float(logs.min()), cut), max(float(logs.max()), cut)) if logs.size \
            else (0.0, max(cut, 1.0))
        counts, _ = np.histogram(logs, bins=bins, range=(lo, hi + 1e-9))
        heights = np.log10(1.0 + counts)
        scale = (bottom - top) / max(float(heights.max()), 1e-9)
        width = (right - left) / bins
        for b in np.flatnonzero(heights):
            draw.rectangle((left + b * width, bottom - heights[b] * scale,
                            left + (b + 1) * width, bottom), fill=HISTOGRAM_GREY)
        draw.line((left, bottom, right, bottom), fill="black")
        at = round(left + (cut - lo) / (hi + 1e-9 - lo) * (right - left))
        colour = MANUAL_RED if row["source"] == "manual" else AUTO_BLUE
        draw.line((at, top, at, bottom), fill=colour, width=2)
        share = float((values > row["threshold"]).mean()) if values.size else 0.0
        draw.text(((left + right) / 2, y0 + 8), f"{row['stain']} ({row['source']}) "
                  f"{100 * share:.1f}% +", fill="black", font=font, anchor="mm")
        draw.text((left, bottom + 3), f"{lo:.1f}", fill="black", font=tick_font, anchor="lt")
        draw.text((right, bottom + 3), f"{hi:.1f}", fill="black", font=tick_font, anchor="rt")
    buffer = io.BytesIO()
    image.save(buffer, format="png")
    return buffer.getvalue()

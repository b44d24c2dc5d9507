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

One module per part: parameters (`params`), the algorithms (`mixture`), one stain's automatic
cut-off (`auto`), the per-slide table and its versions (`table`) and the review figure (`figure`).
"""

from pipelines.thresholds.auto import auto_threshold
from pipelines.thresholds.figure import (
    AUTO_BLUE,
    HISTOGRAM_GREY,
    MANUAL_RED,
    PANEL_H_PX,
    PANEL_MARGIN_PX,
    PANEL_W_PX,
    TITLE_H_PX,
    review_figure_png,
)
from pipelines.thresholds.params import (
    MEAN_PREFIX,
    METHODS,
    AutoMethod,
    AutoThreshold,
    AutoThresholdParams,
)
from pipelines.thresholds.table import (
    THRESHOLD_SCHEMA,
    feature_stains,
    manual_for_slide,
    manual_versions,
    slide_thresholds,
    threshold_version,
)

__all__ = [
    "AUTO_BLUE",
    "HISTOGRAM_GREY",
    "MANUAL_RED",
    "MEAN_PREFIX",
    "METHODS",
    "PANEL_H_PX",
    "PANEL_MARGIN_PX",
    "PANEL_W_PX",
    "THRESHOLD_SCHEMA",
    "TITLE_H_PX",
    "AutoMethod",
    "AutoThreshold",
    "AutoThresholdParams",
    "auto_threshold",
    "feature_stains",
    "manual_for_slide",
    "manual_versions",
    "review_figure_png",
    "slide_thresholds",
    "threshold_version",
]

"""Per-nucleus features of a whole slide in one streaming pass over its tiles.

For every nucleus of the mask: its stable `nucleus_id`, centroid (px and µm), half-open
bounding box, area, perimeter, eccentricity, solidity, major/minor axis (px) and the mean of
every stain. The columns match skimage's regionprops definitions (centroid = mean pixel
coordinate, axes = 4 sqrt(eigenvalues of the coordinate covariance), perimeter = its 4-connected
weighted border length, solidity = area / pixels of the convex hull).

How it stays fast: each tile's mask is cut into horizontal runs of one label; every stain is
summed over the runs of the nuclei only (a compiled loop when numba is installed, about the
cost of `image.sum()`; otherwise one `np.add.reduceat` per stain), and moments come from the
runs in closed form. Tiles are read strip by strip; a nucleus whose rows all lie above the
strip's last row is finished there (its convex hull counted, its row extents dropped) and given
out with that strip's feature rows (`SlideFeatures`), so only the nuclei crossing into the next
strip are held. Memory: one strip of tiles and its nuclei, whatever the slide's nucleus count;
the asset streams each strip's rows to Parquet as one row group.

One module per part: the streaming pass (`slide`), one tile's sums and their merge (`tile`),
runs and stain sums (`runs`), the convex hull (`hull`), the columns (`columns`) and the checks
(`checks`).
"""

from pipelines.quantify.checks import FeatureSummary, feature_checks
from pipelines.quantify.columns import GEOMETRY_SCHEMA, empty_features, feature_schema
from pipelines.quantify.hull import convex_areas
from pipelines.quantify.slide import (
    ClosedStrip,
    MaskTiles,
    QuantifyParams,
    SlideFeatures,
    SlideTiles,
    closed_strips,
    quantify_slide,
)
from pipelines.quantify.tile import measure_tile

__all__ = [
    "GEOMETRY_SCHEMA",
    "ClosedStrip",
    "FeatureSummary",
    "MaskTiles",
    "QuantifyParams",
    "SlideFeatures",
    "SlideTiles",
    "closed_strips",
    "convex_areas",
    "empty_features",
    "feature_checks",
    "feature_schema",
    "measure_tile",
    "quantify_slide",
]

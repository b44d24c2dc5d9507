"""A real MIBI-TOF field (41 single-stain TIFFs) exported to .h5ad and OME-NGFF and read back by
anndata and ome-zarr-py; skipped when ../shared/data/real_mibi_dcis is absent."""

from __future__ import annotations

import os
from pathlib import Path

import anndata as ad
import duckdb
import numpy as np
import polars as pl
import pytest
from scipy import ndimage as ndi
from skimage import filters, measure

from pipelines.ids import nucleus_ids
from pipelines.ingest import describe, open_slide_source
from pipelines.labels import RuleSet, label_slide
from pipelines.nucleus_table import nucleus_table
from pipelines.stains import stain_key
from pipelines.thresholds import AutoThresholdParams, slide_thresholds
from storage.anndata_file import write_nucleus_h5ad
from storage.layout import DataLayout
from storage.mask_store import create_mask, open_mask
from storage.ome_zarr import NgffImage, write_ome_zarr
from storage.slide_ingest import write_slide
from storage.slide_store import SlideInfo, open_slide
from storage.sql_files import read_sql
from storage.thresholds_csv import parse_thresholds_csv

SHARED = Path(os.environ.get("NUCLEUS_SUBTYPING_SHARED")
              or Path(__file__).resolve().parents[2] / ".." / "shared")
FIELD = SHARED / "data" / "real_mibi_dcis" / "Point2203_pt1072_31606"
MIBI_MPP = 400 / 1024
MIBI_STAINS = ("PanCK", "ECAD", "Vimentin", "SMA", "CD45", "CD3", "CD4", "CD8", "CD20", "CD68")

pytestmark = pytest.mark.skipif(not FIELD.is_dir(), reason="real MIBI data not present")
ome_io = pytest.importorskip("ome_zarr.io")
ome_reader = pytest.importorskip("ome_zarr.reader")
ome_format = pytest.importorskip("ome_zarr.format")


def _nuclei(image: np.ndarray, stains: tuple[str, ...]) -> np.ndarray:
    """Connected blobs of the smoothed nuclear stains (Nuc + HH3): real nuclei, roughly."""
    nuclear = filters.gaussian(image[stains.index("Nuc")].astype(np.float32)
                               + image[stains.index("HH3")], 2)
    blobs = measure.label(nuclear > filters.threshold_otsu(nuclear))
    keep = np.bincount(blobs.ravel()) >= 30
    keep[0] = False
    return measure.label(keep[blobs]).astype(np.int32)


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    layout = DataLayout(tmp_path_factory.mktemp("mibi") / "data")
    slide_id = "Point2203"
    with open_slide_source(FIELD, mpp=MIBI_MPP) as source:
        info = SlideInfo(slide_id, source.stains, source.mpp, 1024, 1024, "uint8")
        write_slide(layout.slide_zarr(slide_id), info, source.windows(), describe(source))
    slide = open_slide(layout.slide_zarr(slide_id))
    image = slide.read()
    labels = _nuclei(image, slide.info.stains)
    with create_mask(layout.mask_zarr(slide_id), slide_id, 1024, 1024) as writer:
        writer.write(0, 0, labels)
    n = int(labels.max())
    index = np.arange(1, n + 1)
    centroids = np.array(ndi.center_of_mass(np.ones_like(labels), labels, index))
    means = {f"mean_{stain_key(s)}": ndi.mean(image[i].astype(np.float64), labels, index
                                              ).astype(np.float32)
             for i, s in enumerate(slide.info.stains)}
    features = pl.DataFrame({
        "nucleus_id": nucleus_ids(slide_id, index.astype(np.int32)), "slide_id": [slide_id] * n,
        "label": index.astype(np.int32), "centroid_y_um": centroids[:, 0] * MIBI_MPP,
        "centroid_x_um": centroids[:, 1] * MIBI_MPP, **means})
    return layout, slide, labels, features


def test_real_mibi_field_as_h5ad(field, tmp_path) -> None:
    layout, slide, _, features = field
    slide_id = slide.info.slide_id
    thresholds = slide_thresholds(slide_id, features, parse_thresholds_csv(""),
                                  AutoThresholdParams())
    sql = read_sql("rules/mibi_breast.sql")
    con = duckdb.connect()
    con.execute("CREATE TABLE stain_positivity AS SELECT 1::BIGINT AS nucleus_id, "
                + ", ".join(f"NULL::BOOLEAN AS {stain_key(s)}" for s in MIBI_STAINS))
    con.execute(sql)
    classes = dict(con.execute("SELECT cell_type, class_index FROM cell_type_hierarchy "
                               "ORDER BY class_index").fetchall())
    rules = RuleSet(sql=sql, stains=MIBI_STAINS, name="mibi_breast")
    labels = label_slide(slide_id, features, thresholds, rules, classes)
    table = nucleus_table(slide_id, features, labels, thresholds,
                          {"patient_id": "pt1072", "site": "breast", "condition": "DCIS"},
                          cell_types=list(classes))
    adata = ad.read_h5ad(write_nucleus_h5ad(layout.anndata_slide(slide_id), table))
    assert features.height > 200 and adata.n_obs == features.height
    assert list(adata.var_names) == list(slide.info.stains)  # 41 canonical stains
    assert adata.n_vars == 41 and "PanCK" in adata.var_names and "HH3" in adata.var_names
    np.testing.assert_array_equal(adata[:, "PanCK"].X.ravel(), features["mean_panck"].to_numpy())
    assert adata.obs["cell_type"].value_counts().index[0] == "epithelial"  # DCIS
    assert list(adata.obs["cell_type"].cat.categories) == list(classes)
    assert adata.obs["cell_type"].astype(object).where(adata.obs["cell_type"].notna(), None
                                                       ).tolist() == labels["cell_type"].to_list()
    gates = adata.uns["thresholds"].set_index("markers")[slide_id]
    assert gates["ECAD"] == thresholds.filter(pl.col("stain") == "ECAD")["threshold"][0]


def test_real_mibi_field_as_ome_zarr(field) -> None:
    layout, slide, labels, _ = field
    info = slide.info
    mask = open_mask(layout.mask_zarr(info.slide_id))
    path = layout.ome_zarr_dir(info.slide_id) / "mxif.ome.zarr"
    colours = tuple("0000FF" if s == "HH3" else "FFFFFF" for s in info.stains)
    write_ome_zarr(path, NgffImage(info.slide_id, info.stains, colours, info.mpp, 1024, 1024,
                                   info.dtype, lambda a, b, c, d: slide.read(a, b, c, d)),
                   mask.read, tile_px=512)
    nodes = list(ome_reader.Reader(ome_io.parse_url(str(path), fmt=ome_format.FormatV04()))())
    image, label = nodes[0], next(n for n in nodes if n.load(ome_reader.Label))
    assert image.metadata["channel_names"] == list(info.stains)
    assert [d.shape for d in image.data] == [(41, 1024, 1024), (41, 512, 512)]
    assert image.metadata["coordinateTransformations"][1][0]["scale"] == \
        [1.0, 2 * MIBI_MPP, 2 * MIBI_MPP]
    hh3 = info.stains.index("HH3")
    np.testing.assert_array_equal(np.asarray(image.data[0][hh3]), slide.read(stains=["HH3"])[0])
    np.testing.assert_array_equal(np.asarray(label.data[0]), labels)

"""An IONpath MIBItiff (JSON page descriptions) ingests with canonical stains and keeps masses."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from pipelines.ingest import describe, open_slide_source
from pipelines.mibitiff import parse_mibi_description, strip_mass_tag

# (target, mass) as an IONpath export names them; PageName carries the mass tag.
PANEL = [("HH3", 113.0), ("CD3", 159.0), ("PanKeratin", 171.0), ("NaK ATPase", 175.0)]


def _mibi_description(target: str, mass: float) -> str:
    return json.dumps({
        "mibi.run": "20180122_1242_1269", "mibi.version": "alpha", "mibi.instrument": "MIBIscope1",
        "mibi.slide": "1", "mibi.fov_id": "Point1",
        "mibi.folder": "Point1/RowNumber0/Depth_Profile0",
        "mibi.dwell": 4, "mibi.scans": "", "mibi.aperture": "300um", "mibi.description": "",
        "mibi.mass_offset": 0.1, "mibi.mass_gain": 0.2, "mibi.time_resolution": 0.5,
        "mibi.filename": "Point1", "image.type": "SIMS", "channel.mass": mass,
        "channel.target": target, "mibi.mass": mass,
    })


def _write_mibitiff(path, data: np.ndarray) -> None:
    with tifffile.TiffWriter(path) as tif:
        for plane, (target, mass) in zip(data, PANEL, strict=True):
            tif.write(
                plane, description=_mibi_description(target, mass), metadata=None,
                resolution=(1e4 / 0.39, 1e4 / 0.39), resolutionunit="CENTIMETER",
                extratags=[(285, "s", 0, f"{target} ({int(mass)})", False)],
            )


def test_mibitiff_opens_with_canonical_stains_and_masses(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.integers(0, 200, size=(len(PANEL), 64, 80), dtype=np.uint16)
    path = tmp_path / "Point1.tiff"
    _write_mibitiff(path, data)
    with open_slide_source(path) as source:
        assert source.stains == ("HH3", "CD3", "PanCK", "NaKATPase")
        assert source.source_stains == ("HH3", "CD3", "PanKeratin", "NaK ATPase")
        assert source.mpp == pytest.approx(0.39)
        np.testing.assert_array_equal(source.read(2, 0, 0, 64, 80), data[2])
        masses = json.loads(describe(source)["stain_masses_da"])
    assert masses == {"HH3": 113.0, "CD3": 159.0, "PanCK": 171.0, "NaKATPase": 175.0}


def test_description_parsing():
    assert parse_mibi_description(_mibi_description("CD3 (159)", 159)).target == "CD3"
    assert parse_mibi_description("CD3") is None
    assert parse_mibi_description('{"image.type": "SIMS"}') is None
    assert parse_mibi_description("{not json") is None
    assert strip_mass_tag("CD11c (142)") == "CD11c"
    assert strip_mass_tag("HLA-DR") == "HLA-DR"

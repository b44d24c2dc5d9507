"""User stain aliases: from the data root's CSV and the config, checked, used at ingest."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from dagster_project.defs.slides.resources import SlideInputs
from pipelines.errors import StainError
from pipelines.ingest import ReadParams, open_slide_source
from pipelines.stains import UserAlias, canonical_stain, check_user_aliases
from storage.errors import StorageError
from storage.layout import DataLayout
from storage.stain_aliases_csv import read_stain_aliases


def test_user_aliases_map_own_panel_names():
    table = check_user_aliases([
        UserAlias("CD3e", "CD3", "a.csv line 2"), UserAlias("cd-3e", "CD3", "a.csv line 3"),
        UserAlias("Keratin 5/6", "CK5", "a.csv line 4"), UserAlias("MyStain", "MyStain", "cfg"),
    ])
    assert canonical_stain("CD3e", aliases=table) == "CD3"
    assert canonical_stain("keratin5/6", aliases=table) == "CK5"
    assert canonical_stain("CD3e") == "CD3e"  # without the table it passes through as written
    assert canonical_stain("PanKeratin", aliases=table) == "PanCK"  # the built-in table still wins


@pytest.mark.parametrize(("rows", "message"), [
    ([UserAlias("PanKeratin", "CD3", "a.csv line 2")], "a.csv line 2: 'PanKeratin' already means"),
    ([UserAlias("X1", "CD3", "a.csv line 2"), UserAlias("x-1", "CD8", "a.csv line 5")],
     "a.csv line 5: 'x-1' means 'CD8' here but 'CD3' at a.csv line 2"),
    ([UserAlias("X1", "cd3", "a.csv line 2")], "a.csv line 2: 'cd3' is already a name for 'CD3'"),
    ([UserAlias("X1", "PanKeratin", "a.csv line 2")], "'PanKeratin' is already a name for 'PanCK'"),
    ([UserAlias("X1", "Foo", "a.csv line 2"), UserAlias("X2", "FOO", "a.csv line 3")],
     "a.csv line 3: 'FOO' is spelled 'Foo'"),
    ([UserAlias("", "CD3", "a.csv line 2")], "needs both an alias and a stain"),
])
def test_contradicting_aliases_are_refused(rows, message):
    with pytest.raises(StainError, match=message.replace("(", r"\(")):
        check_user_aliases(rows)


def test_csv_rows_carry_their_line(tmp_path):
    path = tmp_path / "stain_aliases.csv"
    assert read_stain_aliases(path) == []
    path.write_text("# my panel\nalias,stain\nCD3e,CD3\n\nKRT5, CK5\n")
    assert read_stain_aliases(path) == [
        ("CD3e", "CD3", f"{path} line 3"), ("KRT5", "CK5", f"{path} line 5")]
    path.write_text("name,stain\nCD3e,CD3\n")
    with pytest.raises(StorageError, match="line 1: the header needs columns alias, stain"):
        read_stain_aliases(path)


def test_csv_and_config_aliases_are_used_at_ingest(tmp_path):
    layout = DataLayout(tmp_path)
    layout.stain_aliases_csv.write_text("alias,stain\nCD3e,CD3\n")
    inputs = SlideInputs(stain_aliases={"Krt5": "CK5"})
    table = inputs.aliases(layout)
    data = np.arange(3 * 8 * 8, dtype=np.uint16).reshape(3, 8, 8)
    slide = tmp_path / "slide.tiff"
    with tifffile.TiffWriter(slide) as tif:
        for plane, name in zip(data, ["DAPI", "CD3e", "Krt5"], strict=True):
            tif.write(plane, description=name, metadata=None)
    with open_slide_source(slide, mpp=0.5, params=ReadParams(stain_aliases=table)) as source:
        assert source.stains == ("DAPI", "CD3", "CK5")
    clash = SlideInputs(stain_aliases={"cd3e": "CD8"})
    with pytest.raises(StainError, match=r"config stain_aliases\['cd3e'\].*'CD3' at .*line 2"):
        clash.aliases(layout)

"""The simulator's private reading of Table 1, and the per-class stain profiles built on it."""

from __future__ import annotations

import itertools

import pytest

from pipelines.cell_types import CELL_TYPES
from pipelines.synthetic import table1_cell_type
from pipelines.synthetic.panel import LOCALISATION, PROFILES, STAINS


def _pos(*stains: str) -> dict[str, bool]:
    return dict.fromkeys(stains, True)


@pytest.mark.parametrize(
    ("stains", "expected"),
    [
        (("PanCK", "NaKATPase", "Muc2"), "goblet"),
        (("PanCK", "CgA"), "endocrine"),
        (("NaKATPase",), "epithelial"),
        (("PanCK", "Sox9"), "progenitor"),
        (("PanCK", "OLFM4"), "progenitor"),
        (("Vimentin", "SMA"), "fibroblast"),
        (("SMA",), "fibroblast"),
        (("Vimentin",), "stromal"),
        (("Vimentin", "CD45", "CD11B"), "monocyte"),
        (("Vimentin", "CD45", "CD68"), "macrophage"),
        (("Vimentin", "CD68", "Lysozyme"), "macrophage"),
        (("Vimentin", "CD45", "CD3d", "CD4"), "helper_t"),
        (("Vimentin", "CD45", "CD4"), "helper_t"),
        (("Vimentin", "CD3d", "CD8"), "cytotoxic_t"),
        (("Vimentin", "CD45", "CD3d"), "t_cell_receptor"),
        (("Vimentin", "CD45", "CD20"), "b_cell"),
        (("Vimentin", "Lysozyme"), "myeloid"),
        (("Vimentin", "CD45", "Lysozyme"), "myeloid"),
        (("Vimentin", "CD45"), "leukocyte"),
        # exclusions
        (("PanCK", "Vimentin"), None),  # step 3
        (("Vimentin", "CD68", "CD3d"), None),  # step 5
        (("Vimentin", "CD11B", "CD20"), None),  # step 6
        (("Vimentin", "CD20", "CD8", "CD45"), None),  # step 7
        (("Vimentin", "CD4"), None),  # step 8: CD4+ without CD3d or CD45
        (("Vimentin", "CD45", "CD3d", "CD4", "CD8"), None),  # step 8
        (("CD45", "CD3d", "CD4"), None),  # step 10: neither Epi+ nor Stroma+
        (("DAPI",), None),  # steps 10/15
        (("PanCK", "Muc2", "Sox9"), None),  # step 11
        (("PanCK", "CgA", "Muc2"), None),  # step 12
        (("SMA", "CD45"), None),  # step 13
        (("Vimentin", "CD45", "Sox9"), None),  # step 14
        (("PanCK", "NaKATPase", "Lysozyme"), None),  # step 16 (Paneth cells)
        (("Vimentin", "CD68", "CD11B"), None),  # steps 5/6
    ],
)
def test_table1_reading(stains: tuple[str, ...], expected: str | None) -> None:
    assert table1_cell_type(_pos(*stains)) == expected


def test_every_profile_reads_as_its_class_for_every_option_draw() -> None:
    covered = set()
    for name, profile in PROFILES.items():
        options = [s for s, _ in profile.optional]
        for k in range(len(options) + 1):
            for extra in itertools.combinations(options, k):
                got = table1_cell_type(_pos(*profile.always, *extra))
                assert got == profile.cell_type, (name, extra, got)
        covered.add(profile.cell_type)
    assert covered == {*CELL_TYPES, None}


def test_every_stain_has_a_localisation() -> None:
    assert len(STAINS) == 27
    assert set(LOCALISATION) == set(STAINS)
    assert LOCALISATION["DAPI"] == "nucleus"
    assert LOCALISATION["CD4"] == "membrane"
    assert LOCALISATION["Muc2"] == "cytoplasm"
    assert LOCALISATION["Sox9"] == "nucleus"

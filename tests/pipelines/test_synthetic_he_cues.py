"""The H&E cue table: one row per class, a declared signal, and a control group rendered alike."""

from __future__ import annotations

from pathlib import Path

from pipelines.cell_types import CELL_TYPES
from pipelines.synthetic.panel import CONTROL_GROUP, HE_CUES, PROFILES, he_cue_table
from pipelines.synthetic.tissue import _LP_MIX, _MUSCULARIS_MIX
from pipelines.vhe.beer_lambert import HISTOLOGY_ABSORPTIONS

# The page that shows the cue table, under "What H&E can show".
CUE_TABLE_PAGE = Path(__file__).resolve().parents[2] / "docs" / "synthetic-cohort.md"


def test_every_class_has_a_cue_row_and_a_declared_signal() -> None:
    assert set(HE_CUES) == set(CELL_TYPES)
    assert {c.signal for c in HE_CUES.values()} == {"strong", "weak", "none"}
    assert set(CONTROL_GROUP) == {"helper_t", "t_cell_receptor", "leukocyte"}


def test_control_group_has_no_distinguishing_cue() -> None:
    dyed = {a.stain for a in HISTOLOGY_ABSORPTIONS if a.hematoxylin > 0 or a.eosin > 0}
    profiles = [PROFILES[name] for name in CONTROL_GROUP]
    # the same nucleus and cell body
    assert len({p.morphology for p in profiles}) == 1
    # the same stains that take dye (always on; no optional dyed stain)
    assert len({frozenset(set(p.always) & dyed) for p in profiles}) == 1
    for p in profiles:
        assert not [s for s, _ in p.optional if s in dyed], p
    # the same places: only the lamina propria, never the muscularis or the epithelium
    for name in CONTROL_GROUP:
        assert all(name in mix for mix in _LP_MIX.values())
        assert name not in _MUSCULARIS_MIX
    cue_rows = {tuple(vars(HE_CUES[n]).values()) for n in CONTROL_GROUP}
    assert len(cue_rows) == 1


def test_the_synthetic_cohort_page_shows_the_cue_table() -> None:
    assert he_cue_table() in CUE_TABLE_PAGE.read_text(encoding="utf-8")

"""A small plain-Python reading of Table 1 of the paper, used only to check the simulator.

The simulator decides each nucleus's true per-stain positivity first and derives its
`cell_type` from it with this reading, so the ground truth obeys the same sequential rules a
labelling stage applies to thresholded intensities. Exclusions (steps 3, 5-8, 10-16) give None.
"""

from __future__ import annotations

from collections.abc import Mapping


def _any(pos: Mapping[str, bool], *stains: str) -> bool:
    return any(pos.get(s, False) for s in stains)


def _conflict(pos: Mapping[str, bool], first: str, *others: str) -> bool:
    return pos.get(first, False) and _any(pos, *others)


def table1_cell_type(pos: Mapping[str, bool]) -> str | None:
    """The class Table 1's sequential rules give a nucleus with positivity `pos` (by stain name).

    Missing stains count as negative. Returns one of CELL_TYPES, or None when a step excludes
    the nucleus or no final annotation fits it.
    """
    epi = _any(pos, "NaKATPase", "PanCK", "Muc2", "CgA")  # step 1
    stroma = _any(pos, "Vimentin", "SMA")  # step 2
    if epi and stroma:  # step 3
        return None
    immune = _any(pos, "CD45", "CD20", "CD68", "CD11B", "Lysozyme", "CD3d", "CD8", "CD4")  # 4
    if _conflict(pos, "CD68", "CD3d", "CD20", "CD4", "CD8", "CD11B"):  # step 5
        return None
    if _conflict(pos, "CD11B", "CD3d", "CD20", "CD4", "CD8", "CD68"):  # step 6
        return None
    if _conflict(pos, "CD20", "CD3d", "CD4", "CD8"):  # step 7
        return None
    cd3d, cd45, cd4, cd8 = (pos.get(s, False) for s in ("CD3d", "CD45", "CD4", "CD8"))
    if (not cd3d and not cd45 and (cd4 or cd8)) or (cd4 and cd8):  # step 8
        return None
    progenitor = _any(pos, "Sox9", "OLFM4")  # step 9
    if not epi and not stroma:  # step 10
        return None
    muc2, cga, sma = (pos.get(s, False) for s in ("Muc2", "CgA", "SMA"))
    if muc2 and (immune or progenitor or sma):  # step 11
        return None
    if cga and (immune or sma or progenitor or muc2):  # step 12
        return None
    if sma and immune:  # step 13
        return None
    if immune and progenitor:  # step 14
        return None
    if not (epi or stroma or progenitor or immune):  # step 15
        return None
    if epi and immune:  # step 16
        return None
    if progenitor:  # step 31: every remaining Progenitor+ nucleus
        return "progenitor"
    if epi:  # steps 17-19 (Muc2+ and CgA+ together were excluded at step 12)
        if muc2:
            return "goblet"
        if cga:
            return "endocrine"
        return "epithelial"
    if stroma and not immune:  # steps 20-22
        return "fibroblast" if sma else "stromal"
    if not immune:
        return None
    cd20, cd68, cd11b, lyz = (pos.get(s, False) for s in ("CD20", "CD68", "CD11B", "Lysozyme"))
    if lyz and not (cd68 or cd11b or cd20 or cd3d or cd8 or cd4):  # step 23
        return "myeloid"
    if cd4:  # step 24
        return "helper_t"
    if cd8:  # step 25
        return "cytotoxic_t"
    if cd3d:  # step 26 (CD4- and CD8- here)
        return "t_cell_receptor"
    if cd11b:  # step 27
        return "monocyte"
    if cd68:  # step 28
        return "macrophage"
    if cd20:  # step 29
        return "b_cell"
    if cd45:  # step 30 (every other immune stain is negative here)
        return "leukocyte"
    return None

"""IONpath MIBItiff page descriptions.

A MIBI instrument export is a multi-page TIFF whose pages describe themselves in a JSON
ImageDescription (`channel.target`, `channel.mass`, `image.type`, ...). The stain is the target;
the mass is the isotope the antibody was tagged with, kept as slide metadata, not in the name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

# "CD3 (159)" or "CD3 159": a page name with the mass tag still attached.
_MASS_TAG = re.compile(r"^(?P<target>.*?\S)\s*\(?\s*(?P<mass>\d{2,3}(?:\.\d+)?)\s*\)?$")


@dataclass(frozen=True)
class MibiPage:
    """One MIBItiff page: the stain (antibody target) and its isotope mass in daltons."""

    target: str
    mass_da: float | None


def parse_mibi_description(description: str | None) -> MibiPage | None:
    """The target and mass from a MIBItiff page's JSON description; None if it is not one."""
    text = (description or "").strip()
    if not text.startswith("{"):
        return None
    try:
        meta = json.loads(text)
    except ValueError:
        return None
    if not isinstance(meta, dict) or not str(meta.get("channel.target") or "").strip():
        return None
    mass = meta.get("channel.mass")
    try:
        mass_da = float(mass) if mass is not None and str(mass).strip() else None
    except ValueError:
        mass_da = None
    return MibiPage(target=strip_mass_tag(str(meta["channel.target"])), mass_da=mass_da)


def strip_mass_tag(name: str) -> str:
    """`CD3 (159)` -> `CD3`: drop a trailing isotope mass in parentheses from a page name."""
    match = _MASS_TAG.match(name.strip())
    if match and "(" in name:
        return match.group("target")
    return name.strip()

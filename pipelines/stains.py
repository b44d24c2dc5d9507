"""The one table of stain spellings.

Every stain name that enters the project (OME-XML channel names, TIFF file names, CSV columns)
goes through `canonical_stain`. Only this module knows the aliases. SQL columns use `stain_key`,
the lower-case canonical name, so `CD3d` is `cd3d` and `NaKATPase` is `nakatpase`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pipelines.errors import StainError

# The 17 stains Table 1 of the paper uses, in the paper's spelling.
RULE_STAINS: tuple[str, ...] = (
    "NaKATPase", "PanCK", "Muc2", "CgA", "Vimentin", "SMA", "Sox9", "OLFM4", "Lysozyme",
    "CD45", "CD20", "CD68", "CD11B", "CD3d", "CD8", "CD4",
)
NUCLEAR_STAIN = "DAPI"
# The paper's 27-stain colon panel: the 16 rule stains, DAPI and 10 further colon stains.
COLON_PANEL: tuple[str, ...] = (
    *RULE_STAINS, NUCLEAR_STAIN,
    "BetaCatenin", "Collagen", "COX2", "ERBB2", "FOXP3", "HLAA", "PCNA", "pEGFR", "pSTAT3",
    "Actinin",
)

# Other stains we know by name (e.g. the MIBI breast panel); canonical spelling on the left.
_OTHER_STAINS: tuple[str, ...] = (
    "HH3", "Nuc", "ECAD", "CD3", "CD11c", "CD14", "CD31", "CD36", "CD44", "CD56", "CK5", "CK7",
    "ER", "AR", "FAP", "GLUT1", "GZMB", "HER2", "HIF1a", "HLADR", "IDO1", "Ki67", "MMP9", "MPO",
    "P", "P63", "PD1", "PDL1", "Tryptase", "pS6",
)

# alias -> canonical. Keys are compared after `_fold` (case, spaces, dashes, underscores ignored).
_ALIASES: dict[str, str] = {
    "nakatpase": "NaKATPase", "nak atpase": "NaKATPase", "na/k-atpase": "NaKATPase",
    "naka": "NaKATPase", "atp1a1": "NaKATPase",
    "panck": "PanCK", "pankeratin": "PanCK", "pankrt": "PanCK", "pancytokeratin": "PanCK",
    "muc2": "Muc2", "cga": "CgA", "chromogranina": "CgA", "chga": "CgA",
    "vimentin": "Vimentin", "vim": "Vimentin",
    "sma": "SMA", "asma": "SMA", "alphasma": "SMA", "acta2": "SMA",
    "sox9": "Sox9", "olfm4": "OLFM4", "lysozyme": "Lysozyme", "lyz": "Lysozyme",
    "cd45": "CD45", "ptprc": "CD45", "cd20": "CD20", "ms4a1": "CD20", "cd68": "CD68",
    "cd11b": "CD11B", "itgam": "CD11B", "cd3d": "CD3d", "cd8": "CD8", "cd8a": "CD8",
    "cd4": "CD4", "dapi": "DAPI", "hoechst": "DAPI",
    "bcatenin": "BetaCatenin", "betacatenin": "BetaCatenin", "ctnnb1": "BetaCatenin",
    "collagen": "Collagen", "coli": "Collagen", "col1": "Collagen", "col1a1": "Collagen",
    "cox2": "COX2", "ptgs2": "COX2", "erbb2": "ERBB2", "foxp3": "FOXP3",
    "hlaa": "HLAA", "pcna": "PCNA", "pegfr": "pEGFR", "pstat3": "pSTAT3",
    "actinin": "Actinin", "hladrdpdq": "HLADR", "hladr": "HLADR", "ki67": "Ki67",
    "mki67": "Ki67", "ecadherin": "ECAD", "ecad": "ECAD", "cdh1": "ECAD",
}
for _name in (*COLON_PANEL, *_OTHER_STAINS):
    _ALIASES.setdefault(re.sub(r"[\s_\-/]", "", _name.lower()), _name)

_KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def _fold(name: str) -> str:
    return re.sub(r"[\s_\-/]", "", name.strip().lower())


@dataclass(frozen=True)
class UserAlias:
    """One alias a user adds for their panel; `where` names its CSV line or config key."""

    alias: str
    stain: str
    where: str


def check_user_aliases(rows: Sequence[UserAlias]) -> dict[str, str]:
    """The user's aliases as a folded-name -> stain table, refused if they contradict.

    One name for two stains (within the rows, or against the built-in table) and two spellings
    of one stain (`cd3` where the table says `CD3`) raise a `StainError` naming the row.
    """
    canonical_by_fold = {_fold(c): c for c in set(_ALIASES.values())}
    table: dict[str, tuple[str, str]] = {}
    for row in rows:
        alias, stain = row.alias.strip(), row.stain.strip()
        if not alias or not stain:
            raise StainError(f"{row.where}: an alias row needs both an alias and a stain.")
        stain_key(stain)  # validates
        target = _ALIASES.get(_fold(stain), stain)
        if target != stain:
            raise StainError(
                f"{row.where}: {stain!r} is already a name for {target!r}; write {target!r} "
                "as the stain so one stain keeps one name."
            )
        spelled = canonical_by_fold.get(_fold(stain))
        if spelled is not None and spelled != stain:
            raise StainError(
                f"{row.where}: {stain!r} is spelled {spelled!r} in the stain table; use that."
            )
        folded = _fold(alias)
        built_in = _ALIASES.get(folded)
        if built_in is not None and built_in != stain:
            raise StainError(
                f"{row.where}: {alias!r} already means {built_in!r}; one name cannot mean "
                f"{built_in!r} and {stain!r}. Remove the row."
            )
        if folded in table and table[folded][0] != stain:
            earlier, where = table[folded]
            raise StainError(
                f"{row.where}: {alias!r} means {stain!r} here but {earlier!r} at {where}; "
                "one name cannot mean two stains. Remove one of the rows."
            )
        table[folded] = (stain, row.where)
        canonical_by_fold.setdefault(_fold(stain), stain)
    return {folded: stain for folded, (stain, _) in table.items()}


def canonical_stain(
    name: str, *, strict: bool = False, aliases: Mapping[str, str] | None = None
) -> str:
    """The canonical spelling of a stain name.

    Unknown names pass through trimmed (a lab's own stain is still a stain) unless `strict`,
    in which case they raise. Names that could never be a safe SQL column raise always.
    `aliases` is a user table from `check_user_aliases`, consulted after the built-in one.
    """
    folded = _fold(name)
    if folded in _ALIASES:
        return _ALIASES[folded]
    if aliases and folded in aliases:
        return aliases[folded]
    if strict:
        raise StainError(
            f"Unknown stain {name!r}: add it to the alias table in pipelines/stains.py."
        )
    cleaned = name.strip()
    stain_key(cleaned)  # validates
    return cleaned


def stain_key(stain: str) -> str:
    """The lower-case identifier used for SQL columns and Parquet fields (e.g. `mean_cd3d`)."""
    key = re.sub(r"[^0-9a-z]+", "_", stain.strip().lower()).strip("_")
    if not _KEY_PATTERN.match(key):
        raise StainError(
            f"Stain name {stain!r} cannot be used as a column name; rename it to letters, digits "
            "and underscores starting with a letter."
        )
    return key


def canonical_stains(
    names: Sequence[str], *, source: str, aliases: Mapping[str, str] | None = None
) -> list[str]:
    """Canonicalise a slide's stain list, refusing duplicates after aliasing.

    `source` names the slide or file in the error, so a user knows where to look.
    """
    canonical = [canonical_stain(n, aliases=aliases) for n in names]
    seen: dict[str, str] = {}
    for raw, stain in zip(names, canonical, strict=True):
        if stain in seen:
            raise StainError(
                f"{source}: stains {seen[stain]!r} and {raw!r} both mean {stain!r}; "
                "remove or rename one of them."
            )
        seen[stain] = raw
    keys = [stain_key(s) for s in canonical]
    if len(set(keys)) != len(keys):
        raise StainError(f"{source}: two stains share a column name: {canonical}.")
    return canonical


def require_stains(available: Iterable[str], needed: Iterable[str], *, source: str) -> None:
    """Raise naming every missing stain, so a user fixes them all in one go."""
    have = set(available)
    missing = [s for s in needed if s not in have]
    if missing:
        raise StainError(
            f"{source}: missing stain(s) {', '.join(missing)}; the slide has {sorted(have)}. "
            "Check the channel names or add an alias in pipelines/stains.py."
        )


#: Stains that name an immune cell's identity. H&E cannot show them, so no virtual-H&E
#: backend turns them into colour by default: the Beer-Lambert "histology" table gives them
#: none, and the CycleGAN does not see them ("histology" inputs).
IMMUNE_IDENTITY_STAINS: tuple[str, ...] = ("CD3d", "CD4", "CD8", "CD20", "CD45", "CD11B", "CD68")

"""The stain aliases CSV a user keeps under the data root for their own panel.

Columns: `alias, stain` (e.g. `CD3e, CD3`). Lines starting with `#` are comments. Rows come back
as written, with the line they stand on, so the science layer can name the line in an error.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from storage.errors import StorageError

ALIAS_COLUMNS = ("alias", "stain")


def read_stain_aliases(path: Path) -> list[tuple[str, str, str]]:
    """`(alias, stain, "file line N")` per row; an absent file is no aliases."""
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8-sig")
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return []
    reader = csv.reader(io.StringIO("\n".join(line for _, line in lines)))
    header = [h.strip().lower() for h in next(reader)]
    missing = [c for c in ALIAS_COLUMNS if c not in header]
    if missing:
        raise StorageError(
            f"{path} line {lines[0][0]}: the header needs columns {', '.join(ALIAS_COLUMNS)} "
            f"(missing {', '.join(missing)}); write e.g. `alias,stain` then `CD3e,CD3`."
        )
    alias_at, stain_at = header.index("alias"), header.index("stain")
    rows = []
    for (number, _), cells in zip(lines[1:], reader, strict=True):
        if len(cells) <= max(alias_at, stain_at):
            raise StorageError(f"{path} line {number}: needs an alias and a stain, got {cells}.")
        rows.append((cells[alias_at].strip(), cells[stain_at].strip(), f"{path} line {number}"))
    return rows

"""Real H&E tiles: a folder (searched recursively) of RGB PNG, JPEG or TIFF images, read lazily.

Only the file list is gathered when the folder is opened; pixels are decoded on first access
and a bounded number of decoded tiles is kept in memory. Greyscale tiles are refused, RGBA tiles
lose their alpha, 16-bit tiles are scaled to 8 bits.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from storage.errors import StoreLayoutError

HE_TILE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


class HeTileFolder:
    """The real H&E domain for style-transfer training: `len()`, `read(i)` -> (h, w, 3) uint8."""

    def __init__(self, folder: str | Path, *, cache_tiles: int = 256) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise StoreLayoutError(
                f"No H&E tile folder at {self.folder}: point the config at a folder of real H&E "
                "tiles (PNG, JPEG or TIFF)."
            )
        self.paths: tuple[Path, ...] = tuple(
            sorted(
                p for p in self.folder.rglob("*")
                if p.is_file() and p.suffix.lower() in HE_TILE_SUFFIXES
                and not p.name.startswith(".")
            )
        )
        if not self.paths:
            raise StoreLayoutError(
                f"{self.folder} holds no H&E tiles ({', '.join(HE_TILE_SUFFIXES)})."
            )
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_tiles = cache_tiles

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, index: int) -> np.ndarray:
        """Tile `index` as (h, w, 3) uint8 RGB."""
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        tile = read_he_tile(self.paths[index])
        tile.setflags(write=False)
        self._cache[index] = tile
        if len(self._cache) > self._cache_tiles:
            self._cache.popitem(last=False)
        return tile


def read_he_tile(path: str | Path) -> np.ndarray:
    """One RGB tile as (h, w, 3) uint8."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            image = tifffile.imread(path)
        else:
            with Image.open(path) as pil:
                image = np.asarray(pil.convert("RGBA") if pil.mode in ("P", "LA") else pil)
    except Exception as exc:  # decoders raise many types
        raise StoreLayoutError(f"Cannot read H&E tile {path}: {exc}") from exc
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[0] in (3, 4) and image.shape[-1] not in (3, 4):
        image = np.moveaxis(image, 0, -1)  # planar TIFF
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise StoreLayoutError(
            f"H&E tile {path} has shape {image.shape}; expected an RGB image (h, w, 3)."
        )
    image = image[..., :3]
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) / 257.0).round()
    elif image.dtype != np.uint8:
        raise StoreLayoutError(f"H&E tile {path} has dtype {image.dtype}; expected 8 or 16 bit.")
    return np.ascontiguousarray(image.astype(np.uint8))



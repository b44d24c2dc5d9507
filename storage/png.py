"""PNG images of (h, w, 3) uint8 RGB arrays: the bytes, and the file written atomically.

The one PNG encoder of the project's images (previews, outlines, thumbnails); matplotlib
figures go through `pipelines.figures.png_bytes`.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from storage.atomic import atomic_write_bytes


def rgb_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an (h, w, 3) uint8 image."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"Expected (h, w, 3) uint8, got {rgb.shape} {rgb.dtype}.")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_rgb_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an (h, w, 3) uint8 image as PNG, atomically (previews and figures)."""
    return atomic_write_bytes(path, rgb_png(rgb))

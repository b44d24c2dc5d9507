"""Stable nucleus ids: the same slide and mask label give the same id on every run and machine."""

from __future__ import annotations

import zlib

import numpy as np


def slide_hash(slide_id: str) -> int:
    """31-bit hash of the slide id; the high half of every nucleus_id of that slide."""
    return zlib.crc32(slide_id.encode("utf-8")) & 0x7FFFFFFF


def nucleus_ids(slide_id: str, labels: np.ndarray) -> np.ndarray:
    """int64 ids `slide_hash << 32 | label`: unique across slides, traceable to the mask label."""
    return (np.int64(slide_hash(slide_id)) << np.int64(32)) | np.asarray(labels, dtype=np.int64)


def mask_label(nucleus_id: np.ndarray) -> np.ndarray:
    """The label in the slide's nucleus mask that a nucleus_id came from."""
    return (np.asarray(nucleus_id, dtype=np.int64) & np.int64(0xFFFFFFFF)).astype(np.int32)

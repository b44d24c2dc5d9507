"""Nucleus patches: 41x41 RGB at 0.5 µm/px centred on every nucleus, cut from whole slides.

Resampling happens once per tile, not per patch. The slide's pixel grid (mpp_src) and the
patch grid (mpp_dst) are related by a rational step `p/q` (p source pixels per q patch-grid
pixels, `ResampleGrid`): patch-grid pixel j has its centre at source coordinate
`(j + 0.5) * p / q - 0.5`. Tiles and halos are multiples of p source pixels, so every tile
starts on a patch-grid pixel and a tile resampled on its own is pixel for pixel the slide
resampled at once (seamless, and the same patches whatever the tile size).

Each nucleus is centred on the patch-grid pixel nearest its centroid (at most half a patch
pixel, 0.25 µm, away). Nuclei whose 41x41 box leaves the slide are padded (reflect by default,
or a constant) and flagged `edge`; none is dropped.

Rows come out in the patch store's order (by class index, then nucleus_id), assembled per
128-row chunk while tiles stream: a chunk is written as soon as all its rows are cut, and if
the open chunks ever exceed `max_buffer_mb` they are written partially (runs of finished rows)
and freed, so memory stays bounded by one tile + O(n) metadata + the buffer cap.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np
import polars as pl
from numpy.lib.stride_tricks import as_strided

from pipelines.errors import ConfigurationError, SlideInputError

PATCH_PX = 41
PATCH_MPP = 0.5


@dataclass(frozen=True)
class ResampleGrid:
    """The patch grid of a slide: `p` source pixels span exactly `q` destination pixels."""

    src_mpp: float
    p: int
    q: int

    @classmethod
    def between(cls, src_mpp: float, dst_mpp: float, max_period: int = 64) -> ResampleGrid:
        if not (src_mpp > 0 and dst_mpp > 0):
            raise ConfigurationError(f"Pixel sizes must be > 0, got {src_mpp}, {dst_mpp} µm/px.")
        step = Fraction(dst_mpp / src_mpp).limit_denominator(max_period)
        return cls(src_mpp=float(src_mpp), p=step.numerator, q=step.denominator)

    @property
    def scale(self) -> float:
        """Source pixels per destination pixel."""
        return self.p / self.q

    @property
    def dst_mpp(self) -> float:
        """The destination pixel size actually used (the requested one up to 1/max_period)."""
        return self.src_mpp * self.p / self.q

    def dst_size(self, src_px: int) -> int:
        return (src_px * self.q) // self.p

    def align(self, src_px: int) -> int:
        """`src_px` rounded up to a whole number of periods."""
        return -(-src_px // self.p) * self.p

    def to_dst(self, src_coord: np.ndarray) -> np.ndarray:
        """Nearest destination pixel of continuous source pixel coordinates."""
        return np.floor((np.asarray(src_coord, np.float64) + 0.5) * self.q / self.p).astype(
            np.int64
        )

    def to_src(self, dst_index: np.ndarray) -> np.ndarray:
        """Source coordinate of destination pixel centres."""
        return (np.asarray(dst_index, np.float64) + 0.5) * self.p / self.q - 0.5


def resample_rgb(
    window: np.ndarray, grid: ResampleGrid, out: np.ndarray | None = None
) -> np.ndarray:
    """Resample an (h, w, 3) uint8 window that starts on a period boundary to the grid.

    Returns (dst_size(h), dst_size(w), 3) uint8; output pixel k has its centre at window
    coordinate (k + 0.5) * p / q - 0.5. Bilinear, antialiased when shrinking (PIL-style
    triangle filter), uint8 arithmetic. `out`, if given, is a C-contiguous array of that shape
    the result is written into (and returned), so a tile loop reuses one buffer.
    """
    if grid.p == grid.q:
        return np.asarray(window)
    h, w, _ = window.shape
    dst_h, dst_w = grid.dst_size(h), grid.dst_size(w)
    if out is None:
        out = np.empty((dst_h, dst_w, 3), np.uint8)
    elif out.shape != (dst_h, dst_w, 3) or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous uint8 of shape {(dst_h, dst_w, 3)}.")
    import torch  # here, so the modules that only need the patch geometry load without it

    # Interleaved (y, x, 3) in and out: as NCHW tensors both are channels_last, the layout the
    # uint8 kernel works in, so neither side needs a transposing copy.
    src = torch.from_numpy(np.ascontiguousarray(window)).permute(2, 0, 1)[None]
    dst = torch.from_numpy(out).permute(2, 0, 1)[None]
    # Full periods give the exact step from the sizes; the slide's last tiles pass the step.
    scale = None if h % grid.p == 0 and w % grid.p == 0 else grid.q / grid.p
    if grid.p > grid.q:
        torch.ops.aten._upsample_bilinear2d_aa.out(
            src, [dst_h, dst_w], False, scale, scale, out=dst
        )
    else:
        torch.ops.aten.upsample_bilinear2d.out(src, [dst_h, dst_w], False, scale, scale, out=dst)
    return out


@dataclass(frozen=True)
class PatchParams:
    """`tile_px`: source pixels per tile side (rounded up to whole grid periods)."""

    patch_px: int = PATCH_PX
    mpp: float = PATCH_MPP
    tile_px: int = 1024
    pad_mode: Literal["reflect", "constant"] = "reflect"
    pad_value: int = 255
    chunk_rows: int = 128
    max_buffer_mb: float = 256.0

    def __post_init__(self) -> None:
        if self.patch_px < 1 or self.patch_px % 2 == 0:
            raise ConfigurationError(f"patch_px must be odd and >= 1, got {self.patch_px}.")
        if self.pad_mode not in ("reflect", "constant"):
            raise ConfigurationError(f"pad_mode must be reflect or constant, not {self.pad_mode!r}")
        if self.tile_px < 1 or self.chunk_rows < 1:
            raise ConfigurationError("tile_px and chunk_rows must be >= 1.")


@dataclass(frozen=True)
class PatchPlan:
    """Where every patch comes from and goes to; arrays are in store row order."""

    slide_id: str
    grid: ResampleGrid
    src_height_px: int
    src_width_px: int
    dst_height_px: int
    dst_width_px: int
    tile_px: int
    nucleus_id: np.ndarray
    class_index: np.ndarray
    edge: np.ndarray
    centre_y: np.ndarray  # patch-grid pixel of the centre
    centre_x: np.ndarray

    @property
    def n_patches(self) -> int:
        return len(self.nucleus_id)

    @property
    def tile_dst_px(self) -> int:
        return self.tile_px * self.grid.q // self.grid.p

    def tile_of(self) -> tuple[np.ndarray, np.ndarray]:
        """(tile row, tile column) of each patch centre, on the tile grid of the slide."""
        td = self.tile_dst_px
        n_rows = -(-self.src_height_px // self.tile_px)
        n_cols = -(-self.src_width_px // self.tile_px)
        return (
            np.minimum(self.centre_y // td, n_rows - 1),
            np.minimum(self.centre_x // td, n_cols - 1),
        )


def plan_patches(
    slide_id: str,
    nucleus_id: np.ndarray,
    class_index: np.ndarray,
    centroid_y_px: np.ndarray,
    centroid_x_px: np.ndarray,
    height_px: int,
    width_px: int,
    mpp: float,
    params: PatchParams = PatchParams(),
) -> PatchPlan:
    """Check a slide's nucleus table against the slide and place every patch.

    Rows are sorted by (class_index, nucleus_id), the patch store's order. Raises
    SlideInputError for a table that cannot belong to the slide (centroids outside it,
    duplicate or missing values).
    """
    nucleus_id = np.asarray(nucleus_id, np.int64)
    class_index = np.asarray(class_index, np.int16)
    cy = np.asarray(centroid_y_px, np.float64)
    cx = np.asarray(centroid_x_px, np.float64)
    n = len(nucleus_id)
    if not (len(class_index) == len(cy) == len(cx) == n):
        raise SlideInputError(f"Slide {slide_id!r}: nucleus table columns differ in length.")
    if len(np.unique(nucleus_id)) != n:
        raise SlideInputError(f"Slide {slide_id!r}: the nucleus table repeats a nucleus_id.")
    bad = ~(np.isfinite(cy) & np.isfinite(cx) & (cy >= -0.5) & (cx >= -0.5)
            & (cy < height_px - 0.5) & (cx < width_px - 0.5))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SlideInputError(
            f"Slide {slide_id!r}: {int(bad.sum())} of {n} nucleus centroids lie outside the "
            f"slide ({height_px} x {width_px} px), e.g. nucleus_id {int(nucleus_id[i])} at "
            f"(y={cy[i]:.1f}, x={cx[i]:.1f}) px. The nucleus table belongs to another slide or "
            "pixel size; re-run nucleus_features for this slide."
        )
    grid = ResampleGrid.between(mpp, params.mpp)
    dst_h, dst_w = grid.dst_size(height_px), grid.dst_size(width_px)
    order = np.lexsort((nucleus_id, class_index))
    centre_y = np.clip(grid.to_dst(cy[order]), 0, dst_h - 1)
    centre_x = np.clip(grid.to_dst(cx[order]), 0, dst_w - 1)
    half = params.patch_px // 2
    edge = (
        (centre_y - half < 0) | (centre_x - half < 0)
        | (centre_y + half >= dst_h) | (centre_x + half >= dst_w)
    )
    return PatchPlan(
        slide_id=slide_id, grid=grid, src_height_px=height_px, src_width_px=width_px,
        dst_height_px=dst_h, dst_width_px=dst_w, tile_px=grid.align(params.tile_px),
        nucleus_id=nucleus_id[order], class_index=class_index[order], edge=edge,
        centre_y=centre_y, centre_x=centre_x,
    )


class ChunkAssembler:
    """Collects rows cut in tile order and writes them in aligned blocks of `chunk_rows`.

    A chunk is written whole once all its rows arrived. When open chunks would exceed
    `max_bytes`, every open chunk writes the runs of rows it holds and frees its buffer; such
    chunks are later completed with row runs as well (never overwriting rows with zeros).
    """

    def __init__(
        self,
        n_rows: int,
        row_shape: tuple[int, ...],
        chunk_rows: int,
        write_block: Callable[[int, np.ndarray], None],
        max_bytes: int,
    ) -> None:
        self.n_rows, self.row_shape, self.chunk_rows = n_rows, row_shape, chunk_rows
        self._write = write_block
        self._max_bytes = max(max_bytes, chunk_rows * int(np.prod(row_shape)))
        self._buffers: dict[int, np.ndarray] = {}
        self._pending: dict[int, np.ndarray] = {}  # chunk -> bool mask of rows held, not written
        self._left = {}  # chunk -> rows not yet arrived
        self._spilled: set[int] = set()
        self._free: list[np.ndarray] = []
        self.done = np.zeros(n_rows, bool)
        self.peak_chunks = 0
        self.spills = 0
        self.blocks_written = 0

    def _size(self, chunk: int) -> int:
        return min(self.chunk_rows, self.n_rows - chunk * self.chunk_rows)

    def add(self, rows: np.ndarray, cut: Callable[[np.ndarray], np.ndarray]) -> None:
        """Take the patches of store rows `rows` (ascending); `cut(i)` returns those of rows[i].

        Patches are cut chunk by chunk straight into the chunk's buffer, so each patch is
        copied out of the tile once and the intermediate stays in cache.
        """
        rows = np.asarray(rows, np.int64)
        if np.any(np.diff(rows) <= 0):
            raise ValueError("Rows given to ChunkAssembler.add must be strictly ascending.")
        if self.done[rows].any():
            raise ValueError("A patch row was cut twice.")
        self.done[rows] = True
        chunks = rows // self.chunk_rows
        bounds = (np.flatnonzero(np.diff(chunks)) + 1).tolist()
        for a, b in zip([0, *bounds], [*bounds, len(rows)], strict=True):
            chunk = int(chunks[a])
            local = rows[a:b] - chunk * self.chunk_rows
            if chunk not in self._buffers:
                size = self._size(chunk)
                self._buffers[chunk] = self._new_buffer(size)
                self._pending[chunk] = np.zeros(size, bool)
                self._left.setdefault(chunk, size)
            if local[-1] - local[0] == b - a - 1:  # a run of rows: plain slice, no scatter
                self._buffers[chunk][local[0] : local[-1] + 1] = cut(np.arange(a, b))
            else:
                self._buffers[chunk][local] = cut(np.arange(a, b))
            self._pending[chunk][local] = True
            self._left[chunk] -= b - a
            if self._left[chunk] == 0:
                self._flush(chunk)
        self.peak_chunks = max(self.peak_chunks, len(self._buffers))
        if len(self._buffers) * self.chunk_rows * int(np.prod(self.row_shape)) > self._max_bytes:
            self.spills += 1
            for chunk in list(self._buffers):
                self._spilled.add(chunk)
                self._flush(chunk)

    def _new_buffer(self, size: int) -> np.ndarray:
        """A chunk buffer, reusing a written one when possible (no fresh pages per chunk)."""
        if size == self.chunk_rows and self._free:
            return self._free.pop()
        return np.empty((size, *self.row_shape), np.uint8)

    def _flush(self, chunk: int) -> None:
        buf, held = self._buffers.pop(chunk), self._pending.pop(chunk)
        start = chunk * self.chunk_rows
        if chunk not in self._spilled:
            self._write(start, buf)
            self.blocks_written += 1
        else:
            edges = np.flatnonzero(np.diff(np.concatenate(([0], held.view(np.int8), [0]))))
            for a, b in zip(edges[::2], edges[1::2], strict=True):
                self._write(start + int(a), buf[a:b])
                self.blocks_written += 1
        if len(buf) == self.chunk_rows and len(self._free) < 64:
            self._free.append(buf)

    def finish(self) -> None:
        if not self.done.all():
            missing = int((~self.done).sum())
            raise SlideInputError(
                f"{missing} patch rows were never cut; the tile plan missed them."
            )
        if self._buffers:  # pragma: no cover, every chunk flushes when its last row arrives
            raise AssertionError("Chunks left open after all rows arrived.")


@dataclass(frozen=True)
class PatchSummary:
    slide_id: str
    n_patches: int
    n_edge: int
    n_tiles: int
    seconds: float
    peak_open_chunks: int
    spills: int

    @property
    def patches_per_s(self) -> float:
        return self.n_patches / max(self.seconds, 1e-9)


def tile_halo_px(grid: ResampleGrid, patch_px: int) -> int:
    """Source pixels of context a tile needs so every patch of its core is complete."""
    return grid.align(math.ceil((patch_px // 2 + 2) * grid.scale) + 2)


def patch_view(
    resampled: np.ndarray,
    origin_y: int,
    origin_x: int,
    centre_y: np.ndarray,
    centre_x: np.ndarray,
    patch_px: int,
    dst_height_px: int,
    dst_width_px: int,
    pad_mode: str = "reflect",
    pad_value: int = 255,
) -> tuple[np.ndarray, int, int]:
    """A read-only (y, x, P, P, 3) view of every patch position over a resampled window.

    `resampled` covers patch-grid rows/columns from (origin_y, origin_x); where the patches of
    `centre_y`/`centre_x` reach outside it (only at the slide border) it is padded first.
    Returns the view and the patch-grid coordinates of its [0, 0] patch's top-left pixel, so
    patch c is `view[centre_y[c] - half - y0, centre_x[c] - half - x0]`.
    """
    half = patch_px // 2
    h, w, _ = resampled.shape
    need_y0, need_y1 = int(centre_y.min()) - half, int(centre_y.max()) + half + 1
    need_x0, need_x1 = int(centre_x.min()) - half, int(centre_x.max()) + half + 1
    pad = (
        (max(0, origin_y - need_y0), max(0, need_y1 - origin_y - h)),
        (max(0, origin_x - need_x0), max(0, need_x1 - origin_x - w)),
        (0, 0),
    )
    if any(pad[0]) or any(pad[1]):
        if (origin_y - pad[0][0] < -half or origin_x - pad[1][0] < -half
                or origin_y + h + pad[0][1] > dst_height_px + half
                or origin_x + w + pad[1][1] > dst_width_px + half):
            raise AssertionError("A patch needs pixels beyond the slide border plus half a patch.")
        if pad_mode == "constant":
            resampled = np.pad(resampled, pad, mode="constant", constant_values=pad_value)
        else:
            resampled = np.pad(resampled, pad, mode="reflect")
        origin_y -= pad[0][0]
        origin_x -= pad[1][0]
    return _positions_view(resampled, patch_px), origin_y + half, origin_x + half


def _positions_view(image: np.ndarray, patch_px: int) -> np.ndarray:
    """Read-only (y, x, P, P, 3) view: [y, x] is the patch whose top-left pixel is (y, x)."""
    sy, sx, sc = image.strides
    return as_strided(
        image,
        shape=(image.shape[0] - patch_px + 1, image.shape[1] - patch_px + 1, patch_px, patch_px, 3),
        strides=(sy, sx, sy, sx, sc),
        writeable=False,
    )


def cut_patches(
    resampled: np.ndarray,
    origin_y: int,
    origin_x: int,
    centre_y: np.ndarray,
    centre_x: np.ndarray,
    patch_px: int,
    dst_height_px: int,
    dst_width_px: int,
    pad_mode: str = "reflect",
    pad_value: int = 255,
) -> np.ndarray:
    """(k, patch_px, patch_px, 3) patches centred on patch-grid pixels, in one fancy index."""
    view, y0, x0 = patch_view(
        resampled, origin_y, origin_x, centre_y, centre_x, patch_px,
        dst_height_px, dst_width_px, pad_mode, pad_value,
    )
    return view[np.asarray(centre_y) - y0, np.asarray(centre_x) - x0]


def _kept(buffer: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """`buffer` if it has `shape`, else a new uint8 array (fresh pages cost more than a copy)."""
    if buffer is None or buffer.shape != shape:
        return np.empty(shape, np.uint8)
    return buffer


class _TileCanvas:
    """One resampled tile window, padded past the slide border, in buffers reused per tile.

    Interior tiles are resampled straight into a reused buffer; a tile at the slide border is
    resampled into the middle of a larger buffer whose margins (half a patch wide, only on the
    sides where the window meets the border) are then filled by reflection or a constant, so
    every patch of a tile is one slice of the canvas and edge patches need no work of their own.
    """

    def __init__(self, plan: PatchPlan, params: PatchParams) -> None:
        self.plan, self.params = plan, params
        self.half = params.patch_px // 2
        self._buffers: dict[tuple[int, int], np.ndarray] = {}
        self._source: np.ndarray | None = None

    def _buffer(self, h: int, w: int) -> np.ndarray:
        if (h, w) not in self._buffers:
            if len(self._buffers) > 8:  # a slide has at most 4 tile shapes per padding
                self._buffers.clear()
            self._buffers[h, w] = np.empty((h, w, 3), np.uint8)
        return self._buffers[h, w]

    def render(self, window: np.ndarray, ry0: int, rx0: int) -> tuple[np.ndarray, int, int]:
        """The canvas of a source window at (ry0, rx0) and the patch-grid pixel of its [0, 0]."""
        plan, grid, half = self.plan, self.plan.grid, self.half
        if not window.flags.c_contiguous:  # a view into a larger image: copy to a kept buffer
            self._source = _kept(self._source, window.shape)
            self._source[...] = window
            window = self._source
        h, w = grid.dst_size(window.shape[0]), grid.dst_size(window.shape[1])
        oy, ox = ry0 * grid.q // grid.p, rx0 * grid.q // grid.p
        top, left = half if oy == 0 else 0, half if ox == 0 else 0
        bottom = half if oy + h == plan.dst_height_px else 0
        right = half if ox + w == plan.dst_width_px else 0
        if not (top or left or bottom or right):
            return resample_rgb(window, grid, self._buffer(h, w)), oy, ox
        canvas = self._buffer(top + h + bottom, left + w + right)
        if grid.p == grid.q:
            canvas[top : top + h, left : left + w] = window
        else:
            inner = self._buffer(h, w)
            canvas[top : top + h, left : left + w] = resample_rgb(window, grid, inner)
        if self.params.pad_mode == "constant" or min(h, w) <= half:
            if self.params.pad_mode == "constant":
                padded = np.pad(canvas[top : top + h, left : left + w],
                                ((top, bottom), (left, right), (0, 0)),
                                mode="constant", constant_values=self.params.pad_value)
            else:  # a slide narrower than half a patch: reflect more than once
                padded = np.pad(canvas[top : top + h, left : left + w],
                                ((top, bottom), (left, right), (0, 0)), mode="reflect")
            canvas[...] = padded
        else:  # reflect about the border pixel, columns first, then whole rows (corners too)
            rows = slice(top, top + h)
            if left:
                canvas[rows, :left] = canvas[rows, left + 1 : 2 * left + 1][:, ::-1]
            if right:
                e = left + w
                canvas[rows, e:] = canvas[rows, e - right - 1 : e - 1][:, ::-1]
            if top:
                canvas[:top] = canvas[top + 1 : 2 * top + 1][::-1]
            if bottom:
                e = top + h
                canvas[e:] = canvas[e - bottom - 1 : e - 1][::-1]
        return canvas, oy - top, ox - left


def extract_patches(
    read_rgb: Callable[[int, int, int, int], np.ndarray],
    plan: PatchPlan,
    write_block: Callable[[int, np.ndarray], None],
    params: PatchParams = PatchParams(),
) -> PatchSummary:
    """Cut every planned patch from an RGB slide read tile by tile, writing store rows.

    `read_rgb(y0, x0, y1, x1)` returns the slide's (h, w, 3) uint8 RGB over a source box;
    `write_block(start_row, images)` receives consecutive store rows.
    """
    t0 = time.perf_counter()
    grid, P = plan.grid, params.patch_px
    assembler = ChunkAssembler(
        plan.n_patches, (P, P, 3), params.chunk_rows, write_block,
        int(params.max_buffer_mb * 2**20),
    )
    tile_y, tile_x = plan.tile_of()
    n_cols = -(-plan.src_width_px // plan.tile_px)
    tile_id = tile_y * n_cols + tile_x
    order = np.argsort(tile_id, kind="stable")
    ids, starts = np.unique(tile_id[order], return_index=True)
    bounds = [*starts.tolist(), len(order)]
    halo = tile_halo_px(grid, P)
    canvas = _TileCanvas(plan, params)
    half = P // 2
    for k, tid in enumerate(ids.tolist()):
        rows = order[bounds[k] : bounds[k + 1]]
        ty, tx = divmod(int(tid), n_cols)
        y0, x0 = ty * plan.tile_px, tx * plan.tile_px
        y1 = min(plan.src_height_px, y0 + plan.tile_px)
        x1 = min(plan.src_width_px, x0 + plan.tile_px)
        ry0, rx0 = max(0, y0 - halo), max(0, x0 - halo)
        ry1, rx1 = min(plan.src_height_px, y1 + halo), min(plan.src_width_px, x1 + halo)
        image, oy, ox = canvas.render(read_rgb(ry0, rx0, ry1, rx1), ry0, rx0)
        iy, ix = plan.centre_y[rows] - half - oy, plan.centre_x[rows] - half - ox
        h, w = image.shape[:2]
        if iy.min() < 0 or ix.min() < 0 or iy.max() > h - P or ix.max() > w - P:
            raise AssertionError("A tile window does not cover its patches; halo too small.")
        view = _positions_view(image, P)
        assembler.add(rows, lambda i, view=view, iy=iy, ix=ix: view[iy[i], ix[i]])
    assembler.finish()
    return PatchSummary(
        slide_id=plan.slide_id, n_patches=plan.n_patches, n_edge=int(plan.edge.sum()),
        n_tiles=len(ids), seconds=time.perf_counter() - t0,
        peak_open_chunks=assembler.peak_chunks, spills=assembler.spills,
    )


def patch_table(labels: pl.DataFrame, features: pl.DataFrame, slide_id: str) -> pl.DataFrame:
    """The labelled nuclei of one slide with their centroids: nucleus_id, class_index,
    centroid_y_px, centroid_x_px (class_index >= 0 only).

    Raises SlideInputError when a table belongs to another slide or a labelled nucleus has no
    features row.
    """
    for name, frame in (("nucleus_labels", labels), ("nucleus_features", features)):
        if "slide_id" in frame.columns:
            other = frame.filter(pl.col("slide_id") != slide_id)
            if other.height:
                raise SlideInputError(
                    f"The {name} partition of slide {slide_id!r} holds {other.height} rows of "
                    f"slide {other['slide_id'][0]!r}; re-materialise {name} for {slide_id!r}."
                )
    kept = labels.filter(pl.col("class_index") >= 0).select("nucleus_id", "class_index")
    table = kept.join(
        features.select("nucleus_id", "centroid_y_px", "centroid_x_px"),
        on="nucleus_id", how="left",
    )
    missing = table.filter(pl.col("centroid_y_px").is_null())
    if missing.height:
        raise SlideInputError(
            f"Slide {slide_id!r}: {missing.height} labelled nuclei have no nucleus_features row "
            f"(e.g. nucleus_id {missing['nucleus_id'][0]}); labels and features come from "
            "different segmentations. Re-materialise nucleus_features and nucleus_labels."
        )
    return table

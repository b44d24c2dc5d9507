"""Beer-Lambert virtual H&E of a whole slide: streamed tile by tile vs rendered at once.

Run: python -m pytest tests/benchmarks/test_bench_vhe.py -s
A 27-stain 2048 x 2048 slide (the phantom tiled) in a slide store; ours streams it from Zarr
into a virtual H&E store with the 0.5 µm/px level; the peer loads the slide and renders it in
one call. Peak memory by tracemalloc (numpy reports its buffers), plus the process's peak RSS.
"""

import resource
import time
import tracemalloc

import numpy as np

from pipelines.patches import ResampleGrid
from pipelines.vhe.beer_lambert import BeerLambertBackend
from pipelines.vhe.streaming import StreamParams, render_slide
from storage.slide_store import SlideInfo, create_slide, open_slide
from storage.vhe_store import VirtualHELevel, create_vhe
from tests.vhe_phantom import make_phantom

SIDE = 2048


def test_bench_beer_lambert_slide(tmp_path):
    ph = make_phantom(512, 512, seed=7)
    image = np.tile(ph.image, (1, SIDE // 512, SIDE // 512))
    info = SlideInfo("bench", ph.stains, 0.32, SIDE, SIDE, "uint16")
    with create_slide(tmp_path / "slide.zarr", info) as writer:
        writer.write(0, 0, image)
    del image
    slide = open_slide(tmp_path / "slide.zarr")
    grid = ResampleGrid.between(0.32, 0.5)
    tile = grid.align(1024)
    levels = [VirtualHELevel(0.32, SIDE, SIDE, tile),
              VirtualHELevel(0.5, grid.dst_size(SIDE), grid.dst_size(SIDE), tile * 16 // 25)]

    tracemalloc.start()
    t0 = time.perf_counter()
    with create_vhe(tmp_path / "vhe.zarr", "bench", levels, "beer_lambert") as writer:
        summary, _ = render_slide(slide, BeerLambertBackend(), writer.write,
                                  StreamParams(tile_px=tile), grid)
    ours_s = time.perf_counter() - t0
    _, ours_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    tracemalloc.start()
    t0 = time.perf_counter()
    whole = slide.read()
    backend = BeerLambertBackend().calibrate(whole.reshape(len(ph.stains), -1)[:, ::8], "bench")
    backend.render(whole, ph.stains, 0.32)
    peer_s = time.perf_counter() - t0
    _, peer_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    mp = SIDE * SIDE / 1e6
    print(f"\nslide {SIDE}x{SIDE} px, {len(ph.stains)} stains ({SIDE * SIDE * 54 / 2**20:.0f} MiB "
          f"uint16), {summary.n_tiles} tiles")
    print(f"ours (stream from Zarr, render, write both levels): {mp / ours_s:.2f} MP/s, "
          f"peak {ours_peak / 2**20:.0f} MiB")
    print(f"peer (load whole slide, render at once, no writing): {mp / peer_s:.2f} MP/s, "
          f"peak {peer_peak / 2**20:.0f} MiB")
    print(f"ratio speed ours/peer: {peer_s / ours_s:.2f}x; memory peer/ours: "
          f"{peer_peak / ours_peak:.1f}x; process peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    assert ours_peak < peer_peak

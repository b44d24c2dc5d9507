"""Virtual H&E: render MxIF slides as transmitted-light H&E.

Backends implement `VirtualHEBackend` (base.py): `beer_lambert` (physically based, no training)
and `cyclegan` (learned, pipelines/vhe/cyclegan/). `streaming.render_slide` renders a whole
slide tile by tile with bounded memory.
"""

from pipelines.vhe.base import VirtualHEBackend

__all__ = ["VirtualHEBackend"]

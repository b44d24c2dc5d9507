"""Augmentation of virtual H&E towards the spread of real H&E: stain, colour, blur, noise, JPEG.

Virtual H&E from one renderer is one staining protocol: the same dye spectra, pale nuclei,
smooth pink. Real sections differ by dye amounts (nuclei two or three times darker), spectra
(hue), background hematoxylin, fibre texture, focus, noise and compression. Each crop is
therefore re-stained in optical-density space before the colour jitter:

1. OD = -ln(I / 255) is split into hematoxylin, eosin and a residual along the renderer's own
   dye vectors (pipelines/vhe/beer_lambert/), so the split is exact for virtual H&E.
2. Hematoxylin is scaled slide-wide and per nucleus (labels are known), eosin slide-wide and by
   a smooth random texture; some hematoxylin is added to the background (real cytoplasm and
   stroma are not free of it), part of it as stroma-like fibres, so darkness alone does not
   say "nucleus" and thin stringy dark texture is background.
3. The amounts are recombined with dye vectors turned by a random small angle, then come
   gamma, brightness, contrast and saturation, Gaussian blur, sensor noise and JPEG.

Geometry (flips, quarter turns) is applied to image and labels alike; scale is chosen when the
crop is cut (pipelines/segment/he_learned/).
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from pipelines.vhe.beer_lambert import EOSIN_OD, HEMATOXYLIN_OD

Range = tuple[float, float]


@dataclass(frozen=True)
class HeAugmentParams:
    """Ranges of the random draws; factors are drawn log-uniformly, the rest uniformly.

    Set `enabled=False` for none (geometry only stays on with `flips`).
    """

    enabled: bool = True
    flips: bool = True
    hematoxylin_factor: Range = (0.7, 3.5)
    nucleus_factor: Range = (0.6, 1.6)
    eosin_factor: Range = (0.4, 5.0)
    eosin_texture: Range = (0.0, 0.6)
    texture_sigma_px: Range = (1.0, 6.0)
    background_hematoxylin: Range = (0.0, 0.25)
    fibre_probability: float = 0.6
    fibre_hematoxylin: Range = (0.0, 0.2)
    dye_angle_deg: float = 12.0
    gamma: Range = (0.7, 1.4)
    brightness: Range = (-0.12, 0.12)
    contrast: Range = (0.7, 1.3)
    saturation: Range = (0.5, 1.6)
    blur_probability: float = 0.5
    blur_sigma_px: Range = (0.3, 1.5)
    noise_sigma: Range = (0.0, 8.0)
    jpeg_probability: float = 0.5
    jpeg_quality: tuple[int, int] = (30, 95)

    def to_json(self) -> dict:
        return asdict(self)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def dye_matrix(hematoxylin=HEMATOXYLIN_OD, eosin=EOSIN_OD) -> np.ndarray:
    """(3, 3) rows: hematoxylin, eosin and their cross product (residual), unit OD vectors."""
    h, e = _unit(hematoxylin), _unit(eosin)
    r = np.cross(h, e)
    return np.stack([h, e, r / np.linalg.norm(r)])


DYES = dye_matrix()
DYES_INVERSE = np.linalg.inv(DYES)


def _log_uniform(rng: np.random.Generator, bounds: Range) -> float:
    low, high = bounds
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Zero-mean, unit-std smooth noise (float32)."""
    field = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_px)
    std = float(field.std())
    return (field - field.mean()) / (std if std > 0 else 1.0)


def _fibre_field(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Zero-mean, unit-std noise stretched along a random direction: stroma-like fibres."""
    side = int(np.ceil(1.5 * max(shape)))
    short, long = rng.uniform(0.5, 1.5), rng.uniform(4.0, 12.0)
    field = ndi.gaussian_filter(rng.standard_normal((side, side)).astype(np.float32),
                                (short, long))
    field = ndi.rotate(field, rng.uniform(0, 180), reshape=False, order=1, mode="reflect")
    y0, x0 = (side - shape[0]) // 2, (side - shape[1]) // 2
    field = field[y0 : y0 + shape[0], x0 : x0 + shape[1]]
    std = float(field.std())
    return (field - field.mean()) / (std if std > 0 else 1.0)


def _turn(v: np.ndarray, rng: np.random.Generator, max_deg: float) -> np.ndarray:
    """`v` turned by a random angle up to `max_deg` about a random axis, kept non-negative."""
    axis = _unit(rng.standard_normal(3))
    angle = np.deg2rad(rng.uniform(0, max_deg))
    turned = (v * np.cos(angle) + np.cross(axis, v) * np.sin(angle)
              + axis * np.dot(axis, v) * (1 - np.cos(angle)))
    turned = np.clip(turned, 0.02, None)
    return turned / np.linalg.norm(turned)


def restain(rgb: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
            params: HeAugmentParams) -> np.ndarray:
    """Steps 1-2 above: new dye amounts and spectra, (h, w, 3) float32 RGB in [0, 255]."""
    od = -np.log(np.maximum(rgb.astype(np.float32), 1.0) / 255.0)
    amounts = od.reshape(-1, 3) @ DYES_INVERSE.astype(np.float32)  # (n, [H, E, residual])
    shape = rgb.shape[:2]
    hema = amounts[:, 0].reshape(shape)
    eosin = amounts[:, 1].reshape(shape)
    hema *= _log_uniform(rng, params.hematoxylin_factor)
    n = int(labels.max()) if labels.size else 0
    if n:
        lo, hi = np.log(params.nucleus_factor[0]), np.log(params.nucleus_factor[1])
        per_nucleus = np.exp(rng.uniform(lo, hi, n + 1)).astype(np.float32)
        per_nucleus[0] = 1.0
        hema *= per_nucleus[labels]
    sigma = rng.uniform(*params.texture_sigma_px)
    eosin *= _log_uniform(rng, params.eosin_factor)
    eosin *= np.exp(rng.uniform(*params.eosin_texture) * _smooth_field(rng, shape, sigma))
    if rng.random() < params.fibre_probability:
        fibres = _fibre_field(rng, shape)
        eosin *= np.exp(rng.uniform(*params.eosin_texture) * fibres)
        outside = labels == 0
        hema += (np.float32(rng.uniform(*params.fibre_hematoxylin))
                 * np.clip(fibres, 0.0, None) * outside)
    background = rng.uniform(*params.background_hematoxylin)
    if background > 0:
        field = np.clip(1.0 + 0.5 * _smooth_field(rng, shape, rng.uniform(1.0, 8.0)), 0, None)
        hema += np.float32(background) * field * (labels == 0)
    dyes = DYES.copy()
    dyes[0] = _turn(dyes[0], rng, params.dye_angle_deg)
    dyes[1] = _turn(dyes[1], rng, params.dye_angle_deg)
    amounts[:, 0], amounts[:, 1] = hema.ravel(), eosin.ravel()
    od = (amounts @ dyes.astype(np.float32)).reshape(*shape, 3)
    return 255.0 * np.exp(-np.clip(od, 0.0, None))


def _colour(rgb: np.ndarray, rng: np.random.Generator, params: HeAugmentParams) -> np.ndarray:
    x = np.clip(rgb / 255.0, 0.0, 1.0) ** rng.uniform(*params.gamma)
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(*params.saturation)
    mean = x.mean()
    x = (x - mean) * rng.uniform(*params.contrast) + mean + rng.uniform(*params.brightness)
    return np.clip(x * 255.0, 0.0, 255.0)


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as image:
        return np.asarray(image.convert("RGB"))


def augment_he(rgb: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
               params: HeAugmentParams = HeAugmentParams()) -> tuple[np.ndarray, np.ndarray]:
    """A re-stained, jittered copy of an (h, w, 3) uint8 crop and its (h, w) labels."""
    if params.flips:
        k = int(rng.integers(4))
        rgb, labels = np.rot90(rgb, k), np.rot90(labels, k)
        if rng.random() < 0.5:
            rgb, labels = rgb[:, ::-1], labels[:, ::-1]
        rgb, labels = np.ascontiguousarray(rgb), np.ascontiguousarray(labels)
    if not params.enabled:
        return rgb, labels
    ids, inverse = np.unique(labels, return_inverse=True)
    compact = inverse.reshape(labels.shape) + (0 if ids[0] == 0 else 1)
    x = _colour(restain(rgb, compact, rng, params), rng, params)
    if rng.random() < params.blur_probability:
        sigma = rng.uniform(*params.blur_sigma_px)
        x = ndi.gaussian_filter(x, (sigma, sigma, 0))
    noise = rng.uniform(*params.noise_sigma)
    if noise > 0:
        x = x + rng.normal(0.0, noise, x.shape)
    out = np.clip(x + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < params.jpeg_probability:
        out = _jpeg(out, int(rng.integers(params.jpeg_quality[0], params.jpeg_quality[1] + 1)))
    return out, labels

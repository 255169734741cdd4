"""Pinhole crops from equirectangular panoramas: camera maths, seeded parameters, fast decode+remap.

Conventions (see the design contract): a panorama's centre column looks along ``heading_deg``
(compass bearing) and bearing grows to the right; rows run from +90 degrees (top) to -90. A crop
looks along compass bearing ``yaw`` at ``pitch`` degrees above the horizon, with horizontal field of
view ``fov``; crops are square and never rolled.
"""

from __future__ import annotations

import hashlib
import io
import math
import warnings
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image

from unigeo.core import reasons

try:  # partial decoding through libjpeg-turbo, built with the package where a C compiler and libjpeg are found
    from unigeo import _jpegregion
except ImportError:  # pragma: no cover - the full scaled decode does the same work, slower
    _jpegregion = None  # type: ignore[assignment]

REGION_DECODE = _jpegregion is not None  # whether crops decode only the band of the panorama they see
REGION_MARGIN = 2  # pixels around a crop's footprint: bilinear neighbours and OpenCV's 1/32-px rounding

DEFAULT_PITCH = (-5.0, 15.0)
DEFAULT_FOV = (60.0, 100.0)
DRAFT_SCALES = (8, 4, 2, 1)  # the DCT scalings libjpeg offers
DEFAULT_MAX_PIXELS = 16384 * 8192
MIN_PANO_HEIGHT = 32
ASPECT_TOLERANCE = 0.01  # width / height may differ from 2 by this much
EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the transposition that turns the stored pixels upright.
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}


class PanoramaError(ValueError):
    """A panorama that decodes but cannot be used, with its reject reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class CropParams(NamedTuple):
    yaw: float
    pitch: float
    fov: float

    def as_json(self) -> dict[str, float]:
        return {"yaw": round(self.yaw, 4), "pitch": round(self.pitch, 4), "fov": round(self.fov, 4)}


def crop_params(seed: int, pano_id: str, index: int, pitch_range: tuple[float, float] = DEFAULT_PITCH,
                fov_range: tuple[float, float] = DEFAULT_FOV) -> CropParams:
    """Parameters of crop ``index`` of a panorama: yaw uniform over 360, pitch and fov uniform in their
    ranges, from a generator seeded by (seed, pano_id, index) alone."""
    pid = int.from_bytes(hashlib.sha256(pano_id.encode()).digest()[:8], "big")
    rng = np.random.default_rng([seed, pid, index])
    return CropParams(float(rng.uniform(0.0, 360.0)), float(rng.uniform(*pitch_range)), float(rng.uniform(*fov_range)))


def focal_px(fov_deg: float, size: int) -> float:
    """Focal length in pixels of a ``size``-px crop with horizontal field of view ``fov_deg``."""
    return size / 2.0 / math.tan(math.radians(fov_deg) / 2.0)


def needed_width(fov_deg: float, size: int) -> float:
    """Panorama width whose pixels are as fine as the crop's centre pixels (2*pi*focal)."""
    return 2.0 * math.pi * focal_px(fov_deg, size)


def draft_scale(pano_width: int, crops: list[CropParams], size: int) -> int:
    """The largest DCT scale (8, 4, 2, 1) that keeps every crop's angular resolution."""
    need = max(needed_width(c.fov, size) for c in crops)
    for s in DRAFT_SCALES:
        if pano_width / s >= need:
            return s
    return 1


def _rays(yaw_deg: float, pitch_deg: float, f: float, centres: np.ndarray, size: int
          ) -> tuple[np.ndarray, np.ndarray]:
    """Bearing and elevation (degrees) of rays through pixel positions ``centres`` (both axes)."""
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    c = (centres - size / 2.0) / f
    x, y = np.meshgrid(c, -c)  # x to the right, y up
    forward = np.array([math.sin(yaw) * math.cos(pitch), math.cos(yaw) * math.cos(pitch), math.sin(pitch)])
    right = np.array([math.cos(yaw), -math.sin(yaw), 0.0])
    up = np.cross(right, forward)
    ray = forward[None, None, :] + x[..., None] * right + y[..., None] * up
    east, north, upv = ray[..., 0], ray[..., 1], ray[..., 2]
    return np.degrees(np.arctan2(east, north)), np.degrees(np.arctan2(upv, np.hypot(east, north)))


def crop_rays(params: CropParams, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Compass bearing in [0, 360) and elevation (degrees) of every pixel centre of a crop, each (size, size)."""
    bearing, elevation = _rays(params.yaw, params.pitch, focal_px(params.fov, size), np.arange(size) + 0.5, size)
    return bearing % 360.0, elevation


def crop_angles(params: CropParams, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Bearing relative to ``yaw`` (degrees, in (-180, 180]) and elevation of every crop pixel; float32.

    Without roll, a pixel at normalised image coordinates (x right, y up) looks along
    east = x, north = cos(pitch) - y sin(pitch), up = sin(pitch) + y cos(pitch) in a frame turned by
    ``yaw``; north and up depend on the row alone, so only the two arctangents are per pixel.
    """
    pitch = math.radians(params.pitch)
    c = ((np.arange(size, dtype=np.float32) + 0.5 - size / 2.0) / np.float32(focal_px(params.fov, size)))
    x = c[None, :]
    y = -c[:, None]
    north = np.float32(math.cos(pitch)) - y * np.float32(math.sin(pitch))
    up = np.float32(math.sin(pitch)) + y * np.float32(math.cos(pitch))
    rel = np.degrees(np.arctan2(x, north))
    elevation = np.degrees(np.arctan2(up, np.sqrt(x * x + north * north)))
    return rel, elevation


def crop_map(pano_w: int, pano_h: int, heading_deg: float, params: CropParams, size: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """Source pixel coordinates (x wrapped into [0, pano_w), y clamped) for ``cv2.remap``; float32."""
    rel, elevation = crop_angles(params, size)
    offset = np.float32(((params.yaw - heading_deg) / 360.0 + 0.5) * pano_w - 0.5)
    map_x = np.mod(rel * np.float32(pano_w / 360.0) + offset, np.float32(pano_w))
    map_y = np.clip((np.float32(90.0) - elevation) * np.float32(pano_h / 180.0) - np.float32(0.5), 0.0, pano_h - 1.0)
    return map_x.astype(np.float32), map_y.astype(np.float32)


class Region(NamedTuple):
    """A rectangle of a panorama: columns x0:x1, rows y0:y1."""

    x0: int
    x1: int
    y0: int
    y1: int


def crop_region(maps: list[tuple[np.ndarray, np.ndarray]], pano_w: int, pano_h: int) -> Region:
    """The rectangle of a ``pano_w`` x ``pano_h`` panorama that crops with these ``crop_map`` maps sample.

    Rows span the crops' footprints; columns too, unless a footprint crosses the 0/360 seam or sees a pole,
    where they span the whole width.
    """
    x0, x1, y0, y1 = pano_w, 0, pano_h, 0
    for map_x, map_y in maps:
        y0 = min(y0, int(map_y.min()) - REGION_MARGIN)
        y1 = max(y1, int(map_y.max()) + 1 + REGION_MARGIN)
        lo, hi = float(map_x.min()), float(map_x.max())
        # A footprint clear of the seam has no pixel within one crop-column step of both edges; wrapped
        # x values jump by about pano_w between neighbouring crop pixels.
        jumps = [np.abs(np.diff(map_x, axis=a)) for a in (0, 1)]
        if any(j.size and float(j.max()) > pano_w / 2 for j in jumps):
            x0, x1 = 0, pano_w
        else:
            x0, x1 = min(x0, int(lo) - REGION_MARGIN), max(x1, int(hi) + 1 + REGION_MARGIN)
    if x0 < 0 or x1 > pano_w:
        x0, x1 = 0, pano_w
    return Region(x0, x1, max(0, y0), min(pano_h, y1))


def remap(pano: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    """Bilinear sampling with the 0/360 seam wrapped (OpenCV)."""
    return cv2.remap(pano, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


def remap_numpy(pano: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    """The same bilinear sampling in plain numpy: the reference and the benchmark's baseline."""
    h, w = pano.shape[:2]
    x0 = np.floor(map_x).astype(np.int64)
    y0 = np.floor(map_y).astype(np.int64)
    fx = (map_x - x0)[..., None]
    fy = (map_y - y0)[..., None]
    x1 = (x0 + 1) % w
    x0 %= w
    y1 = np.minimum(y0 + 1, h - 1)
    img = pano.astype(np.float32)
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return np.clip(np.rint(top * (1 - fy) + bottom * fy), 0, 255).astype(np.uint8)


def orientation(img: Image.Image) -> int:
    """The EXIF orientation of an image (1, upright, when absent or unknown)."""
    value = img.getexif().get(EXIF_ORIENTATION, 1)
    return int(value) if value in _UPRIGHT else 1


def check_panorama(img: Image.Image, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int, int]:
    """(width, height, EXIF orientation) of an opened panorama, upright; only the header is read.

    Raises:
        PanoramaError: more than ``max_pixels`` pixels, not 2:1, or fewer than ``MIN_PANO_HEIGHT`` rows.
    """
    w, h = img.size
    turn = orientation(img)
    if turn >= 5:
        w, h = h, w
    size = f"{w}x{h}" + (f" (EXIF orientation {turn} applied)" if turn != 1 else "")
    if w * h > max_pixels:
        raise PanoramaError(reasons.IMAGE_TOO_LARGE, f"{size} = {w * h} pixels > --max-pixels {max_pixels}")
    if abs(w / h - 2.0) > ASPECT_TOLERANCE:
        raise PanoramaError(reasons.NOT_EQUIRECTANGULAR, f"{size} is not an equirectangular 2:1 image")
    if h < MIN_PANO_HEIGHT:
        raise PanoramaError(reasons.IMAGE_TOO_SMALL, f"{size} has fewer than {MIN_PANO_HEIGHT} rows")
    return w, h, turn


def _load(img: Image.Image, scale: int, turn: int = 1) -> np.ndarray:
    if scale > 1:
        img.draft("RGB", (img.width // scale, img.height // scale))
    rgb = img.convert("RGB")
    return np.asarray(rgb.transpose(_UPRIGHT[turn]) if turn != 1 else rgb)


def open_image(data: bytes) -> Image.Image:
    """Open an image (header only); Pillow's decompression-bomb check becomes ``image_too_large``.

    Raises:
        PanoramaError: more than twice Pillow's ``MAX_IMAGE_PIXELS``.
        OSError: not an image.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # check_panorama decides
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise PanoramaError(reasons.IMAGE_TOO_LARGE, str(e)) from e


def decode(jpeg: bytes, scale: int = 1) -> np.ndarray:
    """Decode a JPEG to RGB at 1/``scale`` of its size with libjpeg's DCT scaling (Pillow ``draft``).

    Raises:
        OSError: not a JPEG, or truncated.
    """
    with Image.open(io.BytesIO(jpeg)) as img:
        return _load(img, scale)


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality, optimize=False)
    return buf.getvalue()


def scaled_size(width: int, height: int, scale: int) -> tuple[int, int]:
    """The size libjpeg decodes a ``width`` x ``height`` JPEG to at 1/``scale`` (rounded up)."""
    return -(-width // scale), -(-height // scale)


def decode_region(jpeg: bytes, scale: int, region: Region) -> tuple[np.ndarray, int] | None:
    """Rows ``region.y0:y1`` of a JPEG at 1/``scale``, columns ``x0:x1`` widened to whole iMCUs, as an RGB
    array ``(y1 - y0, width, 3)`` whose first column is returned beside it; None where partial decoding is
    not available (no native module, a CMYK JPEG, data past the end-of-image marker not checked).

    Raises:
        OSError: the JPEG cannot be decoded or ends early.
    """
    if _jpegregion is None or not jpeg.rstrip(b"\0").endswith(b"\xff\xd9"):
        return None  # without its end marker, Pillow's full decode decides whether the file is truncated
    try:
        pixels, x, y, w, h, _, _ = _jpegregion.decode_region(jpeg, scale, *region)
    except _jpegregion.UnsupportedError:
        return None
    return np.frombuffer(pixels, np.uint8).reshape(h, w, 3), x


def render_crops(jpeg: bytes, heading_deg: float, params: list[CropParams], size: int, quality: int = 90,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> list[bytes]:
    """Decode a panorama once, upright (EXIF orientation applied) and at the smallest scale every crop
    allows, and render each crop as JPEG. Only the band of rows (and, away from the seam, of columns) the
    crops see is decoded where the native decoder is built; the pixels equal those of a full decode.

    Raises:
        PanoramaError: too large, not 2:1, or too small (``check_panorama``).
        OSError: the JPEG cannot be decoded.
    """
    with open_image(jpeg) as img:
        width, height, turn = check_panorama(img, max_pixels)
        scale = draft_scale(width, params, size)
        w, h = scaled_size(width, height, scale)
        maps = [crop_map(w, h, heading_deg, p, size) for p in params]
        part = None
        if REGION_DECODE and turn == 1 and img.format == "JPEG":
            region = crop_region(maps, w, h)
            part = decode_region(jpeg, scale, region)
        if part is None:
            pano, x0, y0 = _load(img, scale, turn), 0, 0
            if pano.shape[:2] != (h, w):  # Pillow chose another scale: map onto what it decoded
                maps = [crop_map(pano.shape[1], pano.shape[0], heading_deg, p, size) for p in params]
        else:
            (pano, x0), y0 = part, region.y0
    out = []
    for map_x, map_y in maps:
        if x0 or y0:
            map_x, map_y = map_x - np.float32(x0), map_y - np.float32(y0)
        out.append(encode_jpeg(remap(pano, map_x, map_y), quality))
    return out

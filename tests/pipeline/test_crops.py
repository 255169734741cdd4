"""Crop conventions on synthetic panoramas with markers at known bearings."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from unigeo.pipeline import crops
from unigeo.pipeline.crops import (
    CropParams,
    Region,
    crop_map,
    crop_params,
    crop_region,
    decode,
    decode_region,
    draft_scale,
    focal_px,
    remap,
    remap_numpy,
    render_crops,
)

W, H, SIZE = 2048, 1024, 256
HEADING = 30.0


def pano_with_marker(bearing: float, elevation: float = 0.0, half_deg: float = 2.0, heading: float = HEADING
                     ) -> np.ndarray:
    """Grey panorama with a red square of +-``half_deg`` centred at (bearing, elevation)."""
    img = np.full((H, W, 3), 128, np.uint8)
    col_b = ((np.arange(W) + 0.5) / W - 0.5) * 360.0 + heading
    row_e = 90.0 - (np.arange(H) + 0.5) * 180.0 / H
    db = (col_b - bearing + 180.0) % 360.0 - 180.0
    inside = (np.abs(row_e - elevation)[:, None] <= half_deg) & (np.abs(db)[None, :] <= half_deg)
    img[inside] = (255, 0, 0)
    return img


def render(pano: np.ndarray, params: CropParams, heading: float = HEADING) -> np.ndarray:
    return remap(pano, *crop_map(pano.shape[1], pano.shape[0], heading, params, SIZE))


def marker(crop: np.ndarray) -> tuple[float, float, float]:
    """(x, y, width) of the red pixels' centroid and extent."""
    red = (crop[..., 0] > 180) & (crop[..., 1] < 80)
    ys, xs = np.nonzero(red)
    assert xs.size > 0, "marker not in view"
    return float(xs.mean() + 0.5), float(ys.mean() + 0.5), float(xs.max() - xs.min() + 1)


def test_crop_along_the_marker_bearing_centres_it() -> None:
    x, y, _ = marker(render(pano_with_marker(100.0), CropParams(100.0, 0.0, 90.0)))
    assert x == pytest.approx(SIZE / 2, abs=1.0) and y == pytest.approx(SIZE / 2, abs=1.0)


def test_turning_right_moves_the_marker_left() -> None:
    x, _, _ = marker(render(pano_with_marker(100.0), CropParams(130.0, 0.0, 90.0)))
    expected = SIZE / 2 - focal_px(90.0, SIZE) * math.tan(math.radians(30.0))
    assert x == pytest.approx(expected, abs=1.5) and x < SIZE / 2


def test_pitching_up_moves_the_marker_down() -> None:
    _, y, _ = marker(render(pano_with_marker(100.0), CropParams(100.0, 10.0, 90.0)))
    expected = SIZE / 2 + focal_px(90.0, SIZE) * math.tan(math.radians(10.0))
    assert y == pytest.approx(expected, abs=1.5)


def test_marker_above_the_horizon_is_in_the_upper_half() -> None:
    _, y, _ = marker(render(pano_with_marker(100.0, elevation=20.0), CropParams(100.0, 0.0, 90.0)))
    assert y == pytest.approx(SIZE / 2 - focal_px(90.0, SIZE) * math.tan(math.radians(20.0)), abs=1.5)


def test_halving_the_fov_doubles_the_marker() -> None:
    pano = pano_with_marker(100.0, half_deg=3.0)
    _, _, wide = marker(render(pano, CropParams(100.0, 0.0, 60.0)))
    _, _, narrow = marker(render(pano, CropParams(100.0, 0.0, 30.0)))
    expected = math.tan(math.radians(30.0)) / math.tan(math.radians(15.0))  # f grows as 1/tan(fov/2)
    assert narrow / wide == pytest.approx(expected, rel=0.06)
    assert 1.9 < narrow / wide < 2.3


def test_crops_across_the_seam_are_continuous() -> None:
    # The marker sits on the panorama's left/right edge (bearing heading + 180).
    seam = (HEADING + 180.0) % 360.0
    pano = pano_with_marker(seam, half_deg=5.0)
    assert pano[H // 2, 0, 0] == 255 and pano[H // 2, W - 1, 0] == 255
    crop = render(pano, CropParams(seam, 0.0, 90.0))
    x, _, width = marker(crop)
    assert x == pytest.approx(SIZE / 2, abs=1.0)
    # The same view from the panorama rolled by half a turn (seam now in the middle) is identical.
    rolled = np.roll(pano, W // 2, axis=1)
    same = render(rolled, CropParams(seam, 0.0, 90.0), heading=(HEADING + 180.0) % 360.0)
    assert np.abs(crop.astype(int) - same.astype(int)).max() <= 1


def test_pole_crops_are_continuous_and_never_wrap_to_the_ground() -> None:
    pano = np.zeros((H, W, 3), np.uint8)
    rows = np.linspace(0, 1, H)[:, None]
    pano[..., 2] = (255 * (rows < 0.5)).astype(np.uint8)  # sky blue on top
    pano[..., 1] = (255 * (rows >= 0.5)).astype(np.uint8)  # ground green below
    pano[..., 0] = (np.arange(W) * 200 // W)[None, :].astype(np.uint8)  # a smooth ramp across columns
    up = render(pano, CropParams(0.0, 90.0, 90.0))
    assert (up[..., 2] == 255).all() and (up[..., 1] == 0).all()
    down = render(pano, CropParams(0.0, -90.0, 90.0))
    assert (down[..., 1] == 255).all() and (down[..., 2] == 0).all()
    assert (up[..., 0] > 0).any()  # columns fan out around the pole: the ramp is visible


def test_opencv_and_numpy_remaps_agree() -> None:
    rng = np.random.default_rng(0)
    pano = rng.integers(0, 255, (H // 4, W // 4, 3), dtype=np.uint8)
    for p in (CropParams(10.0, 5.0, 80.0), CropParams(357.0, -60.0, 100.0), CropParams(200.0, 85.0, 60.0)):
        mx, my = crop_map(pano.shape[1], pano.shape[0], HEADING, p, 128)
        diff = np.abs(remap(pano, mx, my).astype(int) - remap_numpy(pano, mx, my).astype(int))
        assert diff.max() <= 2 and diff.mean() < 0.6


def test_draft_scale_keeps_the_crop_resolution() -> None:
    assert draft_scale(8192, [CropParams(0, 0, 90.0)], 256) == 8  # 1024 px >= 2*pi*128 = 804
    assert draft_scale(8192, [CropParams(0, 0, 60.0)], 256) == 4  # needs 1393 px
    assert draft_scale(8192, [CropParams(0, 0, 90.0), CropParams(0, 0, 60.0)], 256) == 4
    assert draft_scale(1024, [CropParams(0, 0, 60.0)], 256) == 1


def test_reduced_decode_gives_the_same_crop_as_full_decode() -> None:
    rng = np.random.default_rng(1)
    coarse = rng.integers(0, 255, (64, 128, 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(coarse).resize((4096, 2048), Image.BICUBIC))
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, format="JPEG", quality=92)
    jpeg = buf.getvalue()
    params = [CropParams(45.0, 5.0, 90.0)]
    assert decode(jpeg, 4).shape == (512, 1024, 3)
    fast = np.asarray(Image.open(io.BytesIO(render_crops(jpeg, HEADING, params, SIZE)[0])))
    full = remap(decode(jpeg), *crop_map(4096, 2048, HEADING, params[0], SIZE))
    assert np.abs(fast.astype(int) - full.astype(int)).mean() < 4


def test_corrupt_jpeg_raises_oserror() -> None:
    with pytest.raises(OSError):
        render_crops(b"\xff\xd8\xff\xe0 not really", 0.0, [CropParams(0, 0, 90)], 64)


def test_crop_params_are_seeded_per_panorama_and_index() -> None:
    a = crop_params(0, "p1", 0)
    assert a == crop_params(0, "p1", 0)
    assert a != crop_params(0, "p1", 1) and a != crop_params(0, "p2", 0) and a != crop_params(1, "p1", 0)
    many = [crop_params(0, f"p{i}", 0) for i in range(300)]
    assert all(0 <= c.yaw < 360 and -5 <= c.pitch <= 15 and 60 <= c.fov <= 100 for c in many)
    assert max(c.yaw for c in many) > 330 and min(c.yaw for c in many) < 30
    custom = crop_params(0, "p", 0, pitch_range=(0.0, 0.0), fov_range=(75.0, 75.0))
    assert custom.pitch == 0.0 and custom.fov == 75.0


def test_fast_map_matches_the_float64_ray_reference() -> None:
    from unigeo.pipeline.crops import crop_rays

    rng = np.random.default_rng(2)
    for _ in range(50):
        p = CropParams(float(rng.uniform(0, 360)), float(rng.uniform(-89, 89)), float(rng.uniform(30, 120)))
        bearing, elevation = crop_rays(p, 128)
        mx, my = crop_map(8192, 4096, HEADING, p, 128)
        ex = (((bearing - HEADING) / 360.0 + 0.5) * 8192 - 0.5) % 8192
        ey = np.clip((90.0 - elevation) / 180.0 * 4096 - 0.5, 0, 4095)
        dx = np.abs(mx - ex)
        assert np.minimum(dx, 8192 - dx).max() < 0.1 and np.abs(my - ey).max() < 0.1


# ---------------------------------------------------------------- partial decoding (unigeo._jpegregion)


def photo_jpeg(w: int = 2048, subsampling: int = 2, mode: str = "RGB", quality: int = 88) -> bytes:
    """A textured panorama-like JPEG (smooth colour field + fine noise) of ``w`` x ``w/2``."""
    rng = np.random.default_rng(w + subsampling)
    coarse = rng.integers(0, 255, (16, 32, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((w, w // 2), Image.BICUBIC)).astype(np.int16)
    img = np.clip(img + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    pil = Image.fromarray(img)
    (pil.convert(mode) if mode != "RGB" else pil).save(buf, format="JPEG", quality=quality, subsampling=subsampling)
    return buf.getvalue()


def test_the_native_region_decoder_is_built() -> None:
    """The README's install builds it (a C compiler and libjpeg-turbo's headers); without it crops still
    work, at the full-frame decode's speed, so CI insists on it."""
    assert crops.REGION_DECODE, "unigeo._jpegregion did not build: install libjpeg62-turbo-dev and a C compiler"


@pytest.mark.parametrize("subsampling", [0, 2])  # 4:4:4 and 4:2:0
@pytest.mark.parametrize("scale", [1, 2, 4, 8])
def test_a_decoded_region_has_the_pixels_of_the_full_decode(scale: int, subsampling: int) -> None:
    """Equal pixels, but for the first and last column of a column-cropped 4:2:0 decode at full scale,
    where chroma upsampling has no neighbour (the crop margin keeps crops clear of them)."""
    jpeg = photo_jpeg(subsampling=subsampling)
    full = decode(jpeg, scale)
    h, w = full.shape[:2]
    rng = np.random.default_rng(scale)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
        region = Region(x0, int(rng.integers(x0 + 1, w + 1)), y0, int(rng.integers(y0 + 1, h + 1)))
        part = decode_region(jpeg, scale, region)
        assert part is not None
        pixels, x = part
        assert x <= region.x0 and x + pixels.shape[1] >= region.x1 and pixels.shape[0] == region.y1 - region.y0
        same = full[region.y0:region.y1, x:x + pixels.shape[1]]
        if scale == 1 and subsampling == 2 and pixels.shape[1] < w:
            inner = slice(1, -1) if x + pixels.shape[1] < w else slice(1 if x else 0, None)
            pixels, same = pixels[:, inner], same[:, inner]
        np.testing.assert_array_equal(pixels, same)


@pytest.mark.parametrize("params", [
    [CropParams(45.0, 5.0, 90.0)],
    [CropParams(HEADING + 180.0 - 5.0, 0.0, 60.0)],  # across the 0/360 seam
    [CropParams(10.0, 80.0, 100.0)],  # the zenith in view
    [CropParams(200.0, -60.0, 100.0)],  # towards the ground
    [CropParams(0.0, 0.0, 60.0), CropParams(120.0, 10.0, 100.0), CropParams(250.0, -5.0, 80.0)],
])
def test_crops_from_the_region_are_those_of_the_full_frame(params: list[CropParams]) -> None:
    jpeg = photo_jpeg(4096)
    try:
        crops.REGION_DECODE = False
        full = render_crops(jpeg, HEADING, params, SIZE)
    finally:
        crops.REGION_DECODE = True
    region = crop_region([crop_map(1024, 512, HEADING, p, SIZE) for p in params], 1024, 512)
    assert render_crops(jpeg, HEADING, params, SIZE) == full
    if len(params) == 1 and abs(params[0].pitch) < 30:
        area = (region.x1 - region.x0) * (region.y1 - region.y0)
        assert region.y1 - region.y0 < 512 and area < 0.5 * 1024 * 512  # a band, not the frame


def test_a_truncated_panorama_is_still_an_error_when_its_crop_sees_only_the_intact_rows() -> None:
    jpeg = photo_jpeg(4096)
    with pytest.raises(OSError):
        render_crops(jpeg[: len(jpeg) * 3 // 4], HEADING, [CropParams(HEADING, 60.0, 60.0)], SIZE)


def test_grey_and_cmyk_panoramas_render_as_from_the_full_frame() -> None:
    for mode in ("L", "CMYK"):
        jpeg = photo_jpeg(2048, mode=mode)
        params = [CropParams(45.0, 5.0, 90.0)]
        try:
            crops.REGION_DECODE = False
            full = render_crops(jpeg, HEADING, params, 128)
        finally:
            crops.REGION_DECODE = True
        assert render_crops(jpeg, HEADING, params, 128) == full, mode


def test_progressive_panoramas_render_as_from_the_full_frame() -> None:
    buf = io.BytesIO()
    Image.open(io.BytesIO(photo_jpeg(2048))).save(buf, format="JPEG", quality=88, progressive=True)
    params = [CropParams(45.0, 5.0, 90.0), CropParams(200.0, -10.0, 60.0)]
    try:
        crops.REGION_DECODE = False
        full = render_crops(buf.getvalue(), HEADING, params, 128)
    finally:
        crops.REGION_DECODE = True
    assert render_crops(buf.getvalue(), HEADING, params, 128) == full

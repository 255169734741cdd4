"""The image encoders see an image's absolute colour (the cue shared by a facade and its roof): two
images that differ only by a colour shift get different embeddings, from the CNN path alone too."""

from __future__ import annotations

import torch

from unigeo.model.encoders import HistogramEncoder, ImageEncoder, colour_histogram


def test_colour_histogram_counts_pixels_per_joint_rgb_bin() -> None:
    img = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    img[0, 0] = 255  # all red
    img[1, :, :2] = 200  # half light grey, half black
    h = colour_histogram(img, 4)
    assert h.shape == (2, 64) and torch.allclose(h.sum(1), torch.ones(2))
    assert h[0, 3 * 16] == 1.0  # r bin 3, g 0, b 0
    assert h[1, 0] == 0.5 and h[1, 3 * 16 + 3 * 4 + 3] == 0.5


def test_a_colour_shift_changes_the_embedding() -> None:
    torch.manual_seed(0)
    base = torch.randint(60, 120, (1, 3, 32, 32), dtype=torch.uint8)
    shifted = base.clone()
    shifted[:, 0] += 100  # the same pattern, redder
    for bins in (8, 0):  # with and without the histogram branch
        enc = ImageEncoder(widths=(16, 32), colour_bins=bins).eval()
        with torch.no_grad():
            a, b = enc(base), enc(shifted)
        assert (a - b).abs().max() > 1e-2, f"colour_bins={bins}"


def test_the_histogram_tower_sees_colours_not_where_they_are() -> None:
    """Street view's default tower: the same pixels in another order embed the same (no layout to
    memorise), other colours do not."""
    torch.manual_seed(0)
    enc = HistogramEncoder().eval()
    img = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    shuffled = img.flatten(2)[:, :, torch.randperm(32 * 32)].view_as(img)
    recoloured = img.clone()
    recoloured[:, 2] //= 3  # less blue
    with torch.no_grad():
        a, b, c = enc(img), enc(shuffled), enc(recoloured)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-2


def test_street_view_takes_the_histogram_tower_with_the_scratch_image_tower_only() -> None:
    from unigeo.model.config import ModelConfig
    from unigeo.model.modalities import REGISTRY

    def sv_encoder(**kw: object) -> torch.nn.Module:
        return REGISTRY["sv"].encoder(ModelConfig(**kw))[0]  # type: ignore[arg-type]

    assert isinstance(sv_encoder(), HistogramEncoder)
    assert isinstance(sv_encoder(sv_tower="image"), ImageEncoder)
    assert isinstance(sv_encoder(image_tower="colour"), ImageEncoder)
    assert isinstance(sv_encoder(image_tower="colour", sv_tower="histogram"), HistogramEncoder)
    # A configuration saved before street view had a tower of its own loads with the tower it trained.
    old = {k: v for k, v in ModelConfig().to_json().items() if k != "sv_tower"}
    assert ModelConfig.from_json(old).street_view_tower() == "scratch"

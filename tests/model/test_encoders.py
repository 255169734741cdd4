"""The image encoder sees an image's absolute colour (the cue shared by a facade and its roof): two
images that differ only by a colour shift get different embeddings, from the CNN path alone too."""

from __future__ import annotations

import torch

from unigeo.model.encoders import ImageEncoder, colour_histogram


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

"""Equal Earth against PROJ, and the coordinate encoder's batch invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pyproj import Transformer

from unigeo.model.coords import KINDS, CoordinateEncoder
from unigeo.model.geo import equal_earth, equal_earth_unit, haversine_m


def test_equal_earth_agrees_with_pyproj_to_a_millimetre() -> None:
    rng = np.random.default_rng(0)
    lat = np.concatenate([rng.uniform(-90, 90, 50_000), [90, -90, 0, 0, 89.999999]])
    lon = np.concatenate([rng.uniform(-180, 180, 50_000), [0, 180, 180, -180, 45]])
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:8857", always_xy=True).transform(lon, lat)
    ours = equal_earth(torch.tensor(lat), torch.tensor(lon)).numpy()
    assert np.abs(ours[:, 0] - x).max() < 1e-3 and np.abs(ours[:, 1] - y).max() < 1e-3
    unit = equal_earth_unit(torch.tensor(lat), torch.tensor(lon)).numpy()
    assert np.abs(unit).max() <= 1.0 + 1e-12 and np.isclose(np.abs(unit).max(), 1.0)


def test_haversine() -> None:
    assert haversine_m(np.array(0.0), np.array(0.0), np.array(0.0), np.array(1.0)) == pytest.approx(111_195, rel=1e-4)
    assert haversine_m(np.array(42.35), np.array(-71.07), np.array(42.35), np.array(-71.07)) == 0.0


@pytest.mark.parametrize("kind, pool", [(k, "concat") for k in KINDS] + [("multiscale", "mean")])
def test_an_embedding_does_not_depend_on_its_batch(kind: str, pool: str) -> None:
    torch.manual_seed(0)
    enc = CoordinateEncoder(dim=64, kind=kind, features=16, depth=2, heads=4, pool=pool).eval()
    rng = np.random.default_rng(1)
    lat = torch.tensor(rng.uniform(42.3, 42.4, 40))
    lon = torch.tensor(rng.uniform(-71.1, -71.0, 40))
    with torch.no_grad():
        alone = enc(lat[:5], lon[:5])
        mixed = enc(torch.cat([lat[20:], lat[:5]]), torch.cat([lon[20:], lon[:5]]))[-5:]
        one_by_one = torch.cat([enc(lat[i:i + 1], lon[i:i + 1]) for i in range(5)])
    assert torch.allclose(alone, mixed, atol=1e-6) and torch.allclose(alone, one_by_one, atol=1e-6)
    if kind != "mlp":  # an untrained MLP on raw coordinates barely separates points 100s of m apart
        assert not torch.allclose(alone[0], alone[1], atol=1e-3)


def test_batch_first_attention_is_what_makes_it_invariant() -> None:
    """The public release's mistake (sequence-first attention over a batch) does mix locations."""
    torch.manual_seed(0)
    attn = torch.nn.MultiheadAttention(8, 2)  # batch_first=False: (B, tokens, D) is read as (seq, batch, D)
    x = torch.randn(6, 3, 8)
    alone = attn(x[:2], x[:2], x[:2])[0]
    mixed = attn(x, x, x)[0][:2]
    assert not torch.allclose(alone, mixed, atol=1e-4)


def test_bad_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="multiscale"):
        CoordinateEncoder(kind="siren")

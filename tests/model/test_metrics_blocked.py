"""The blocked retrieval metrics against the dense computations they replace (a query x gallery matrix)."""

from __future__ import annotations

import numpy as np
import pytest

from unigeo.model.geo import haversine_m
from unigeo.model.metrics import RADIUS_M, nearest_point, top_k, within_radius_share


@pytest.mark.parametrize(("query_block", "gallery_block"), [(3, 4), (1000, 7), (1000, 10**6)])
def test_top_k_in_blocks_is_the_stable_sort_of_the_whole_row(query_block: int, gallery_block: int) -> None:
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(60, 8)).astype(np.float32)
    gallery[[5, 17, 33, 50]] = gallery[2]  # exact ties, across blocks
    gallery[40] = gallery[41]
    queries = np.concatenate([rng.normal(size=(20, 8)), gallery[[2, 41, 9]]]).astype(np.float32)
    dense = np.argsort(-(queries @ gallery.T), axis=1, kind="stable")[:, :5]
    assert np.array_equal(top_k(queries, gallery, 5, query_block, gallery_block), dense)
    assert np.array_equal(top_k(queries, gallery[:3], 5, query_block, gallery_block),
                          np.argsort(-(queries @ gallery[:3].T), axis=1, kind="stable"))  # fewer than k


def test_radius_shares_and_nearest_points_equal_dense_haversine() -> None:
    rng = np.random.default_rng(1)
    glat, glon = 60.17 + rng.uniform(-0.01, 0.01, 400), 24.94 + rng.uniform(-0.02, 0.02, 400)
    qlat, qlon = 60.17 + rng.uniform(-0.012, 0.012, 150), 24.94 + rng.uniform(-0.022, 0.022, 150)
    dist = haversine_m(qlat[:, None], qlon[:, None], glat[None, :], glon[None, :])
    assert not np.any(np.abs(dist - RADIUS_M) < 1e-3)  # no point on the circle itself
    assert np.allclose(within_radius_share(qlat, qlon, glat, glon), np.mean(dist <= RADIUS_M, axis=1), atol=0)
    assert np.array_equal(nearest_point(qlat, qlon, glat, glon), np.argmin(dist, axis=1))
    assert within_radius_share(qlat, qlon, glat[:0], glon[:0]).tolist() == [0.0] * 150

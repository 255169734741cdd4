from __future__ import annotations

import itertools

import numpy as np
import pytest

from unigeo.pipeline.fps import covering_radius, farthest_point_sample, first_index, local_metres


def brute_force_fps(pts: np.ndarray, k: int, first: int) -> list[int]:
    """Textbook greedy: at each step, the point maximising its distance to the chosen set."""
    chosen = [first]
    while len(chosen) < min(k, len(pts)):
        best, best_d = -1, -1.0
        for i in range(len(pts)):
            if i in chosen:
                continue
            d = min(float(np.linalg.norm(pts[i] - pts[j])) for j in chosen)
            if d > best_d:
                best, best_d = i, d
        chosen.append(best)
    return chosen


@pytest.mark.parametrize("seed", range(20))
def test_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 25))
    pts = rng.uniform(0, 150, size=(n, 2))
    k = int(rng.integers(1, n + 2))
    first = int(rng.integers(0, n))
    assert farthest_point_sample(pts, k, first).tolist() == brute_force_fps(pts, k, first)


def test_ties_go_to_the_lowest_index_and_nothing_repeats() -> None:
    grid = np.array([(x, y) for x in range(3) for y in range(3)], dtype=float)
    assert farthest_point_sample(grid, 9, 4).tolist() == brute_force_fps(grid, 9, 4)
    same = np.zeros((5, 2))  # five panoramas at one spot
    assert farthest_point_sample(same, 5, 2).tolist() == [2, 0, 1, 3, 4]


@pytest.mark.parametrize("seed", range(15))
def test_two_approximation_of_k_center(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    pts = rng.uniform(0, 100, size=(10, 2))
    k = 3
    optimum = min(covering_radius(pts, np.array(c)) for c in itertools.combinations(range(10), k))
    for first in range(10):
        assert covering_radius(pts, farthest_point_sample(pts, k, first)) <= 2 * optimum + 1e-9


def test_edge_cases() -> None:
    pts = np.random.default_rng(0).uniform(size=(4, 2))
    assert sorted(farthest_point_sample(pts, 10, 1).tolist()) == [0, 1, 2, 3]
    assert farthest_point_sample(pts, 0, 0).size == 0
    assert farthest_point_sample(np.zeros((0, 2)), 3).size == 0
    with pytest.raises(ValueError, match="first"):
        farthest_point_sample(pts, 2, 4)
    with pytest.raises(ValueError, match="k must be"):
        farthest_point_sample(pts, -1, 0)


def test_first_index_is_stable_and_seeded() -> None:
    assert first_index(0, "89e37a0c1_train", 50) == first_index(0, "89e37a0c1_train", 50)
    picks = {first_index(s, "89e37a0c1_train", 1000) for s in range(20)}
    assert len(picks) > 15 and all(0 <= p < 1000 for p in picks)
    with pytest.raises(ValueError):
        first_index(0, "k", 0)


def test_local_metres() -> None:
    m = local_metres(np.array([42.001, 42.0]), np.array([-71.0, -70.999]), 42.0, -71.0)
    assert m[0] == pytest.approx([0.0, 111.2], abs=0.2)
    assert m[1] == pytest.approx([111.2 * np.cos(np.radians(42.0)), 0.0], abs=0.2)
    wrap = local_metres(np.array([0.0]), np.array([-179.9995]), 0.0, 179.9995)
    assert wrap[0][0] == pytest.approx(111.2, abs=0.2)  # across the antimeridian


def test_the_dense_path_chooses_what_the_incremental_path_chooses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Up to DENSE_MAX points the distances are precomputed; the choices (ties included) must not change."""
    from unigeo.pipeline import fps

    rng = np.random.default_rng(0)
    cases = []
    for n in (1, 2, 3, 5, 17, 100, fps.DENSE_MAX):
        for trial in range(6):
            pts = rng.normal(0, 50, (n, 2)).round(0 if trial % 2 else 6)  # whole metres: many ties
            cases.append((pts, int(rng.integers(1, n + 2)), int(rng.integers(n))))
    dense = [fps.farthest_point_sample(p, k, f) for p, k, f in cases]
    monkeypatch.setattr(fps, "DENSE_MAX", 0)
    for (p, k, f), got in zip(cases, dense):
        np.testing.assert_array_equal(got, fps.farthest_point_sample(p, k, f))

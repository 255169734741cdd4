"""Retrieval metrics from embeddings alone (numpy): what ``unigeo eval`` reports and what a reader
can recompute from ``RUN/eval/embeddings.npz``.

For a query with true location ``q`` and a gallery of locations with embeddings:
- accuracy@100m: the top-1 gallery item lies within 100 m (haversine) of ``q``;
- r@1, r@5: the query's own location (same key; same cell for geolocation) is among the top 1 / 5;
- median_m: median distance from ``q`` to the top-1 item;
- top1_distinct, top1_max_share: how many gallery rows are ranked first by some query, and the share of the
  queries whose top-1 is the most frequent one (collapse shows as few rows and a large share); kept apart,
  under ``metrics["top1"]``, so that each figure holds the same seven numbers;
- chance@100m: the accuracy@100m of picking a gallery item uniformly at random, i.e. the mean over
  queries of the fraction of the gallery within 100 m.

Nothing here holds a query x gallery matrix: the top 5 are taken in blocks of similarities
(``top_k``), the gallery within 100 m of a query and each location's own cell are found with a k-d
tree over points on the unit sphere (scipy), so a gallery of the paper's 800k cells fits in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from unigeo.model.geo import EARTH_RADIUS_M, haversine_m

RADIUS_M = 100.0


QUERY_BLOCK = 1024
GALLERY_BLOCK = 16384  # a (QUERY_BLOCK, GALLERY_BLOCK) float32 block of similarities: 64 MB
TOP_K = 5


def unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Points on the unit sphere: chord length is monotonic in great-circle distance, so a k-d tree over
    these answers "within a radius" and "nearest" exactly as haversine distances would."""
    p, lam = np.radians(np.asarray(lat, dtype=np.float64)), np.radians(np.asarray(lon, dtype=np.float64))
    return np.column_stack([np.cos(p) * np.cos(lam), np.cos(p) * np.sin(lam), np.sin(p)])


def _chord(metres: float) -> float:
    return float(2 * np.sin(metres / (2 * EARTH_RADIUS_M)))


def within_radius_share(qlat: np.ndarray, qlon: np.ndarray, glat: np.ndarray, glon: np.ndarray,
                        radius_m: float = RADIUS_M) -> np.ndarray:
    """For each query point, the share of gallery points within ``radius_m`` (a k-d tree radius count,
    never a query x gallery matrix)."""
    if not len(glat) or not len(qlat):
        return np.zeros(len(qlat))
    tree = cKDTree(unit_vectors(glat, glon))
    counts = tree.query_ball_point(unit_vectors(qlat, qlon), _chord(radius_m), return_length=True)
    return np.asarray(counts, dtype=np.float64) / len(glat)


def nearest_point(qlat: np.ndarray, qlon: np.ndarray, glat: np.ndarray, glon: np.ndarray) -> np.ndarray:
    """Index of the gallery point nearest to each query point (great-circle; a k-d tree)."""
    if not len(glat):
        return np.zeros(len(qlat), dtype=np.int64)
    _, index = cKDTree(unit_vectors(glat, glon)).query(unit_vectors(qlat, qlon), k=1)
    return np.asarray(index, dtype=np.int64)


def _block_top(sim: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a block of similarities, the ``k`` best (value, column), ties to the lower column."""
    k = min(k, sim.shape[1])
    cols = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(sim, cols, axis=1)
    # A tie at the k-th value may have left out a lower column with the same value: those rows (rare)
    # are ranked in full.
    kth = vals.min(axis=1)
    tied = np.flatnonzero((sim >= kth[:, None]).sum(axis=1) > k)
    for r in tied:
        cols[r] = np.argsort(-sim[r], kind="stable")[:k]
        vals[r] = sim[r, cols[r]]
    return vals, cols


def top_k(queries: np.ndarray, gallery: np.ndarray, k: int = TOP_K, query_block: int = QUERY_BLOCK,
          gallery_block: int = GALLERY_BLOCK) -> np.ndarray:
    """The ``k`` gallery rows of highest dot product with each query, best first, ties to the lower
    gallery index (what a stable sort of the whole row gives), computed in blocks: memory is
    ``query_block x gallery_block`` similarities, whatever the sizes.

    Each block of similarities is compared with each query's k-th best so far, and only the entries
    above it are merged in: after the first blocks a handful per query, so the cost is the matrix
    product and one comparison per similarity. A block with many such entries (the first) is cut to
    its own top ``k`` per query first.
    """
    n_q, n_g = len(queries), len(gallery)
    k = min(k, n_g)
    out = np.zeros((n_q, k), dtype=np.int64)
    for q0 in range(0, n_q, query_block):
        q = queries[q0:q0 + query_block]
        best_val = np.full((len(q), k), -np.inf, dtype=np.float32)  # sorted: value down, column up
        best_col = np.full((len(q), k), n_g, dtype=np.int64)  # beyond every real column
        for g0 in range(0, n_g, gallery_block):
            sim = q @ gallery[g0:g0 + gallery_block].T
            # Strictly above the k-th best: an equal value later in the gallery loses the tie.
            live = np.flatnonzero(sim.max(axis=1) > best_val[:, -1])
            if not len(live):
                continue
            part = sim[live]
            above = part > best_val[live, -1:]
            if np.count_nonzero(above) > 4 * k * len(live):
                vals, cols = _block_top(part, k)
                rows, cols, vals = np.repeat(live, vals.shape[1]), cols.ravel(), vals.ravel()
            else:
                at, cols = np.nonzero(above)
                rows, vals = live[at], part[at, cols]
            _merge(best_val, best_col, rows, cols + g0, vals)
        out[q0:q0 + len(q)] = best_col
    return out


def _merge(best_val: np.ndarray, best_col: np.ndarray, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> None:
    """Merge candidate entries (row, column, value) into each row's sorted best ``k``, in place."""
    k = best_val.shape[1]
    touched = np.unique(rows)
    r = np.concatenate([np.repeat(touched, k), rows])
    v = np.concatenate([best_val[touched].ravel(), vals])
    c = np.concatenate([best_col[touched].ravel(), cols])
    order = np.lexsort((c, -v, r))  # by row, then value down, then column up
    r, v, c = r[order], v[order], c[order]
    start = np.searchsorted(r, touched)
    rank = np.arange(len(r)) - np.repeat(start, np.diff(np.append(start, len(r))))
    keep = rank < k  # every touched row has at least its k current entries
    best_val[touched] = v[keep].reshape(-1, k)
    best_col[touched] = c[keep].reshape(-1, k)


def retrieval(queries: np.ndarray, query_item: np.ndarray, qlat: np.ndarray, qlon: np.ndarray,
              gallery: np.ndarray, gallery_item: np.ndarray, glat: np.ndarray, glon: np.ndarray) -> dict[str, Any]:
    """Metrics of one query set against one gallery, similarity being the dot product.

    Args:
        queries: (Q, D) query embeddings; gallery: (G, D) gallery embeddings.
        query_item, gallery_item: identity of each query's / gallery row's location (a hit at rank k
            means ``gallery_item[top_k] == query_item``).
        qlat, qlon: true location of each query; glat, glon: of each gallery row.
    """
    n_q, n_g = len(queries), len(gallery)
    if n_q == 0 or n_g == 0:
        return {"acc@100m": None, "r@1": None, "r@5": None, "median_m": None, "n_queries": n_q,
                "n_gallery": n_g, "chance@100m": None, "top1_distinct": None, "top1_max_share": None}
    order = top_k(queries, gallery)
    top1_counts = np.bincount(order[:, 0], minlength=n_g)
    top1 = haversine_m(qlat, qlon, glat[order[:, 0]], glon[order[:, 0]])
    hits = gallery_item[order] == query_item[:, None]
    return {
        "acc@100m": float(np.mean(top1 <= RADIUS_M)),
        "r@1": float(np.mean(hits[:, 0])),
        "r@5": float(np.mean(hits.any(axis=1))),
        "median_m": float(np.median(top1)),
        "n_queries": int(n_q),
        "n_gallery": int(n_g),
        "chance@100m": float(np.mean(within_radius_share(qlat, qlon, glat, glon))),
        # How spread the top-1 results are: distinct gallery rows ranked first, and the share of the queries
        # whose top-1 is the single most frequent row (a collapsed model sends most queries to a few rows).
        "top1_distinct": int((top1_counts > 0).sum()),
        "top1_max_share": float(top1_counts.max() / n_q),
    }


def location_means(emb: np.ndarray, index: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-location mean of rows (several crops of one place), re-normalised; and which locations have rows."""
    sums = np.zeros((n, emb.shape[1]), dtype=np.float64)
    np.add.at(sums, index, emb)
    have = np.zeros(n, dtype=bool)
    have[index] = True
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.where(norms > 0, norms, 1)).astype(np.float32), have


TOP1_KEYS = ("top1_distinct", "top1_max_share")


def compute_metrics(npz: Any, modalities: Sequence[str]) -> dict[str, Any]:
    """Every figure of ``metrics.json`` from the arrays of ``embeddings.npz``.

    Pairs ``a->b``: queries are the rows of ``a`` (street view: one per crop), the gallery is every
    test location that has ``b`` (street view as a gallery: the mean of a location's crops).
    Geolocation: queries of each modality (and the ensemble: a location's similarities averaged over
    its available modalities other than coordinates) against the coordinate embeddings of every
    covered cell centre. Subsets restrict the queries to seen / unseen locations; galleries stay whole.
    """
    lat, lon, seen = np.asarray(npz["lat"]), np.asarray(npz["lon"]), np.asarray(npz["seen"]).astype(bool)
    n = len(lat)
    emb = {m: np.asarray(npz[m], dtype=np.float32) for m in modalities}
    idx = {m: np.asarray(npz[f"{m}_index"], dtype=np.int64) for m in modalities}
    loc_emb, loc_have = {}, {}
    for m in modalities:
        loc_emb[m], loc_have[m] = location_means(emb[m], idx[m], n)
    image_mods = [m for m in modalities if m != "coords"]
    has_gallery = "coords" in modalities and "coords_gallery" in npz
    if has_gallery:
        g_emb = np.asarray(npz["coords_gallery"], dtype=np.float32)
        g_lat, g_lon = np.asarray(npz["gallery_lat"]), np.asarray(npz["gallery_lon"])
        g_item = np.arange(len(g_lat))
        # The gallery row of each test location (its own cell centre), for r@1 and r@5.
        nearest = nearest_point(lat, lon, g_lat, g_lon)
        # The ensemble's similarity of a location to a cell is the mean over its available modalities of
        # the mean over its rows (e.g. street-view crops) of their similarities; a dot product is linear,
        # so that is the similarity of one query vector per location: the same mean of its embeddings.
        ensemble = np.zeros((n, g_emb.shape[1]), dtype=np.float64)
        count = np.zeros(n)
        for m in image_mods:
            sums = np.zeros((n, g_emb.shape[1]), dtype=np.float64)
            np.add.at(sums, idx[m], emb[m])
            rows = np.bincount(idx[m], minlength=n)
            have = loc_have[m]
            ensemble[have] += sums[have] / rows[have, None]
            count[have] += 1
        ensemble_query = (ensemble / np.maximum(count, 1)[:, None]).astype(np.float32)
        ensemble_have = count > 0

    def block(select: np.ndarray) -> dict[str, Any]:
        pairs: dict[str, Any] = {}
        for a in modalities:
            q = select[idx[a]]
            qi = idx[a][q]
            for b in modalities:
                if a == b:
                    continue
                g = np.nonzero(loc_have[b])[0]
                pairs[f"{a}->{b}"] = retrieval(emb[a][q], qi, lat[qi], lon[qi], loc_emb[b][g], g, lat[g], lon[g])
        geo: dict[str, Any] = {}
        if has_gallery:
            for a in image_mods:
                q = select[idx[a]]
                qi = idx[a][q]
                geo[a] = retrieval(emb[a][q], nearest[qi], lat[qi], lon[qi], g_emb, g_item, g_lat, g_lon)
            locs = np.nonzero(select & ensemble_have)[0]
            geo["ensemble"] = retrieval(ensemble_query[locs], nearest[locs], lat[locs], lon[locs], g_emb, g_item,
                                        g_lat, g_lon)
        return {"pairs": pairs, "geolocation": geo}

    everything = block(np.ones(n, dtype=bool))
    subsets = {"seen": block(seen), "unseen": block(~seen)}
    # How spread the top-1 results are, overall, beside (not inside) each figure's seven numbers.
    top1: dict[str, dict[str, Any]] = {"pairs": {}, "geolocation": {}}
    for name, part in (("all", everything), *subsets.items()):
        for kind, figures in part.items():
            for pair, fig in figures.items():
                spread = {k: fig.pop(k) for k in TOP1_KEYS}
                if name == "all":
                    top1[kind][pair] = spread
    return {**everything, "subsets": subsets, "top1": top1,
            "n_locations": int(n), "n_seen": int(seen.sum()), "n_unseen": int((~seen).sum())}

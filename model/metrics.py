"""Retrieval metrics from embeddings alone (numpy): what ``unigeo eval`` reports and what a reader
can recompute from ``RUN/eval/embeddings.npz``.

For a query with true location ``q`` and a gallery of locations with embeddings:
- accuracy@100m: the top-1 gallery item lies within 100 m (haversine) of ``q``;
- r@1, r@5: the query's own location (same key; same cell for geolocation) is among the top 1 / 5;
- median_m: median distance from ``q`` to the top-1 item;
- chance@100m: the accuracy@100m of picking a gallery item uniformly at random, i.e. the mean over
  queries of the fraction of the gallery within 100 m.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from unigeo.model.geo import haversine_m

RADIUS_M = 100.0


def _distances(qlat: np.ndarray, qlon: np.ndarray, glat: np.ndarray, glon: np.ndarray) -> np.ndarray:
    return haversine_m(qlat[:, None], qlon[:, None], glat[None, :], glon[None, :])


def retrieval(sim: np.ndarray, query_item: np.ndarray, qlat: np.ndarray, qlon: np.ndarray,
              gallery_item: np.ndarray, glat: np.ndarray, glon: np.ndarray) -> dict[str, Any]:
    """Metrics of one query set against one gallery.

    Args:
        sim: (Q, G) similarities, higher is closer.
        query_item, gallery_item: identity of each query's / gallery row's location (a hit at rank k
            means ``gallery_item[top_k] == query_item``).
        qlat, qlon: true location of each query; glat, glon: of each gallery row.
    """
    n_q, n_g = sim.shape
    if n_q == 0 or n_g == 0:
        return {"acc@100m": None, "r@1": None, "r@5": None, "median_m": None, "n_queries": n_q,
                "n_gallery": n_g, "chance@100m": None}
    # Stable ranking: ties go to the lower gallery index, whatever the platform.
    order = np.argsort(-sim, axis=1, kind="stable")[:, :5]
    dist = _distances(qlat, qlon, glat, glon)
    top1 = dist[np.arange(n_q), order[:, 0]]
    hits = gallery_item[order] == query_item[:, None]
    return {
        "acc@100m": float(np.mean(top1 <= RADIUS_M)),
        "r@1": float(np.mean(hits[:, 0])),
        "r@5": float(np.mean(hits.any(axis=1))),
        "median_m": float(np.median(top1)),
        "n_queries": int(n_q),
        "n_gallery": int(n_g),
        "chance@100m": float(np.mean(np.mean(dist <= RADIUS_M, axis=1))),
    }


def location_means(emb: np.ndarray, index: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-location mean of rows (several crops of one place), re-normalised; and which locations have rows."""
    sums = np.zeros((n, emb.shape[1]), dtype=np.float64)
    np.add.at(sums, index, emb)
    have = np.zeros(n, dtype=bool)
    have[index] = True
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.where(norms > 0, norms, 1)).astype(np.float32), have


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
        nearest = np.argmin(_distances(lat, lon, g_lat, g_lon), axis=1) if len(g_lat) else np.zeros(n, int)
        # Similarities to the gallery, once for every subset: per row, and for the ensemble per location
        # (a location's similarity for a modality is the mean over its rows, e.g. street-view crops;
        # the ensemble averages that over the location's available modalities).
        row_sim = {m: emb[m] @ g_emb.T for m in image_mods}
        total = np.zeros((n, len(g_lat)))
        count = np.zeros((n, 1))
        for m in image_mods:
            sims = np.zeros((n, len(g_lat)))
            np.add.at(sims, idx[m], row_sim[m])
            rows = np.bincount(idx[m], minlength=n)[:, None]
            have = loc_have[m]
            total[have] += (sims / np.maximum(rows, 1))[have]
            count[have] += 1
        ensemble_sim = total / np.maximum(count, 1)
        ensemble_have = count[:, 0] > 0

    def block(select: np.ndarray) -> dict[str, Any]:
        pairs: dict[str, Any] = {}
        for a in modalities:
            q = select[idx[a]]
            qi = idx[a][q]
            for b in modalities:
                if a == b:
                    continue
                g = np.nonzero(loc_have[b])[0]
                sim = emb[a][q] @ loc_emb[b][g].T
                pairs[f"{a}->{b}"] = retrieval(sim, qi, lat[qi], lon[qi], g, lat[g], lon[g])
        geo: dict[str, Any] = {}
        if has_gallery:
            for a in image_mods:
                q = select[idx[a]]
                qi = idx[a][q]
                geo[a] = retrieval(row_sim[a][q], nearest[qi], lat[qi], lon[qi], g_item, g_lat, g_lon)
            locs = np.nonzero(select & ensemble_have)[0]
            geo["ensemble"] = retrieval(ensemble_sim[locs], nearest[locs], lat[locs], lon[locs], g_item, g_lat, g_lon)
        return {"pairs": pairs, "geolocation": geo}

    everything = block(np.ones(n, dtype=bool))
    return {**everything, "subsets": {"seen": block(seen), "unseen": block(~seen)},
            "n_locations": int(n), "n_seen": int(seen.sum()), "n_unseen": int((~seen).sum())}

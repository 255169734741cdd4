"""Retrieval metrics at the paper's scale: 100k queries against a gallery of 800k cells, in one run.

Synthetic unit embeddings (``--dim``, default 256): gallery rows at cell centres scattered over 14
metros, queries near the centres of random cells, each query its cell's embedding plus noise so that
the figures are neither 0 nor 1. The bench times ``model.metrics.retrieval`` (top 5 in blocks, the
k-d tree radius count for chance, the top-1 distances) in a process of its own and samples its resident
memory; against it, the matrix product of the same queries and gallery alone (BLAS, no ranking, in the
same blocks) as the floor of any exact retrieval. With ``--check N`` it first compares the figures with
the dense computation (a query x gallery matrix, a stable sort of each row, dense haversine distances)
on the first N queries against the first 10N gallery rows.

Usage: python -m bench.bench_eval [--queries 100000] [--gallery 800000] [--dim 256] [--check 2000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

from bench.record import emit, measure
from unigeo.model.geo import haversine_m
from unigeo.model.metrics import GALLERY_BLOCK, QUERY_BLOCK, RADIUS_M, retrieval


def synthetic(queries: int, gallery: int, dim: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.column_stack([rng.uniform(-40, 55, 14), rng.uniform(-120, 140, 14)])
    metro = rng.integers(0, 14, gallery)
    step = 0.14 / 111.2  # a level-16 cell, roughly
    glat = centres[metro, 0] + rng.normal(0, 60 * step, gallery)
    glon = centres[metro, 1] + rng.normal(0, 60 * step, gallery) / np.cos(np.radians(centres[metro, 0]))
    g = rng.standard_normal((gallery, dim), dtype=np.float32)  # float32 throughout: the data, not the bench
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    item = rng.integers(0, gallery, queries)
    q = g[item] + np.float32(4.0 / np.sqrt(dim)) * rng.standard_normal((queries, dim), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    qlat = glat[item] + rng.normal(0, 0.3 * step, queries)
    qlon = glon[item] + rng.normal(0, 0.3 * step, queries)
    return {"q": q, "item": item, "qlat": qlat, "qlon": qlon, "g": g, "glat": glat, "glon": glon}


def dense(d: dict[str, np.ndarray]) -> dict[str, Any]:
    """The plain computation the blocked one replaced."""
    sim = d["q"] @ d["g"].T
    order = np.argsort(-sim, axis=1, kind="stable")[:, :5]
    dist = haversine_m(d["qlat"][:, None], d["qlon"][:, None], d["glat"][None, :], d["glon"][None, :])
    top1 = dist[np.arange(len(sim)), order[:, 0]]
    hits = np.arange(len(d["g"]))[order] == d["item"][:, None]
    firsts = np.bincount(order[:, 0], minlength=sim.shape[1])
    return {"acc@100m": float(np.mean(top1 <= RADIUS_M)), "r@1": float(np.mean(hits[:, 0])),
            "r@5": float(np.mean(hits.any(axis=1))), "median_m": float(np.median(top1)),
            "n_queries": len(sim), "n_gallery": sim.shape[1],
            "chance@100m": float(np.mean(np.mean(dist <= RADIUS_M, axis=1))),
            "top1_distinct": int((firsts > 0).sum()), "top1_max_share": float(firsts.max() / len(sim))}


def blocked(d: dict[str, np.ndarray]) -> dict[str, Any]:
    return retrieval(d["q"], d["item"], d["qlat"], d["qlon"], d["g"], np.arange(len(d["g"])), d["glat"], d["glon"])


def step(args: argparse.Namespace) -> None:
    d = synthetic(args.queries, args.gallery, args.dim)
    started = time.perf_counter()
    if args.step == "metrics":
        result: dict[str, Any] = blocked(d)
    else:  # the floor: the similarities alone, in the same blocks
        for q0 in range(0, len(d["q"]), QUERY_BLOCK):
            for g0 in range(0, len(d["g"]), GALLERY_BLOCK):
                _ = d["q"][q0:q0 + QUERY_BLOCK] @ d["g"][g0:g0 + GALLERY_BLOCK].T
        result = {}
    result["compute_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=100_000)
    parser.add_argument("--gallery", type=int, default=800_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--check", type=int, default=2000, help="queries of the dense comparison (0: none)")
    parser.add_argument("--step", choices=("metrics", "matmul"), help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args(argv)
    if args.step:
        step(args)
        return
    result: dict[str, Any] = {"queries": args.queries, "gallery": args.gallery, "dim": args.dim}
    if args.check:
        small = synthetic(args.check, 10 * args.check, args.dim, seed=1)
        want, got = dense(small), blocked(small)
        result["dense_check"] = {"queries": args.check, "gallery": 10 * args.check, "equal": want == got,
                                 "figures": got}
        if want != got:
            raise SystemExit(f"blocked {got} != dense {want}")
    base = [sys.executable, "-m", "bench.bench_eval", "--queries", str(args.queries), "--gallery", str(args.gallery),
            "--dim", str(args.dim)]
    for name in ("matmul", "metrics"):
        run = measure([*base, "--step", name], 0.2)
        result[name] = run
        print(f"{name:8s} peak RSS {run['peak_rss_mb']:6d} MB  {run['wall_s']:7.1f} s", file=sys.stderr)
    result["metrics_vs_matmul"] = round(result["metrics"]["wall_s"] / result["matmul"]["wall_s"], 2)
    emit(result, args.json)


if __name__ == "__main__":
    main(sys.argv[1:])

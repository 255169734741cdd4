"""Training throughput on CPU: is data loading the bottleneck?

In one process, on the training shards of a build (default: the tiny world, built once and cached):
  decode, 1 core      raw tar samples in memory -> arrays (decode + augment + tokenise), no loader;
  decode, cached      the same from the second epoch on, with the decode cache that ``unigeo train``
                      keeps when it runs without dataloader workers (``--decode-cache-mb``);
  loader, N workers   ``rank_batches`` from disk with the default dataloader workers, no model;
  train step          forward + backward + AdamW step of the default model on batches held in memory;
  train, end to end   the loader feeding the model, as ``unigeo train`` runs.
Loading is not the bottleneck when "train, end to end" is close to "train step" (ratio near 1).
Peak RSS of the process is reported too.

Usage: python -m bench.bench_train [--data DIR] [--batch-size 64] [--steps 12] [--workers 2]
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import sys
import time

import torch

from bench.record import save
from unigeo.core.sample import TRAIN
from unigeo.model.data import (
    Decoder,
    DecodeSpec,
    ShardStream,
    epoch_plan,
    iter_raw,
    iter_texts,
    list_shards,
    rank_batches,
)
from unigeo.model.loss import all_to_all_infonce
from unigeo.model.network import ModelConfig, UniGeoModel
from unigeo.model.tokenizer import train_tokenizer


def tiny_build(cache: str) -> str:
    """Synthesise and build the tiny world once (two crops per panorama, as a denser sample)."""
    data = os.path.join(cache, "data")
    if not os.path.exists(os.path.join(data, "manifest.json")):
        from unigeo.cli.build import run_build
        from unigeo.pipeline.options import BuildOptions, ImageryOptions
        from unigeo.synth.world import write_world

        write_world(os.path.join(cache, "world"), size="tiny", seed=0, faults=False)
        opts = BuildOptions(imagery=ImageryOptions(crops_per_pano=2))
        run_build(os.path.join(cache, "world", "sources.yaml"), data, opts, [])
    return data


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="a build folder (default: the tiny world, cached)")
    parser.add_argument("--cache", default="/tmp/unigeo-bench-train")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads of the training process (0: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = args.data or tiny_build(args.cache)
    shards = list_shards(data, TRAIN)
    tok = train_tokenizer(iter_texts(shards))
    cfg = ModelConfig(vocab=tok.get_vocab_size())
    spec = DecodeSpec(image_px=cfg.image_px, dsm_px=cfg.dsm_px, text_len=cfg.text_len, augment=True)
    raw = list(iter_raw(epoch_plan(shards, 0, 0, shuffle=False)))
    decoder = Decoder(spec, tok)
    n_samples = max(len(raw), 256)
    t = time.perf_counter()
    decoded = [decoder(r) for r in itertools.islice(itertools.cycle(raw), n_samples)]
    decode_rate = len(decoded) / (time.perf_counter() - t)
    cached = Decoder(spec, tok, cache_mb=1024)
    for r in raw:  # the first epoch fills the cache
        cached(r)
    cached.epoch = 1
    t = time.perf_counter()
    decoded = [cached(r) for r in itertools.islice(itertools.cycle(raw), n_samples)]
    cached_rate = len(decoded) / (time.perf_counter() - t)

    def loader_batches():  # type: ignore[no-untyped-def]
        epoch = 0
        while True:
            stream = ShardStream(shards, Decoder(spec, tok), rank=0, world_size=1)
            stream.set_epoch(epoch)
            yield from rank_batches(stream, args.batch_size, args.workers)
            epoch += 1

    t = time.perf_counter()
    n = sum(len(b["key"]) for b in itertools.islice(loader_batches(), args.steps))
    loader_rate = n / (time.perf_counter() - t)

    model = UniGeoModel(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(batch) -> int:  # type: ignore[no-untyped-def]
        emb, present, scale = model(batch)
        loss = all_to_all_infonce(emb, present, scale)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        return len(batch["key"])

    held = list(itertools.islice(loader_batches(), 3))
    step(held[0])  # warm-up
    t = time.perf_counter()
    n = sum(step(held[i % len(held)]) for i in range(args.steps))
    step_rate = n / (time.perf_counter() - t)
    t = time.perf_counter()
    n = sum(step(b) for b in itertools.islice(loader_batches(), args.steps))
    e2e_rate = n / (time.perf_counter() - t)
    result = {
        "data": data, "train_samples": sum(s.samples for s in shards), "batch_size": args.batch_size,
        "workers": args.workers, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "decode_samples_per_s_1core": round(decode_rate, 1),
        "decode_cached_samples_per_s_1core": round(cached_rate, 1),
        "cached_over_decode": round(cached_rate / decode_rate, 1),
        "loader_samples_per_s": round(loader_rate, 1),
        "train_step_samples_per_s": round(step_rate, 1),
        "train_end_to_end_samples_per_s": round(e2e_rate, 1),
        "end_to_end_over_step": round(e2e_rate / step_rate, 3),
        "loader_over_step": round(loader_rate / step_rate, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_worker_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }
    save("bench_train", result)


if __name__ == "__main__":
    main(sys.argv[1:])

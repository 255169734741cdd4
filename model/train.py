"""The training loop: AdamW, linear warm-up then cosine decay, gradient clipping, bf16 autocast on
CUDA, a checkpoint after every epoch (written atomically), ``--resume``, metrics to
``RUN/log.jsonl``, and DDP when started by ``torchrun`` (gloo on CPU, NCCL on GPU).

Everything random derives from the seed and the epoch (shard order, shuffle buffers, crop choice,
augmentation), so a run resumed from a checkpoint takes the same steps as one never stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from unigeo.core.errors import UniGeoError
from unigeo.core.sample import TRAIN
from unigeo.model.checkpoint import load_checkpoint, save_checkpoint
from unigeo.model.config import ModelConfig, TrainConfig
from unigeo.model.data import (
    Decoder,
    DecodeSpec,
    ShardStream,
    iter_texts,
    list_shards,
    rank_batches,
    read_manifest,
    steps_per_epoch,
)
from unigeo.model.distributed import Dist, auto_workers, barrier, init_distributed, resolve_device
from unigeo.model.loss import all_to_all_infonce, gather_across_ranks
from unigeo.model.network import UniGeoModel, batch_to
from unigeo.model.schedule import param_groups, warmup_cosine
from unigeo.model.tokenizer import load_tokenizer, pretrained_tokenizer, save_tokenizer, train_tokenizer

log = logging.getLogger(__name__)

CHECKPOINT = "model.pt"
TOKENIZER = "tokenizer.json"
CONFIG = "config.json"
LOG = "log.jsonl"
# What a resumed run takes from its checkpoint, whatever the command line says: the schedule and data order.
RESUMED = ("batch_size", "lr", "weight_decay", "warmup", "seed", "epochs", "views", "crop_min_scale")


# ---------------------------------------------------------------- log


class JsonLog:
    def __init__(self, path: str, enabled: bool) -> None:
        self.path, self.enabled = path, enabled

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n")


class Progress:
    """One line on stderr, rewritten in place: epoch, step, loss, samples/s."""

    def __init__(self, enabled: bool, total: int, epoch: int, epochs: int) -> None:
        self.enabled, self.total, self.epoch, self.epochs = enabled and sys.stderr.isatty(), total, epoch, epochs
        self.plain = enabled and not self.enabled
        self.t0 = time.perf_counter()

    def update(self, step: int, samples: int, loss: float) -> None:
        rate = samples / max(1e-9, time.perf_counter() - self.t0)
        line = (f"epoch {self.epoch + 1}/{self.epochs} step {step}/{self.total} loss {loss:.4f} "
                f"{rate:.1f} samples/s")
        if self.enabled:
            width = 24
            done = int(width * step / max(1, self.total))
            sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] {line}")
            sys.stderr.flush()
        elif self.plain and (step == self.total or step % max(1, self.total // 4) == 0):
            sys.stderr.write(line + "\n")

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


# ---------------------------------------------------------------- training


def fit_tokenizer(cfg: TrainConfig, model_cfg: ModelConfig, shards: list[Any], d: Dist, vocab: int = 4096) -> Any:
    """The text tower's tokenizer (a pretrained tower's own, or one trained on the training texts) on
    rank 0, saved in RUN/ and loaded from there everywhere."""
    path = os.path.join(cfg.out, TOKENIZER)
    tower_tokenizer = pretrained_tokenizer(model_cfg.text_tower)
    if d.main and tower_tokenizer is not None and not cfg.resume:
        if cfg.tokenizer:
            log.warning("--tokenizer is ignored: --text-tower %s brings its own", model_cfg.text_tower)
        save_tokenizer(tower_tokenizer, path)
    elif d.main and cfg.tokenizer and not cfg.resume:
        save_tokenizer(load_tokenizer(cfg.tokenizer), path)
    elif d.main and not (cfg.resume and os.path.exists(path)):
        texts = list(iter_texts(shards))
        if not texts:
            log.warning("no training sample has a description: the text encoder learns nothing")
        save_tokenizer(train_tokenizer(texts or ["empty"], vocab_size=vocab), path)
    barrier(d)
    return load_tokenizer(path)


def train(cfg: TrainConfig, model_cfg: ModelConfig) -> dict[str, Any]:
    """Train from ``DIR/shards/train`` into ``RUN/``; returns a summary (epochs run, last losses)."""
    d = init_distributed(cfg.device)
    device = resolve_device(cfg.device, d)
    torch.manual_seed(cfg.seed)
    os.makedirs(cfg.out, exist_ok=True)
    ckpt_path = os.path.join(cfg.out, CHECKPOINT)
    state: dict[str, Any] | None = None
    if cfg.resume:
        if not os.path.exists(ckpt_path):
            raise UniGeoError(f"--resume: no checkpoint at {ckpt_path}")
        state = load_checkpoint(ckpt_path)
        model_cfg = ModelConfig.from_json(state["model_config"])
        saved = state["train_config"]
        for k in RESUMED:
            if saved[k] != getattr(cfg, k):
                log.warning("--resume: %s=%s from the checkpoint overrides %s", k, saved[k], getattr(cfg, k))
        cfg = dataclasses.replace(cfg, **{k: saved[k] for k in RESUMED})

    manifest = read_manifest(cfg.data)
    shards = list_shards(cfg.data, TRAIN, manifest)
    if not shards:
        raise UniGeoError(f"{cfg.data}: the manifest lists no training shard with samples")
    tokenizer = fit_tokenizer(cfg, model_cfg, shards, d)
    model_cfg = dataclasses.replace(model_cfg, vocab=tokenizer.get_vocab_size())
    model = UniGeoModel(model_cfg).to(device)
    total = sum(s.samples for s in shards)
    steps = steps_per_epoch(total, cfg.batch_size, d.world_size)
    total_steps = steps * cfg.epochs
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total_steps, max(1, int(cfg.warmup * total_steps))))
    start_epoch = 0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch = int(state["epoch"]) + 1
    net: nn.Module = model
    if d.world_size > 1:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                      find_unused_parameters=True)

    spec = DecodeSpec(image_px=model_cfg.image_px, dsm_px=model_cfg.dsm_px, text_len=model_cfg.text_len,
                      augment=True, views=cfg.views,
                      crop_min_scale=cfg.crop_min_scale)
    stream = ShardStream(shards, Decoder(spec, tokenizer, cfg.seed), cfg.seed, d.rank, d.world_size,
                         shuffle=True, shuffle_buffer=cfg.shuffle_buffer)
    jlog = JsonLog(os.path.join(cfg.out, LOG), d.main)
    if d.main:
        with open(os.path.join(cfg.out, CONFIG), "w") as f:
            json.dump({"train": dataclasses.asdict(cfg), "model": model_cfg.to_json(), "world_size": d.world_size,
                       "train_samples": total, "steps_per_epoch": steps, "torch": torch.__version__}, f, indent=2)
        if start_epoch == 0:
            open(jlog.path, "w").close()  # a fresh run starts a fresh log; a resumed one appends
            jlog.write({"event": "start", "train_samples": total, "shards": len(shards), "steps_per_epoch": steps,
                        "world_size": d.world_size, "modalities": list(model.modalities),
                        "parameters": sum(p.numel() for p in model.parameters())})
        log.info("training on %d samples from %d shards: %d steps per epoch x %d epochs, %d rank(s)",
                 total, len(shards), steps, cfg.epochs, d.world_size)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext())
    last_epoch = cfg.epochs if not cfg.stop_after else min(cfg.epochs, cfg.stop_after)
    history: list[dict[str, Any]] = []
    for epoch in range(start_epoch, last_epoch):
        stream.set_epoch(epoch)
        net.train()
        bar = Progress(cfg.progress and d.main, steps, epoch, cfg.epochs)
        t0, seen, losses = time.perf_counter(), 0, []
        for i, batch in enumerate(_batches(stream, cfg, device)):
            with autocast:
                emb, present, scale = net(batch)
                emb, present = gather_across_ranks({m: e.float() for m, e in emb.items()}, present)
                loss, pairs = all_to_all_infonce(emb, present, scale.float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = (float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip))
                         if cfg.clip > 0 else float("nan"))
            opt.step()
            sched.step()
            n = len(batch["key"])
            seen += n
            losses.append(float(loss.detach()))
            step = epoch * steps + i + 1
            bar.update(i + 1, seen * d.world_size, losses[-1])
            if (i + 1) % cfg.log_every == 0 or i + 1 == steps:
                jlog.write({"event": "step", "epoch": epoch, "step": step, "loss": round(losses[-1], 6),
                            "pairs": {k: round(float(v.detach()), 6) for k, v in pairs.items()},
                            "lr": sched.get_last_lr()[0], "logit_scale": round(float(model.logit_scale().detach()), 4),
                            "grad_norm": round(grad_norm, 4), "batch": n,
                            "samples_per_s": round(seen * d.world_size / (time.perf_counter() - t0), 2)})
        bar.close()
        if d.world_size > 1:  # DDP hands rank 0's buffers (BatchNorm statistics) out before each step, not after
            for buf in model.buffers():
                dist.broadcast(buf, 0)
        elapsed = time.perf_counter() - t0
        record = {"event": "epoch", "epoch": epoch, "loss": round(sum(losses) / len(losses), 6),
                  "seconds": round(elapsed, 2), "samples_per_s": round(seen * d.world_size / elapsed, 2),
                  "losses": [round(x, 6) for x in losses]}
        history.append(record)
        jlog.write(record)
        if d.main:
            save_checkpoint(ckpt_path, {
                "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "epoch": epoch, "model_config": model_cfg.to_json(), "train_config": dataclasses.asdict(cfg),
                "tokenizer": TOKENIZER, "train_samples": total})
            log.info("epoch %d/%d: loss %.4f, %.1f samples/s, checkpoint %s", epoch + 1, cfg.epochs,
                     record["loss"], record["samples_per_s"], ckpt_path)
        barrier(d)
    if d.world_size > 1:
        dist.destroy_process_group()
    return {"epochs_run": [h["epoch"] for h in history], "history": history, "checkpoint": ckpt_path,
            "rank": d.rank, "world_size": d.world_size, "train_samples": total, "steps_per_epoch": steps,
            "model": model}


def _batches(stream: ShardStream, cfg: TrainConfig, device: torch.device) -> Iterator[dict[str, Any]]:
    workers = cfg.workers if cfg.workers >= 0 else auto_workers(device, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    for batch in rank_batches(stream, cfg.batch_size, workers):
        yield batch_to(batch, device)

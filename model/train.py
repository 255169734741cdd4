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
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from unigeo.core import fileio
from unigeo.core.errors import UniGeoError
from unigeo.core.sample import TRAIN
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
from unigeo.model.loss import all_to_all_infonce, gather_across_ranks
from unigeo.model.modalities import no_weight_decay
from unigeo.model.network import ModelConfig, UniGeoModel, batch_to
from unigeo.model.tokenizer import load_tokenizer, pretrained_tokenizer, save_tokenizer, train_tokenizer

log = logging.getLogger(__name__)

CHECKPOINT = "model.pt"
TOKENIZER = "tokenizer.json"
CONFIG = "config.json"
LOG = "log.jsonl"
# What a resumed run takes from its checkpoint, whatever the command line says: the schedule and data order.
RESUMED = ("batch_size", "lr", "weight_decay", "warmup", "seed", "epochs", "views")


@dataclass(frozen=True)
class TrainConfig:
    """How to train (the architecture is ``ModelConfig``).

    Args:
        epochs: epochs the schedule spans.
        stop_after: end this invocation after this many epochs in total (0: run to ``epochs``);
            ``--resume`` continues on the same schedule.
        batch_size: samples per step on each rank.
        lr, weight_decay, warmup: AdamW peak learning rate, decoupled weight decay, warm-up as a
            fraction of all steps; then cosine decay to zero.
        clip: gradient norm clipping (0: off).
        workers: dataloader worker processes per rank; -1 picks them: on a CPU, the cores left over
            by the training threads (none on 2 cores, where decoding in the training process is
            fastest: measured by bench/bench_train.py); on CUDA, 4 per process within the cores.
        shuffle_buffer: samples in each worker's shuffle buffer.
        views: street-view crops of each location per step; their embeddings are averaged (the
            location's multiple perspectives); evaluation embeds every crop on its own.
        log_every: steps between log lines.
        tokenizer: a ``tokenizer.json`` to use (copied into RUN/) instead of fitting one on the
            training texts (HF's WordPiece trainer breaks ties between equally frequent merges
            differently from one process to the next, so two fits may differ).
    """

    data: str
    out: str
    epochs: int = 20
    stop_after: int = 0
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: float = 0.05
    clip: float = 1.0
    seed: int = 0
    device: str = "cpu"
    workers: int = -1
    shuffle_buffer: int = 256
    views: int = 2
    log_every: int = 10
    resume: bool = False
    progress: bool = True
    tokenizer: str = ""


# ---------------------------------------------------------------- distributed


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> Dist:
    """Join the process group that ``torchrun`` describes in the environment (none: one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def barrier(d: Dist) -> None:
    if d.world_size > 1:
        dist.barrier()


def resolve_device(device: str, d: Dist) -> torch.device:
    if device == "cuda":
        if not torch.cuda.is_available():
            raise UniGeoError("--device cuda: no CUDA device is available to this torch build")
        torch.cuda.set_device(d.local_rank)
        return torch.device("cuda", d.local_rank)
    if device != "cpu":
        raise UniGeoError(f"--device must be cpu or cuda, got {device!r}")
    return torch.device("cpu")


# ---------------------------------------------------------------- optimiser and schedule


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices and convolutions only: not on norms, biases, the temperature, nor what the
    encoders list as taking none (position and class tokens, embedding tables)."""
    exempt = no_weight_decay(model)
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if name in exempt else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return factor


# ---------------------------------------------------------------- checkpoint and log


def save_checkpoint(path: str, state: dict[str, Any]) -> None:
    """Write to a temporary file beside ``path``, then rename: a checkpoint is whole or absent."""
    tmp = f"{path}.tmp"
    with fileio.create(tmp) as f:
        torch.save(state, f)
    fileio.rename(tmp, path)


def load_checkpoint(path: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    if not fileio.exists(path):
        raise UniGeoError(f"checkpoint {path} not found")
    with fileio.open_binary(path) as f:
        state: dict[str, Any] = torch.load(f, map_location=map_location, weights_only=False)
    return state


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
                      augment=True, views=cfg.views)
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


def auto_workers(device: torch.device, local_world_size: int) -> int:
    cores = os.cpu_count() or 1
    if device.type == "cuda":
        return max(0, min(4, cores // max(1, local_world_size) - 1))
    spare = cores - local_world_size * min(4, torch.get_num_threads())
    return max(0, min(4, spare // max(1, local_world_size)))


def _batches(stream: ShardStream, cfg: TrainConfig, device: torch.device) -> Iterator[dict[str, Any]]:
    workers = cfg.workers if cfg.workers >= 0 else auto_workers(device, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    for batch in rank_batches(stream, cfg.batch_size, workers):
        yield batch_to(batch, device)

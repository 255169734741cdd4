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
from collections.abc import Collection, Iterator
from contextlib import nullcontext
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from unigeo import __version__
from unigeo.core import fileio
from unigeo.core.build_files import MANIFEST
from unigeo.core.errors import ConfigError, UniGeoError
from unigeo.core.sample import TRAIN
from unigeo.model.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from unigeo.model.config import ModelConfig, TrainConfig
from unigeo.model.data import (
    BadSampleError,
    Decoder,
    DecodeSpec,
    ShardStream,
    check_shards,
    iter_texts,
    list_shards,
    rank_batches,
    read_manifest,
    steps_per_epoch,
)
from unigeo.model.distributed import Dist, auto_workers, barrier, init_distributed, resolve_device
from unigeo.model.loss import all_to_all_infonce, gather_across_ranks
from unigeo.model.modalities import build_modalities, missing_from_build
from unigeo.model.network import UniGeoModel, batch_to
from unigeo.model.schedule import param_groups, warmup_cosine
from unigeo.model.tokenizer import load_tokenizer, pretrained_tokenizer, save_tokenizer, train_tokenizer

log = logging.getLogger(__name__)

TOKENIZER = "tokenizer.json"
CONFIG = "config.json"
LOG = "log.jsonl"
RUN_FILES = (CHECKPOINT, CONFIG, LOG, TOKENIZER)  # what the trainer writes in RUN/ (and --overwrite removes)
# Options a resumed run takes from the command line: they change neither the model nor the data order or
# schedule. Every other option comes from the run's checkpoint; giving it with another value is an error.
RESUME_FREE = frozenset({"data", "out", "resume", "overwrite", "progress", "stop_after", "log_every", "device"})


# ---------------------------------------------------------------- log


class JsonLog:
    def __init__(self, path: str, enabled: bool) -> None:
        self.path, self.enabled = path, enabled

    def keep_until(self, epoch: int) -> None:
        """Drop the records of ``epoch`` and later (what a stopped run logged after its last checkpoint)."""
        if not (self.enabled and os.path.exists(self.path)):
            return
        kept = []
        with open(self.path) as f:
            for ln in f:
                try:
                    rec = json.loads(ln)
                except ValueError:  # a line cut short by the kill
                    continue
                if rec.get("epoch", -1) < epoch:  # the start record has no epoch
                    kept.append(ln if ln.endswith("\n") else ln + "\n")
        with open(self.path, "w") as f:
            f.writelines(kept)

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
    rank 0, saved in RUN/ and loaded from there everywhere; a resumed run keeps its own."""
    path = os.path.join(cfg.out, TOKENIZER)
    if d.main and not (cfg.resume and os.path.exists(path)):
        tower_tokenizer = pretrained_tokenizer(model_cfg.text_tower)
        if tower_tokenizer is not None:
            if cfg.tokenizer:
                log.warning("--tokenizer is ignored: --text-tower %s brings its own", model_cfg.text_tower)
            save_tokenizer(tower_tokenizer, path)
        elif cfg.tokenizer:
            save_tokenizer(load_tokenizer(cfg.tokenizer), path)
        else:
            texts = list(iter_texts(shards))
            if not texts:
                log.warning("no training sample has a description: the text encoder learns nothing")
            save_tokenizer(train_tokenizer(texts or ["empty"], vocab_size=vocab), path)
    barrier(d)
    return load_tokenizer(path)


# ---------------------------------------------------------------- the run folder


def holds_run(out: str) -> list[str]:
    """The files of a run in ``out``; empty where no run started there (a run starts when its
    ``config.json`` is written, before the first step: what a start killed earlier left is replaced)."""
    if not any(os.path.exists(os.path.join(out, f)) for f in (CONFIG, CHECKPOINT)):
        return []
    return [f for f in RUN_FILES if os.path.exists(os.path.join(out, f))]


def open_run(cfg: TrainConfig, model_cfg: ModelConfig, explicit: Collection[str]
             ) -> tuple[TrainConfig, ModelConfig, dict[str, Any] | None]:
    """Check ``--out`` against ``--resume`` / ``--overwrite`` before anything is written. A resumed run
    takes its saved configuration; a flag given on the command line must agree with it, except the ones
    that change neither the model nor the data order and schedule (``RESUME_FREE``) and a longer
    ``--epochs``, which extends the schedule. Returns the configuration to train and the checkpoint."""
    if cfg.resume and cfg.overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite starts it again: give one")
    present = holds_run(cfg.out)
    if not cfg.resume:
        if present and not cfg.overwrite:
            raise ConfigError(f"--out {cfg.out} holds a run ({', '.join(present)}): --resume to continue it, "
                              "--overwrite to start it again, or another --out")
        return cfg, model_cfg, None
    ckpt_path = os.path.join(cfg.out, CHECKPOINT)
    config_path = os.path.join(cfg.out, CONFIG)
    if not os.path.exists(config_path):
        raise ConfigError(f"--resume: {cfg.out} holds no run ({CONFIG} not found)")
    state = load_checkpoint(ckpt_path) if os.path.exists(ckpt_path) else None
    if state is not None:
        saved_train, saved_model = state["train_config"], state["model_config"]
    else:  # stopped before its first epoch ended: start again with the saved configuration
        with open(config_path) as f:
            saved = json.load(f)
        saved_train, saved_model = saved["train"], saved["model"]
        log.warning("--resume: %s has no checkpoint yet: training starts again at epoch 1", cfg.out)
    saved_cfg = ModelConfig.from_json(saved_model)
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)} - {"vocab", "seed"}
    updates: dict[str, Any] = {k: saved_train[k] for k in train_fields - RESUME_FREE if k in saved_train}
    for name in sorted(explicit):
        if name in train_fields and name not in RESUME_FREE and name in saved_train:
            given, had = getattr(cfg, name), saved_train[name]
        elif name in model_fields:
            given, had = getattr(model_cfg, name), getattr(saved_cfg, name)
        else:
            continue
        if given == had:
            continue
        if name == "epochs" and given > had:
            log.warning("--resume: --epochs %d extends the run's schedule of %d epochs (the learning rate follows "
                        "the longer cosine from here on)", given, had)
            updates["epochs"] = given
            continue
        flag = "--" + name.replace("_", "-")
        raise ConfigError(f"--resume: {flag} {_show(given)} differs from the run's {_show(had)} "
                          f"({config_path}): leave {flag} out to continue the run, or --overwrite to start again")
    return dataclasses.replace(cfg, **updates), saved_cfg, state


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _fresh_folder(cfg: TrainConfig, d: Dist) -> None:
    """Make ``--out``; with ``--overwrite``, remove the files an earlier run wrote there (nothing else)."""
    if not d.main:
        return
    os.makedirs(cfg.out, exist_ok=True)
    if not cfg.resume:  # --overwrite, or the leftovers of a start killed before its config.json
        for f in (*RUN_FILES, f"{CHECKPOINT}.tmp", f"{CONFIG}.tmp", f"{TOKENIZER}.tmp"):
            path = os.path.join(cfg.out, f)
            if os.path.exists(path):
                os.remove(path)
        if cfg.overwrite and os.path.isdir(os.path.join(cfg.out, "eval")):
            log.warning("--overwrite: %s/eval describes the earlier model until `unigeo eval` runs again", cfg.out)


# ---------------------------------------------------------------- training


def train(cfg: TrainConfig, model_cfg: ModelConfig, explicit: Collection[str] = ()) -> dict[str, Any]:
    """Train from ``DIR/shards/train`` into ``RUN/``; returns a summary (epochs run, last losses).

    ``explicit``: the option names the user gave (checked against a resumed run's configuration)."""
    d = init_distributed(cfg.device)
    device = resolve_device(cfg.device, d)
    cfg, model_cfg, state = open_run(cfg, model_cfg, explicit)
    if cfg.workers < 0:  # the data order depends on the worker count: the resolved count is saved
        cfg = dataclasses.replace(
            cfg, workers=auto_workers(device, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    torch.manual_seed(cfg.seed)
    ckpt_path = os.path.join(cfg.out, CHECKPOINT)

    manifest = read_manifest(cfg.data)
    shards = list_shards(cfg.data, TRAIN, manifest)
    if not shards:
        raise UniGeoError(f"{cfg.data}: the manifest lists no training shard with samples")
    missing = missing_from_build(model_cfg.modalities, manifest)
    if missing:
        raise ConfigError(f"--modalities: the build {cfg.data} has no {', '.join(missing)} "
                          f"(no {', '.join(missing.values())} member); it holds "
                          f"{','.join(build_modalities(manifest)) or 'none of them'}")
    check_shards(shards)
    build: dict[str, Any] = {"data": cfg.data,
                             "manifest_sha256": fileio.sha256_file(fileio.join(cfg.data, MANIFEST))[1],
                             "unigeo_version": manifest.get("unigeo_version")}
    _fresh_folder(cfg, d)
    barrier(d)
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
        if "rng" in state:
            torch.set_rng_state(state["rng"]["torch"])
        start_epoch = int(state["epoch"]) + 1
        started_on = str(state.get("build", {}).get("manifest_sha256", build["manifest_sha256"]))
        if started_on != build["manifest_sha256"]:
            log.warning("--resume: %s is not the build this run started on (manifest sha256 %s, now %s)",
                        cfg.data, started_on[:12], build["manifest_sha256"][:12])
    if start_epoch >= cfg.epochs:
        log.warning("the run in %s is finished (%d of %d epochs): nothing to train; a larger --epochs extends it",
                    cfg.out, start_epoch, cfg.epochs)
    net: nn.Module = model
    if d.world_size > 1:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                      find_unused_parameters=True)

    spec = DecodeSpec(image_px=model_cfg.image_px, dsm_px=model_cfg.dsm_px, text_len=model_cfg.text_len,
                      augment=True, views=cfg.views,
                      crop_min_scale=cfg.crop_min_scale)
    stream = ShardStream(shards, Decoder(spec, tokenizer, cfg.seed, cfg.decode_cache_mb), cfg.seed, d.rank,
                         d.world_size, shuffle=True, shuffle_buffer=cfg.shuffle_buffer)
    jlog = JsonLog(os.path.join(cfg.out, LOG), d.main)
    if d.main:
        config = {"train": dataclasses.asdict(cfg), "model": model_cfg.to_json(), "world_size": d.world_size,
                  "train_samples": total, "steps_per_epoch": steps, "torch": torch.__version__,
                  "build": build, "unigeo_version": __version__}
        with open(os.path.join(cfg.out, f"{CONFIG}.tmp"), "w") as f:
            json.dump(config, f, indent=2)
        os.replace(os.path.join(cfg.out, f"{CONFIG}.tmp"), os.path.join(cfg.out, CONFIG))
        if start_epoch == 0:
            open(jlog.path, "w").close()  # a fresh run starts a fresh log
            jlog.write({"event": "start", "train_samples": total, "shards": len(shards), "steps_per_epoch": steps,
                        "world_size": d.world_size, "modalities": list(model.modalities),
                        "parameters": sum(p.numel() for p in model.parameters())})
        else:  # a resumed run drops what the stopped one logged after its checkpoint, then goes on
            jlog.keep_until(start_epoch)
            jlog.write({"event": "resume", "epoch": start_epoch})
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
        for i, batch in enumerate(_batches(stream, cfg, device, jlog)):
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
                "tokenizer": TOKENIZER, "train_samples": total, "rng": {"torch": torch.get_rng_state()},
                "build": build, "unigeo_version": __version__, "loss": record["loss"]})
            log.info("epoch %d/%d: loss %.4f, %.1f samples/s, checkpoint %s", epoch + 1, cfg.epochs,
                     record["loss"], record["samples_per_s"], ckpt_path)
        barrier(d)
    if d.world_size > 1:
        dist.destroy_process_group()
    return {"epochs_run": [h["epoch"] for h in history], "history": history, "checkpoint": ckpt_path,
            "rank": d.rank, "world_size": d.world_size, "train_samples": total, "steps_per_epoch": steps,
            "model": model}


def _batches(stream: ShardStream, cfg: TrainConfig, device: torch.device, jlog: JsonLog
             ) -> Iterator[dict[str, Any]]:
    """The epoch's batches; a shard or sample that cannot be read stops the run (logged, then raised)."""
    try:
        for batch in rank_batches(stream, cfg.batch_size, cfg.workers):
            yield batch_to(batch, device)
    except BadSampleError as e:
        jlog.write({"event": "bad_sample", "epoch": stream.epoch, "error": str(e)})
        raise

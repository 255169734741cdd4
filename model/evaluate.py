"""``unigeo eval``: embeddings of the held-out split, retrieval metrics, a table, an HTML page.

Writes ``RUN/eval/embeddings.npz`` (the contract's arrays), ``metrics.json`` (computed from those
arrays by ``metrics.compute_metrics``) and ``index.html`` (retrieval examples).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from unigeo.core import build_files, fileio
from unigeo.core.errors import UniGeoError
from unigeo.core.sample import TEST, TRAIN
from unigeo.model.checkpoint import load_checkpoint
from unigeo.model.data import (
    Decoder,
    DecodeSpec,
    check_shards,
    collate,
    iter_locations,
    list_shards,
    read_manifest,
)
from unigeo.model.metrics import compute_metrics
from unigeo.model.modalities import REGISTRY
from unigeo.model.network import ModelConfig, UniGeoModel, batch_to
from unigeo.model.tokenizer import load_tokenizer

log = logging.getLogger(__name__)


@dataclass
class TestSet:
    """The decoded test split: per location arrays, and per modality the rows that have it."""

    key: list[str]
    cell: list[str]
    lat: np.ndarray
    lon: np.ndarray
    items: list[dict[str, Any]]


def _chunks(n: int, size: int) -> Iterator[slice]:
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


@torch.no_grad()
def embed_test_set(model: UniGeoModel, items: list[dict[str, Any]], batch_size: int,
                   device: torch.device) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """modality -> (embeddings (N_m, D) float32, location index (N_m,) int64); a modality with several
    views per location (street view) gets one row per view (crop)."""
    model.eval()
    # Keys of every multi-view modality vary in length from one location to the next: never stacked.
    per_location = {k for mod in REGISTRY.values() if mod.views for k in (*mod.inputs, *mod.extra_keys)}
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for m in model.modalities:
        mod = REGISTRY[m]
        if mod.views:  # one row per view: flatten the views into single-view items
            rows = [(i, c) for i, it in enumerate(items) for c in range(len(it[mod.inputs[0]]))]
            source = [{k: items[i][k][c] for k in mod.inputs} for i, c in rows]
            index = np.array([i for i, _ in rows], dtype=np.int64)
        else:
            index = np.array([i for i, it in enumerate(items) if it["present"][m]], dtype=np.int64)
            source = [{k: v for k, v in items[i].items() if k not in per_location} for i in index]
        embs = []
        for sl in _chunks(len(source), batch_size):
            chunk = source[sl]
            batch = collate(chunk) if not mod.views else _stack(chunk, mod.inputs)
            embs.append(model.embed(m, batch_to(batch, device)).float().cpu().numpy())
        dim = model.cfg.dim
        out[m] = (np.concatenate(embs) if embs else np.zeros((0, dim), np.float32), index)
    return out


def _stack(items: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: torch.from_numpy(np.stack([np.asarray(it[k]) for it in items])) for k in keys}


@torch.no_grad()
def embed_gallery(model: UniGeoModel, lat: np.ndarray, lon: np.ndarray, batch_size: int,
                  device: torch.device) -> np.ndarray:
    model.eval()
    embs = [model.embed("coords", {"lat": torch.tensor(lat[sl]).to(device),
                                   "lon": torch.tensor(lon[sl]).to(device)}).float().cpu().numpy()
            for sl in _chunks(len(lat), batch_size)]
    return np.concatenate(embs) if embs else np.zeros((0, model.cfg.dim), np.float32)


def load_model(checkpoint: str, device: torch.device) -> tuple[UniGeoModel, Any, dict[str, Any]]:
    state = load_checkpoint(checkpoint, device)
    cfg = ModelConfig.from_json(state["model_config"])
    model = UniGeoModel(cfg).to(device)
    model.load_state_dict(state["model"])
    model.eval()
    tok_path = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), state.get("tokenizer", "tokenizer.json"))
    if not os.path.exists(tok_path):
        raise UniGeoError(f"{tok_path} not found: the tokenizer is saved beside the checkpoint by `unigeo train`")
    return model, load_tokenizer(tok_path), state


def evaluate(data: str, checkpoint: str, out: str | None = None, batch_size: int = 64, device: str = "cpu",
             examples: int = 12) -> dict[str, Any]:
    """Embed ``DIR/shards/test``, write ``RUN/eval/`` and return the metrics."""
    if device == "cuda" and not torch.cuda.is_available():
        raise UniGeoError("--device cuda: no CUDA device is available to this torch build")
    dev = torch.device(device)
    model, tokenizer, state = load_model(checkpoint, dev)
    out = out or os.path.join(os.path.dirname(os.path.abspath(checkpoint)), "eval")
    manifest = read_manifest(data)
    shards = list_shards(data, TEST, manifest)
    if not shards:
        raise UniGeoError(f"{data}: the manifest lists no test shard with samples (holdout year "
                          f"{manifest.get('options', {}).get('holdout_year', '?')})")
    check_shards(shards)
    manifest_sha = fileio.sha256_file(fileio.join(data, build_files.MANIFEST))[1]
    trained_on = state.get("build", {}).get("manifest_sha256")
    if trained_on is None:
        log.warning("%s does not record the build it was trained on (an older checkpoint)", checkpoint)
    elif trained_on != manifest_sha:
        log.warning("%s was trained on another build (manifest sha256 %s, trained from %s) than %s (%s): "
                    "seen/unseen and the figures describe this build", checkpoint, trained_on[:12],
                    state["build"].get("data"), data, manifest_sha[:12])
    os.makedirs(out, exist_ok=True)
    cfg = model.cfg
    decoder = Decoder(DecodeSpec(image_px=cfg.image_px, dsm_px=cfg.dsm_px, text_len=cfg.text_len,
                                 all_crops=True), tokenizer)
    items = list(iter_locations(shards, decoder))
    n = len(items)
    key = np.array([it["key"] for it in items])
    lat = np.array([it["lat"] for it in items], dtype=np.float64)
    lon = np.array([it["lon"] for it in items], dtype=np.float64)
    samples = build_files.read_samples(data)
    if samples.empty:
        raise UniGeoError(f"{fileio.join(data, 'samples')} has no Parquet files: is --data a complete build?")
    train_cells = set(samples.loc[samples["split"] == TRAIN, "cell"])
    seen = np.array([it["cell"] in train_cells for it in items], dtype=bool)
    log.info("test split: %d locations (%d seen in training, %d unseen)", n, int(seen.sum()), int((~seen).sum()))

    arrays: dict[str, np.ndarray] = {"key": key, "lat": lat, "lon": lon, "seen": seen,
                                     "cell": np.array([it["cell"] for it in items])}
    for m, (e, idx) in embed_test_set(model, items, batch_size, dev).items():
        arrays[m], arrays[f"{m}_index"] = e.astype(np.float32), idx
    if "coords" in model.modalities:
        cells = build_files.read_cells(data)
        if cells.empty:
            raise UniGeoError(f"{fileio.join(data, 'cells')} has no Parquet files: is --data a complete build?")
        cells = cells.sort_values("cell", kind="stable")
        arrays["gallery_cell"] = cells["cell"].to_numpy().astype(str)
        arrays["gallery_lat"] = cells["lat"].to_numpy(np.float64)
        arrays["gallery_lon"] = cells["lon"].to_numpy(np.float64)
        arrays["coords_gallery"] = embed_gallery(model, arrays["gallery_lat"], arrays["gallery_lon"], batch_size, dev)
    np.savez(os.path.join(out, "embeddings.npz"), **arrays)  # type: ignore[arg-type]
    metrics = compute_metrics(arrays, model.modalities)
    metrics["checkpoint"] = {"path": os.path.abspath(checkpoint), "epoch": int(state["epoch"]) + 1,
                             "modalities": list(model.modalities), "coords": cfg.coords,
                             "coords_depth": cfg.coords_depth, "build": state.get("build"),
                             "unigeo_version": state.get("unigeo_version")}
    metrics["data"] = data
    metrics["data_manifest_sha256"] = manifest_sha
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    from unigeo.model.eval_html import write_examples

    write_examples(out, shards, arrays, items, metrics, examples)
    return metrics


# ---------------------------------------------------------------- the printed table


def _pct(x: float | None) -> str:
    """A percentage; two decimals below 1% so that small chance levels are not rounded up."""
    if x is None:
        return "   -  "
    return f"{100 * x:5.2f}%" if x < 0.01 else f"{100 * x:5.1f}%"


def _row(name: str, all_: dict[str, Any], seen: dict[str, Any], unseen: dict[str, Any]) -> str:
    def cell(r: dict[str, Any]) -> str:
        if not r or r.get("acc@100m") is None:
            return f"{'-':>24}"
        return f"{_pct(r['acc@100m'])} ({_pct(r['chance@100m'])}) n={r['n_queries']:<5d}"[:24].rjust(24)
    a = all_ or {}
    med = "-" if a.get("median_m") is None else f"{a['median_m']:.0f}"
    r1 = _pct(a.get("r@1")) if a else "-"
    r5 = _pct(a.get("r@5")) if a else "-"
    return f"{name:<16} {cell(all_)} {cell(seen)} {cell(unseen)} {r1:>7} {r5:>7} {med:>8}"


def format_table(metrics: dict[str, Any]) -> str:
    """acc@100m (chance) per pair and for geolocation, overall / seen / unseen, with r@1, r@5, median."""
    head = (f"{'query->gallery':<16} {'acc@100m (chance) all':>24} {'seen':>24} {'unseen':>24} "
            f"{'r@1':>7} {'r@5':>7} {'median_m':>8}")
    lines = [f"test locations: {metrics['n_locations']} ({metrics['n_seen']} seen in training, "
             f"{metrics['n_unseen']} unseen)", head, "-" * len(head)]
    sub = metrics["subsets"]
    for name, r in metrics["pairs"].items():
        lines.append(_row(name, r, sub["seen"]["pairs"].get(name, {}), sub["unseen"]["pairs"].get(name, {})))
    if metrics["geolocation"]:
        lines.append(f"geolocation against the coordinate embeddings of "
                     f"{next(iter(metrics['geolocation'].values()))['n_gallery']} cell centres:")
        for name, r in metrics["geolocation"].items():
            lines.append(_row(f"{name}->cells", r, sub["seen"]["geolocation"].get(name, {}),
                              sub["unseen"]["geolocation"].get(name, {})))
    return "\n".join(lines)

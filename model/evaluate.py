"""``unigeo eval``: embeddings of the held-out split, retrieval metrics, a table, an HTML page.

Writes ``RUN/eval/embeddings.npz`` (the contract's arrays), ``metrics.json`` (computed from those
arrays by ``metrics.compute_metrics``) and ``index.html`` (retrieval examples).

The test split is decoded and embedded a chunk of ``CHUNK_LOCATIONS`` locations at a time, and the
embeddings go to files as they come (``Spool``); the metrics read them from those files (memory-mapped)
and ``embeddings.npz`` is assembled from them by streaming. Memory holds one chunk's decoded samples,
never the split.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import zipfile
from collections.abc import Iterator
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


CHUNK_LOCATIONS = 256


class Spool:
    """Rows of one array appended to a file as they come; ``array()`` maps the file back (no copy in
    memory) and ``write_npy`` streams it into an ``.npy`` member of a zip."""

    def __init__(self, path: str, dtype: Any, row_shape: tuple[int, ...] = ()) -> None:
        self.path, self.dtype, self.row_shape, self.rows = path, np.dtype(dtype), row_shape, 0
        self._file = open(path, "wb")  # noqa: SIM115  closed by close()

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"rows of shape {rows.shape[1:]}, expected {self.row_shape}")
        self._file.write(rows.tobytes())
        self.rows += len(rows)

    def close(self) -> None:
        self._file.close()

    def array(self) -> np.ndarray:
        self.close()
        if not self.rows:
            return np.zeros((0, *self.row_shape), dtype=self.dtype)
        return np.memmap(self.path, dtype=self.dtype, mode="r", shape=(self.rows, *self.row_shape))

    def write_npy(self, zf: zipfile.ZipFile, name: str) -> None:
        self.close()
        with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_2_0(f, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                     "fortran_order": False, "shape": (self.rows, *self.row_shape)})
            with open(self.path, "rb") as src:
                while block := src.read(1 << 24):
                    f.write(block)


def write_npz(path: str, arrays: dict[str, np.ndarray], spools: dict[str, Spool]) -> None:
    """``np.savez`` of ``arrays`` plus the spooled arrays, streamed (a file that ``np.load`` reads)."""
    tmp = f"{path}.tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, value in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)
        for name, spool in spools.items():
            spool.write_npy(zf, name)
    os.replace(tmp, path)


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
                  device: torch.device, spool: Spool) -> None:
    """The coordinate embeddings of the gallery's cell centres, appended to ``spool`` batch by batch."""
    model.eval()
    for sl in _chunks(len(lat), batch_size):
        spool.append(model.embed("coords", {"lat": torch.tensor(lat[sl]).to(device),
                                            "lon": torch.tensor(lon[sl]).to(device)}).float().cpu().numpy())


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
    root = build_files.build_root(data, manifest)
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
    samples = build_files.read_samples(root, ["cell", "split"])
    if samples.empty:
        raise UniGeoError(f"{fileio.join(root, 'samples')} has no Parquet files: is --data a complete build?")
    train_cells = set(samples.loc[samples["split"] == TRAIN, "cell"])
    del samples
    spool_dir = os.path.join(out, ".spool")
    shutil.rmtree(spool_dir, ignore_errors=True)
    os.makedirs(spool_dir)
    try:
        arrays, spools, sv_members = _embed_split(model, shards, decoder, train_cells, batch_size, dev, spool_dir)
        n = len(arrays["key"])
        seen = arrays["seen"]
        log.info("test split: %d locations (%d seen in training, %d unseen)", n, int(seen.sum()), int((~seen).sum()))
        if "coords" in model.modalities:
            cells = build_files.read_cells(root, ["cell", "lat", "lon"])
            if cells.empty:
                raise UniGeoError(f"{fileio.join(root, 'cells')} has no Parquet files: is --data a complete build?")
            cells = cells.sort_values("cell", kind="stable")
            arrays["gallery_cell"] = cells["cell"].to_numpy().astype(str)
            arrays["gallery_lat"] = cells["lat"].to_numpy(np.float64)
            arrays["gallery_lon"] = cells["lon"].to_numpy(np.float64)
            del cells
            spools["coords_gallery"] = Spool(os.path.join(spool_dir, "coords_gallery"), np.float32, (cfg.dim,))
            embed_gallery(model, arrays["gallery_lat"], arrays["gallery_lon"], batch_size, dev,
                          spools["coords_gallery"])
        write_npz(os.path.join(out, "embeddings.npz"), arrays, spools)
        arrays.update({name: spool.array() for name, spool in spools.items()})
        metrics = _finish(out, checkpoint, state, cfg, model, data, manifest_sha, shards, arrays, sv_members,
                          examples)
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)
    return metrics


def _embed_split(model: UniGeoModel, shards: list[Any], decoder: Decoder, train_cells: set[str], batch_size: int,
                 device: torch.device, spool_dir: str
                 ) -> tuple[dict[str, np.ndarray], dict[str, Spool], list[list[str]]]:
    """Decode and embed the test split a chunk of locations at a time: the per-location arrays, the
    spooled embeddings and location indices of each modality, and each location's crop members."""
    spools: dict[str, Spool] = {}
    for m in model.modalities:
        spools[m] = Spool(os.path.join(spool_dir, m), np.float32, (model.cfg.dim,))
        spools[f"{m}_index"] = Spool(os.path.join(spool_dir, f"{m}_index"), np.int64)
    key: list[str] = []
    cell: list[str] = []
    lat: list[float] = []
    lon: list[float] = []
    sv_members: list[list[str]] = []
    chunk: list[dict[str, Any]] = []

    def flush() -> None:
        for m, (e, idx) in embed_test_set(model, chunk, batch_size, device).items():
            spools[m].append(e)
            spools[f"{m}_index"].append(idx + len(key))
        for it in chunk:
            key.append(it["key"])
            cell.append(it["cell"])
            lat.append(it["lat"])
            lon.append(it["lon"])
            sv_members.append(list(it.get("sv_members", [])))
        chunk.clear()

    for item in iter_locations(shards, decoder):
        chunk.append(item)
        if len(chunk) == CHUNK_LOCATIONS:
            flush()
    flush()
    arrays: dict[str, np.ndarray] = {"key": np.array(key), "lat": np.array(lat, dtype=np.float64),
                                     "lon": np.array(lon, dtype=np.float64),
                                     "seen": np.array([c in train_cells for c in cell], dtype=bool),
                                     "cell": np.array(cell)}
    return arrays, spools, sv_members


def final_loss(checkpoint: str, state: dict[str, Any]) -> float | None:
    """The checkpoint's last epoch loss: recorded in it, or (older checkpoints) the last epoch record of the
    run's ``log.jsonl`` for that epoch; None when neither has it."""
    if state.get("loss") is not None:
        return float(state["loss"])
    path = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), "log.jsonl")
    found = None
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if record.get("event") == "epoch" and record.get("epoch") == state.get("epoch"):
                        found = float(record["loss"])
    return found


def _finish(out: str, checkpoint: str, state: dict[str, Any], cfg: ModelConfig, model: UniGeoModel, data: str,
            manifest_sha: str, shards: list[Any], arrays: dict[str, np.ndarray], sv_members: list[list[str]],
            examples: int) -> dict[str, Any]:
    """metrics.json and the examples page from the embedded arrays."""
    metrics = compute_metrics(arrays, model.modalities)
    metrics["checkpoint"] = {"path": os.path.abspath(checkpoint), "epoch": int(state["epoch"]) + 1,
                             "epochs": (state.get("train_config") or {}).get("epochs"),
                             "final_loss": final_loss(checkpoint, state),
                             "modalities": list(model.modalities), "coords": cfg.coords,
                             "coords_depth": cfg.coords_depth, "build": state.get("build"),
                             "unigeo_version": state.get("unigeo_version")}
    metrics["data"] = data
    metrics["data_manifest_sha256"] = manifest_sha
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    from unigeo.model.eval_html import write_examples

    write_examples(out, shards, arrays, sv_members, metrics, examples)
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

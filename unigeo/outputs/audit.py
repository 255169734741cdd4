"""``unigeo audit DIR``: re-read shards, ledger and manifest and check that they agree.

Checks: every shard's size, sha256 and sample count match the manifest, and no shard is missing or
extra; every input row appears exactly once in the ledger, and the ledger's sums match the manifest
(inputs = kept + not_selected + rejected, per metro and overall); the kept panoramas are exactly the
panoramas in the shards; no test-year panorama in a train sample and no other year in a test sample;
no panorama in two samples; no sample key twice; no cell over ``max_panos``; every sample's crops,
aerial and DSM members are present as its json says, decode, and have the configured shapes; where the
build wrote its shard plan, each shard's stats match what the plan gave it (``unigeo.outputs.reconcile``).
"""

from __future__ import annotations

import io
import json
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from unigeo.core.build_files import MANIFEST, missing_files, read_json, read_ledger
from unigeo.core.fileio import glob, join, relative, sha256_file
from unigeo.core.sample import (
    JSON,
    KEPT,
    STATUSES,
    TILE_MEMBERS,
    SampleMeta,
    capture_year,
    crop_members,
    decode_aerial,
    decode_dsm,
    is_crop,
    sample_key,
    tile_member,
)
from unigeo.outputs.manifest import ledger_counts
from unigeo.outputs.readers import iter_shard, read_shard_stats
from unigeo.outputs.reconcile import read_plans, reconcile
from unigeo.pipeline.split import parse_years, split_of
from unigeo.sources.panoramas import index_chunks, read_chunk

MAX_LISTED = 50


def _input_rows(panoramas: str) -> int | None:
    """Rows in the panorama index, when it is still readable (None otherwise)."""
    try:
        chunks = index_chunks(panoramas)
    except Exception:
        return None
    if all(c.n_rows >= 0 for c in chunks):
        return sum(c.n_rows for c in chunks)
    return sum(len(df) for c in chunks for _, df in read_chunk(c))


def check_members(key: str, meta: SampleMeta, members: dict[str, bytes], imagery: dict[str, Any]) -> list[str]:
    """Problems with a sample's image members: each listed member present, decodable, of the right shape."""
    problems = []
    crop_px, tile_px = imagery.get("crop_px"), imagery.get("tile_px")
    listed = crop_members(meta)
    present = sorted(m for m in members if is_crop(m))
    if sorted(listed) != present:
        problems.append(f"sample {key}: crops listed {len(listed)} != sv members {len(present)}")
    for name in present:
        try:
            with Image.open(io.BytesIO(members[name])) as img:
                img.load()
                if img.mode != "RGB" or (crop_px and img.size != (crop_px, crop_px)):
                    problems.append(f"sample {key}: {name} is {img.mode} {img.size}, expected RGB {crop_px}px")
        except OSError as e:
            problems.append(f"sample {key}: {name} does not decode: {e}")
    for kind in TILE_MEMBERS:
        tile = meta.get(kind)
        member = tile_member(members, kind)
        named = tile["member"] if isinstance(tile, dict) else None
        if named != member:
            problems.append(f"sample {key}: json and members disagree about the {kind} tile "
                            f"(json {named or 'none'}, members {member or 'none'})")
            continue
        if member is None:
            continue
        try:
            if kind == "aerial":
                rgb = decode_aerial(members[member])
                ok = rgb.ndim == 3 and rgb.shape[2] == 3 and (not tile_px or rgb.shape[:2] == (tile_px, tile_px))
                shape = f"{rgb.dtype} {rgb.shape}"
            else:
                arr = decode_dsm(members[member])
                ok = arr.dtype == np.float32 and (not tile_px or arr.shape == (tile_px, tile_px))
                shape = f"{arr.dtype} {arr.shape}"
        except (OSError, ValueError) as e:
            problems.append(f"sample {key}: {member} does not decode: {e}")
            continue
        if not ok:
            problems.append(f"sample {key}: {member} is {shape}, expected {tile_px}px")
    return problems


def audit(out: str) -> dict[str, Any]:
    """Audit a build folder; ``result["ok"]`` is False when any check failed."""
    violations: list[str] = []

    def fail(message: str) -> None:
        violations.append(message)

    try:
        manifest = read_json(join(out, MANIFEST))
    except Exception as e:
        return {"ok": False, "violations": [f"cannot read {MANIFEST}: {e}"], "n_violations": 1, "checked": {}}
    try:
        options = manifest["options"]
        years = parse_years(options["years"])
        _ = (manifest["shards"], manifest["counts"]["overall"], manifest["counts"]["per_metro"],
             manifest["counts"]["unassigned"], manifest["config"]["panoramas"], options["max_panos"])
    except (KeyError, TypeError, ValueError) as e:
        return {"ok": False, "violations": [f"{MANIFEST} is incomplete or malformed: {type(e).__name__} {e}"],
                "n_violations": 1, "checked": {}}

    # Shards: bytes, sha256, sample counts; members decode; splits and panoramas.
    listed = {s["shard"]: s for s in manifest["shards"]}
    on_disk = {relative(out, p) for p in glob(out, "shards/*/*.tar")}
    for extra in sorted(on_disk - set(listed)):
        fail(f"{extra}: shard not in the manifest")
    seen_keys: Counter[str] = Counter()
    pano_rows: dict[int, str] = {}
    sample_panos = 0
    for name, s in sorted(listed.items()):
        if name not in on_disk:
            fail(f"{name}: listed in the manifest but missing")
            continue
        path = join(out, name)
        nbytes, sha = sha256_file(path)
        if nbytes != s["bytes"] or sha != s["sha256"]:
            fail(f"{name}: {nbytes} bytes sha256 {sha[:12]}..., manifest says {s['bytes']} bytes {s['sha256'][:12]}...")
        n = 0
        try:
            for key, members in iter_shard(path):
                n += 1
                seen_keys[key] += 1
                if JSON not in members:
                    fail(f"{name}: sample {key} has no json member")
                    continue
                meta = json.loads(members[JSON])
                expected_key = sample_key(meta["cell"], meta["split"])
                if meta["split"] != s["split"] or meta["metro"] != s["metro"] or key != expected_key:
                    fail(f"{name}: sample {key} says metro {meta['metro']} split {meta['split']}")
                for problem in check_members(key, meta, members, manifest["options"].get("imagery") or {}):
                    fail(f"{name}: {problem}")
                panos = meta["panoramas"]
                if len(panos) > options["max_panos"]:
                    fail(f"{name}: sample {key} holds {len(panos)} panoramas > max {options['max_panos']}")
                for p in panos:
                    sample_panos += 1
                    year = capture_year(p["captured_at"])
                    if split_of(year, options["holdout_year"], years) != meta["split"]:
                        fail(f"{name}: panorama {p['pano_id']} of {year} in a {meta['split']} sample")
                    if p["row"] in pano_rows:
                        fail(f"panorama {p['pano_id']} (row {p['row']}) in samples {pano_rows[p['row']]} and {key}")
                    pano_rows[p["row"]] = key
        except Exception as e:  # a truncated or corrupt tar
            fail(f"{name}: cannot read: {e}")
        if n != s["samples"]:
            fail(f"{name}: {n} samples, manifest says {s['samples']}")
    for key, times in seen_keys.items():
        if times > 1:
            fail(f"sample key {key} appears {times} times")

    # Tables the manifest lists are all there.
    for kind, gone in missing_files(out, manifest).items():
        fail(f"{kind}: {len(gone)} file(s) listed in the manifest are missing, e.g. {gone[:5]}")

    # Ledger: one row per input row; sums; kept == panoramas in shards.
    try:
        ledger = read_ledger(out)
    except Exception as e:
        fail(f"cannot read the ledger: {e}")
        ledger = pd.DataFrame(columns=["row", "pano_id", "metro", "cell", "split", "status", "reason"])
    counts = manifest["counts"]
    n_inputs = _input_rows(manifest["config"]["panoramas"])
    if n_inputs is None:
        n_inputs = counts["overall"]["inputs"]
    elif n_inputs != counts["overall"]["inputs"]:
        fail(f"panorama index has {n_inputs} rows, manifest says {counts['overall']['inputs']}")
    rows = ledger["row"].astype(int)
    dupes = rows[rows.duplicated()].unique().tolist()
    if dupes:
        fail(f"ledger rows appear more than once: {dupes[:MAX_LISTED]}")
    missing = sorted(set(range(n_inputs)) - set(rows.tolist()))
    if missing:
        fail(f"{len(missing)} input rows missing from the ledger, e.g. {missing[:MAX_LISTED]}")
    bad_status = sorted(set(ledger["status"]) - set(STATUSES))
    if bad_status:
        fail(f"ledger has unknown statuses {bad_status}")
    recount = ledger_counts(ledger)
    for part in ("overall", "unassigned"):
        for k in ("inputs", "kept", "not_selected", "rejected", "rejected_by_reason"):
            if recount[part][k] != counts[part][k]:
                fail(f"{part} {k}: ledger has {recount[part][k]}, manifest says {counts[part][k]}")
    for metro, c in counts["per_metro"].items():
        r = recount["per_metro"].get(metro, {"inputs": 0, "kept": 0, "not_selected": 0, "rejected": 0})
        for k in ("inputs", "kept", "not_selected", "rejected"):
            if r[k] != c[k]:
                fail(f"metro {metro} {k}: ledger has {r[k]}, manifest says {c[k]}")
        if c["inputs"] != c["kept"] + c["not_selected"] + c["rejected"]:
            fail(f"metro {metro}: inputs {c['inputs']} != kept + not_selected + rejected")
    o = counts["overall"]
    if o["inputs"] != o["kept"] + o["not_selected"] + o["rejected"]:
        fail(f"overall: inputs {o['inputs']} != kept + not_selected + rejected")
    kept = ledger[ledger["status"] == KEPT]
    kept_rows = set(kept["row"].astype(int))
    if kept_rows != set(pano_rows):
        only_ledger = sorted(kept_rows - set(pano_rows))[:MAX_LISTED]
        only_shards = sorted(set(pano_rows) - kept_rows)[:MAX_LISTED]
        fail(f"kept in ledger but not in shards: rows {only_ledger}; in shards but not kept: rows {only_shards}")
    for row_no, cell, split in zip(kept["row"].astype(int), kept["cell"], kept["split"]):
        in_shard = pano_rows.get(row_no)
        if in_shard is not None and in_shard != sample_key(cell, split):
            fail(f"row {row_no}: ledger puts it in {sample_key(cell, split)}, shards in {in_shard}")
    # The shard plan (builds that wrote one): each shard holds what its plan gave it.
    plans = read_plans(out)
    if plans:
        for problem in reconcile(ledger, None, plans, read_shard_stats(out)).problems:
            fail(f"plan: {problem}")
    per_cell = kept.groupby(["metro", "cell", "split"]).size()
    over = per_cell[per_cell > options["max_panos"]]
    for (metro, cell, split), n in over.items():
        fail(f"{metro} {cell} {split}: {n} kept > max {options['max_panos']}")

    return {
        "ok": not violations,
        "violations": violations[:MAX_LISTED * 4],
        "n_violations": len(violations),
        "checked": {"shards": len(listed), "samples": sum(seen_keys.values()), "panoramas_in_shards": sample_panos,
                    "ledger_rows": int(len(ledger)), "input_rows": n_inputs},
    }

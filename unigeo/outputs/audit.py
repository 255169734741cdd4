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
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from unigeo.core.build_files import MANIFEST, build_root, missing_files
from unigeo.core.fileio import glob, join, read_bytes, relative, sha256_file
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
from unigeo.outputs.folder import unfinished_builds
from unigeo.outputs.ledger import LedgerSummary, summarize_ledger
from unigeo.outputs.readers import iter_shard, read_shard_stats
from unigeo.outputs.reconcile import read_plans, reconcile
from unigeo.pipeline.split import parse_years, split_of
from unigeo.pipeline.staging import FOLDER
from unigeo.sources.panoramas import count_rows, index_chunks

MAX_LISTED = 50


def _input_rows(out: str, config: dict[str, Any]) -> int | None:
    """Rows in the panorama indexes (a service's records as the build staged them), when they are still
    readable (None otherwise)."""
    indexes = config.get("panorama_indexes") or [config["panoramas"]]
    try:  # a staged index lies in the build folder; a native one where the config named it
        return sum(count_rows(index_chunks(join(out, p) if p.startswith(f"{FOLDER}/") else p)) for p in indexes)
    except Exception:
        return None


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


class RowOwners:
    """Which sample of the shards holds each panorama row: an int32 per input row (-1: none), grown as
    larger rows come, and the sample keys by number. Memory: 4 bytes per input row plus the keys."""

    def __init__(self) -> None:
        self.owner = np.full(0, -1, dtype=np.int32)
        self.keys: list[str] = []
        self._number: dict[str, int] = {}

    @classmethod
    def from_index(cls, owner: np.ndarray, keys: list[str]) -> RowOwners:
        """The index a shard pass would build: ``owner[row]`` the number of the sample holding ``row``."""
        made = cls()
        made.owner = np.asarray(owner, dtype=np.int32)
        made.keys = list(keys)
        made._number = {k: i for i, k in enumerate(made.keys)}
        return made

    def claim(self, row: int, key: str) -> str | None:
        """Record that sample ``key`` holds ``row`` (>= 0); return the sample that held it already, if any."""
        if row >= len(self.owner):
            grown = np.full(max(row + 1, 2 * len(self.owner), 1024), -1, dtype=np.int32)
            grown[:len(self.owner)] = self.owner
            self.owner = grown
        number = self._number.setdefault(key, len(self.keys))
        if number == len(self.keys):
            self.keys.append(key)
        earlier = int(self.owner[row])
        if earlier >= 0:
            return self.keys[earlier]
        self.owner[row] = number
        return None

    def of(self, rows: np.ndarray) -> np.ndarray:
        """The sample number holding each of ``rows`` (-1: none)."""
        inside = (rows >= 0) & (rows < len(self.owner))
        found = np.full(len(rows), -1, dtype=np.int32)
        found[inside] = self.owner[rows[inside]]
        return found


class KeptCheck:
    """Compares the ledger's kept rows, batch by batch, with the rows the shards hold (``RowOwners``):
    every kept row in the sample the ledger names, and no row in a shard that the ledger did not keep."""

    def __init__(self, owners: RowOwners) -> None:
        self.owners = owners
        self.key_array = pa.array(owners.keys, pa.string())
        self.kept = np.zeros(len(owners.owner), dtype=np.bool_)
        self.only_ledger: list[int] = []
        self.n_only_ledger = 0
        self.elsewhere: list[str] = []

    def __call__(self, batch: pa.Table) -> None:
        kept = batch.filter(pc.equal(batch["status"], KEPT))
        if not kept.num_rows:
            return
        rows = kept["row"].to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        inside = (rows >= 0) & (rows < len(self.kept))
        self.kept[rows[inside]] = True
        keys = pc.binary_join_element_wise(kept["cell"], kept["split"], "_")
        named = pc.index_in(keys, value_set=self.key_array).to_numpy(zero_copy_only=False)
        named = np.where(np.isnan(named), -1, named).astype(np.int64) if named.dtype.kind == "f" else named
        held = self.owners.of(rows)
        absent = held < 0
        self.n_only_ledger += int(absent.sum())
        self.only_ledger += rows[absent][:MAX_LISTED - len(self.only_ledger)].tolist()
        moved = np.flatnonzero(~absent & (held != named))
        key_list = keys.to_pylist() if len(moved) else []
        for i in moved[:MAX_LISTED - len(self.elsewhere)]:
            self.elsewhere.append(f"row {rows[i]}: ledger puts it in {key_list[i]}, shards in "
                                  f"{self.owners.keys[held[i]]}")

    def problems(self) -> list[str]:
        in_shards = self.owners.owner >= 0
        only_shards = np.flatnonzero(in_shards & ~self.kept[:len(in_shards)])
        out = []
        if self.n_only_ledger or len(only_shards):
            out.append(f"kept in ledger but not in shards: rows {self.only_ledger[:MAX_LISTED]}; in shards but not "
                       f"kept: rows {only_shards[:MAX_LISTED].tolist()}")
        return out + self.elsewhere


def audit_ledger(out: str, manifest: dict[str, Any], owners: RowOwners, fail: Callable[[str], None]
                 ) -> tuple[LedgerSummary, int]:
    """The audit's ledger checks, in one streamed pass over the ledger (memory: a few bytes per input row
    and the samples, never the rows themselves): one row per input row, the sums the manifest states, the
    kept panoramas exactly those the shards hold (``owners``, from the shard pass), each shard what its
    plan gave it, no cell over ``max_panos``. Returns the ledger's summary and the input row count.
    """
    counts = manifest["counts"]
    options = manifest["options"]
    n_inputs = _input_rows(out, manifest["config"])
    if n_inputs is None:
        n_inputs = counts["overall"]["inputs"]
    elif n_inputs != counts["overall"]["inputs"]:
        fail(f"panorama index has {n_inputs} rows, manifest says {counts['overall']['inputs']}")
    kept_check = KeptCheck(owners)
    try:
        ledger = summarize_ledger(out, n_inputs, kept_check)
    except Exception as e:
        fail(f"cannot read the ledger: {e}")
        ledger = LedgerSummary()
    n_repeated, repeated = ledger.rows.repeated()
    if n_repeated:
        fail(f"ledger rows appear more than once: {repeated}")
    n_missing, missing = ledger.rows.missing(n_inputs)
    if n_missing:
        fail(f"{n_missing} input rows missing from the ledger, e.g. {missing}")
    beyond = ledger.rows.beyond(n_inputs) + ledger.rows.negative
    if beyond:
        fail(f"{beyond} ledger rows are not rows of the panorama index (0 to {n_inputs - 1})")
    bad_status = sorted(ledger.statuses() - set(STATUSES))
    if bad_status:
        fail(f"ledger has unknown statuses {bad_status}")
    recount = ledger.counts()
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
    for problem in kept_check.problems():
        fail(problem)
    # The shard plan (builds that wrote one): each shard holds what its plan gave it.
    plans = read_plans(out)
    if plans:
        for problem in reconcile(ledger, None, plans, read_shard_stats(out)).problems:
            fail(f"plan: {problem}")
    for metro, cell, split, n in ledger.over(options["max_panos"]):
        fail(f"{metro} {cell} {split}: {n} kept > max {options['max_panos']}")
    return ledger, n_inputs


def audit(out: str) -> dict[str, Any]:
    """Audit a build folder; ``result["ok"]`` is False when any check failed."""
    violations: list[str] = []

    def fail(message: str) -> None:
        violations.append(message)

    try:
        published = read_bytes(join(out, MANIFEST))
        manifest = json.loads(published)
    except Exception as e:
        return {"ok": False, "violations": [f"cannot read {MANIFEST}: {e}"], "n_violations": 1, "checked": {}}
    top, out = out, build_root(out, manifest)
    if out != top:  # a versioned build: the published manifest is its prefix's, byte for byte
        try:
            if read_bytes(join(out, MANIFEST)) != published:
                fail(f"{MANIFEST} differs from {relative(top, join(out, MANIFEST))}, the build it names")
        except FileNotFoundError:
            return {"ok": False, "violations": [f"{MANIFEST} names the build {relative(top, out)}, which holds no "
                                                f"{MANIFEST}"], "n_violations": 1, "checked": {}}
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
    owners = RowOwners()
    n_listed = int(manifest["counts"]["overall"]["inputs"])
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
                    if not 0 <= int(p["row"]) < n_listed:  # (and a crafted row cannot grow the index)
                        fail(f"{name}: panorama {p['pano_id']} of sample {key} has row {p['row']}, not one of the "
                             f"manifest's {n_listed} input rows")
                        continue
                    earlier = owners.claim(int(p["row"]), key)
                    if earlier is not None:
                        fail(f"panorama {p['pano_id']} (row {p['row']}) in samples {earlier} and {key}")
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

    ledger, n_inputs = audit_ledger(out, manifest, owners, fail)

    return {
        "ok": not violations,
        "violations": violations[:MAX_LISTED * 4],
        "n_violations": len(violations),
        "checked": {"shards": len(listed), "samples": sum(seen_keys.values()), "panoramas_in_shards": sample_panos,
                    "ledger_rows": ledger.n_rows, "input_rows": n_inputs},
        "build": {"layout": "versioned" if out != top else "in-place", "files": relative(top, out) if out != top
                  else ".", "unfinished": unfinished_builds(top)},
    }

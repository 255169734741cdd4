"""``DIR/report/``: what a reviewer reads: where the data is, how it splits, what was dropped and why.

Built from the manifest, ledger, cells, per-sample summaries and rejects alone (no shard is opened):
``report.json`` with every number, PNG figures, and ``index.html`` that embeds them, so the page opens
from disk with no network.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
from collections import Counter
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import shapely
from matplotlib.cm import ScalarMappable
from matplotlib.collections import PolyCollection
from matplotlib.colors import LinearSegmentedColormap, ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from unigeo.core.build_files import build_root, missing_files, read_cells, read_manifest, read_samples
from unigeo.core.errors import UniGeoError
from unigeo.core.fileio import exists, join, write_bytes
from unigeo.core.sample import (
    DIGEST_COLUMNS,
    JSON,
    KEPT,
    KIND_MEMBERS,
    NOT_SELECTED,
    REJECTED,
    TEST,
    TEXT,
    TILE_MEMBERS,
    TRAIN,
    crop_members,
    decode_aerial,
    decode_dsm,
    thumbnail_jpeg,
    tile_member,
)
from unigeo.outputs.ledger import summarize_ledger
from unigeo.outputs.readers import iter_shard, read_rejects
from unigeo.outputs.report_html import render_html
from unigeo.pipeline.cells import cell_polygon
from unigeo.pipeline.fps import local_metres
from unigeo.pipeline.staging import METROS, load_metros

EXAMPLES = 3
MAX_POLYGONS = 5_000  # above this many cells in a metro, maps aggregate cells into hexagons
HEX_GRID = 70  # hexagons across a metro's width in an aggregated map
COLOURS = {TRAIN: "#2b8cbe", TEST: "#e6550d", "both": "#756bb1", "empty": "#e5e5e5"}
SERIES_COLOURS = {TRAIN: COLOURS[TRAIN], TEST: COLOURS[TEST], REJECTED: "#9e9e9e"}  # histograms by split
SPLIT_CMAP = LinearSegmentedColormap.from_list("split", [COLOURS[TRAIN], COLOURS["both"], COLOURS[TEST]])


def _png(fig: Figure) -> bytes:
    """PNG bytes of a figure (matplotlib's object API: no pyplot state, no GUI backend), reduced to a
    256-colour palette: a third of the bytes of the RGBA file, so a page of many metros stays small."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    with Image.open(io.BytesIO(buf.getvalue())) as img:
        small = img.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=True)
    return out.getvalue()


def reject_summary(rejects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per kind and reason: count and a few examples (id, detail), most frequent first."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rejects:
        groups.setdefault((r["kind"], r["reason"]), []).append(r)
    out = []
    for (kind, reason), rows in groups.items():
        examples = sorted(rows, key=lambda r: r["id"])[:EXAMPLES]
        out.append({"kind": kind, "reason": reason, "count": len(rows),
                    "examples": [{"id": r["id"], "detail": r["detail"]} for r in examples]})
    return sorted(out, key=lambda g: (-g["count"], g["kind"], g["reason"]))


def completeness(samples: pd.DataFrame) -> dict[str, Any]:
    """How many samples lack each member, and why."""
    n = len(samples)
    out: dict[str, Any] = {"samples": n, "note": ""}
    reasons: dict[str, Counter[str]] = {"aerial.png": Counter(), "dsm.npy": Counter()}
    for missing in samples.get("missing", pd.Series(dtype=str)):
        for item in filter(None, str(missing).split(",")):
            member, _, reason = item.partition(":")
            kind = next((k for k, names in KIND_MEMBERS.items() if member in names), "")
            reasons.setdefault(TILE_MEMBERS.get(kind, member), Counter())[reason] += 1  # either encoding
    out["members"] = {
        "sv.jpg": {"missing": int((samples["crops"] == 0).sum()) if n else 0, "reasons": {}},
        "aerial.png": {"missing": int((~samples["aerial"]).sum()) if n else 0, "reasons": dict(reasons["aerial.png"])},
        "dsm.npy": {"missing": int((~samples["dsm"]).sum()) if n else 0, "reasons": dict(reasons["dsm.npy"])},
        "txt": {"missing": int((samples["text"] == "").sum()) if n else 0, "reasons": {}},
    }
    if n and (samples["members"] == 0).all():
        out["note"] = "built with --no-imagery: samples hold their json alone"
    return out


def split_overlap(samples: pd.DataFrame) -> dict[str, Any]:
    """Cells present in both splits, and how far each test cell is from the nearest train cell."""
    train = samples[samples["split"] == TRAIN]
    test = samples[samples["split"] == TEST]
    both = set(train["cell"]) & set(test["cell"])
    out: dict[str, Any] = {"train_cells": int(train["cell"].nunique()), "test_cells": int(test["cell"].nunique()),
                           "cells_in_both": len(both),
                           "share_of_test_cells_in_both": round(len(both) / max(1, test["cell"].nunique()), 4),
                           "test_to_nearest_train_m": None}  # None: a split is empty, no distance to give
    if len(train) and len(test):
        tree = shapely.STRtree(shapely.points(train["lon"].to_numpy(), train["lat"].to_numpy()))
        nearest = tree.query_nearest(shapely.points(test["lon"].to_numpy(), test["lat"].to_numpy()),
                                     all_matches=False)[1]
        d = np.hypot(*local_metres(train["lat"].to_numpy()[nearest], train["lon"].to_numpy()[nearest],
                                   test["lat"].to_numpy(), test["lon"].to_numpy()).T)
        out["test_to_nearest_train_m"] = {"min": round(float(d.min()), 1), "median": round(float(np.median(d)), 1),
                                          "p90": round(float(np.percentile(d, 90)), 1), "max": round(float(d.max()), 1)}
        out["_distances"] = d
    return out


SPATIAL_HOLDOUT_M = 1000.0  # a test cell at least this far from every train cell is spatially held out


def unseen_distances(samples: pd.DataFrame, test_to_train_m: np.ndarray | None) -> dict[str, Any]:
    """How far each unseen test cell (no train sample in the same cell) is from the nearest train cell, and
    how many lie at least ``SPATIAL_HOLDOUT_M`` away: the test places that are new in space, not only in
    time. ``test_to_train_m``: ``split_overlap``'s distance of every test sample, in the samples' order
    (None when a split is empty). ``None`` for the distances when a split is empty or every test cell was
    seen."""
    train = samples[samples["split"] == TRAIN]
    test = samples[samples["split"] == TEST]
    unseen = ~test["cell"].isin(set(train["cell"])).to_numpy()
    out: dict[str, Any] = {"unseen_test_cells": int(test["cell"][unseen].nunique()), "held_out_m": SPATIAL_HOLDOUT_M,
                           "spatially_held_out_cells": 0, "to_nearest_train_m": None}
    if test_to_train_m is not None and unseen.any():
        d = test_to_train_m[unseen]
        out["to_nearest_train_m"] = {"min": round(float(d.min()), 1), "median": round(float(np.median(d)), 1),
                                     "max": round(float(d.max()), 1)}
        out["spatially_held_out_cells"] = int((d >= SPATIAL_HOLDOUT_M).sum())
    return out


def member_leakage(samples: pd.DataFrame) -> dict[str, Any]:
    """Per member kind (aerial, dsm, txt), how many test samples in a cell that also has a train sample
    carry byte-identical member bytes to that train sample (same epoch of the raster, same POI text): a
    model can match them without learning anything about the place. ``None`` per member for a build whose
    samples table has no digests (written before they were kept)."""
    train = samples[samples["split"] == TRAIN].set_index("cell")
    test = samples[(samples["split"] == TEST) & samples["cell"].isin(set(train.index))]
    out: dict[str, Any] = {"test_samples_in_seen_cells": int(len(test)), "members": {}}
    for kind, column in DIGEST_COLUMNS.items():
        if column not in samples.columns:
            out["members"][kind] = None
            continue
        mine = test[column].fillna("").to_numpy()
        theirs = train[column].reindex(test["cell"]).fillna("").to_numpy()
        compared = (mine != "") & (theirs != "")
        same = compared & (mine == theirs)
        out["members"][kind] = {"compared": int(compared.sum()), "identical": int(same.sum()),
                                "share": round(float(same.sum() / compared.sum()), 4) if compared.any() else 0.0}
    return out


def years_by_split(ledger_years: dict[tuple[int, str], int], holdout_year: int | None) -> dict[str, dict[str, int]]:
    """Input panoramas per capture year, as ``train`` / ``test`` (kept or not selected: the year decides the
    split) and ``rejected``."""
    out: dict[str, dict[str, int]] = {TRAIN: {}, TEST: {}, REJECTED: {}}
    for (year, status), n in sorted(ledger_years.items()):
        if year < 0:
            continue
        group = REJECTED if status == REJECTED else TEST if year == holdout_year else TRAIN
        out[group][str(year)] = out[group].get(str(year), 0) + int(n)
    return out


def alignment(samples: pd.DataFrame) -> dict[str, Any]:
    have = samples[samples["aerial"] | samples["dsm"]] if len(samples) else samples
    out: dict[str, Any] = {
        "tile_crs": {str(k): int(v) for k, v in have["tile_crs"].value_counts().items()} if len(have) else {},
        "tile_gsd_m": sorted({float(g) for g in have["tile_gsd"]}) if len(have) else [],
    }
    for kind in ("aerial", "dsm"):
        s = samples[samples[kind]] if len(samples) else samples
        nod = s[f"{kind}_nodata"] if len(s) else pd.Series(dtype=float)
        out[f"{kind}_nodata_share"] = ({"mean": round(float(nod.mean()), 4), "max": round(float(nod.max()), 4)}
                                       if len(nod) else None)
        by_split: dict[str, dict[str, int]] = {}
        for split in (TRAIN, TEST) if len(s) else ():
            years = s[s["split"] == split][f"{kind}_year"].value_counts().sort_index()
            by_split[split] = {str(k): int(v) for k, v in years.items()}
        out[f"{kind}_years_by_split"] = by_split
    return out


def _cell_values(cells: pd.DataFrame, samples: pd.DataFrame, colour_by: str) -> np.ndarray:
    """Per cell of ``cells``: kept panoramas (``panoramas``), or 0 train / 1 test / 0.5 both / NaN no sample
    (``split``)."""
    if colour_by == "split":
        test = (samples["split"] == TEST).astype(float).groupby(samples["cell"]).mean()
        return test.reindex(cells["cell"]).to_numpy(dtype=float)
    return samples.groupby("cell")["panoramas"].sum().reindex(cells["cell"]).fillna(0).to_numpy(dtype=float)


def _metro_map(name: str, boundary: Any, cells: pd.DataFrame, samples: pd.DataFrame, colour_by: str) -> bytes:
    """A metro's cells coloured by split or by kept panoramas: cell polygons up to ``MAX_POLYGONS`` cells,
    hexagons that aggregate cells above (a 50k-cell metro draws in well under a second)."""
    fig = Figure(figsize=(7, 7))
    ax = fig.subplots()
    tokens = cells["cell"].tolist()
    values = _cell_values(cells, samples, colour_by)
    lon, lat = cells["lon"].to_numpy(dtype=float), cells["lat"].to_numpy(dtype=float)
    aggregate = len(tokens) > MAX_POLYGONS
    if colour_by == "split":
        title = f"{name}: cells by split"
        if aggregate:
            title = f"{name}: test share of the sampled cells per hexagon ({len(tokens):,} cells)"
            ax.hexbin(lon, lat, gridsize=HEX_GRID, mincnt=1, cmap=ListedColormap([COLOURS["empty"]]), linewidths=0)
            have = ~np.isnan(values)
            if have.any():
                hb = ax.hexbin(lon[have], lat[have], C=values[have], gridsize=HEX_GRID, reduce_C_function=np.mean,
                               cmap=SPLIT_CMAP, vmin=0, vmax=1, linewidths=0,
                               extent=(lon.min(), lon.max(), lat.min(), lat.max()))
                fig.colorbar(hb, ax=ax, shrink=0.7, label="share of sampled cells in test (0 train, 1 test)")
        else:
            kind = np.where(np.isnan(values), "empty",
                            np.where(values == 0, TRAIN, np.where(values == 1, TEST, "both")))
            colours = [COLOURS[k] for k in kind]
    else:
        cmap = matplotlib.colormaps["viridis"]
        if aggregate:
            title = f"{name}: kept panoramas per hexagon ({len(tokens):,} cells)"
            hb = ax.hexbin(lon, lat, C=values, gridsize=HEX_GRID, reduce_C_function=np.sum, cmap=cmap, mincnt=1,
                           linewidths=0)
            fig.colorbar(hb, ax=ax, shrink=0.7, label="panoramas")
        else:
            top = max(1.0, float(values.max())) if len(values) else 1.0
            colours = [cmap(v / top) if v > 0 else COLOURS["empty"] for v in values]
            title = f"{name}: kept panoramas per cell (max {int(top)})"
            fig.colorbar(ScalarMappable(cmap=cmap, norm=Normalize(0, top)), ax=ax, shrink=0.7, label="panoramas")
    if not aggregate:
        polys = [np.asarray(cell_polygon(t).exterior.coords) for t in tokens]
        ax.add_collection(PolyCollection(polys, facecolors=colours, edgecolors="white", linewidths=0.2))
    for part in shapely.get_parts(boundary):
        x, y = part.exterior.xy
        ax.plot(x, y, color="black", linewidth=1.2)
    ax.autoscale()
    ax.set_aspect(1 / np.cos(np.radians(float(cells["lat"].mean()) if len(cells) else 0.0)))
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    if colour_by == "split" and not aggregate:  # beside the map, so that it hides no cell
        ax.legend(handles=[Patch(color=c, label=k) for k, c in COLOURS.items()], loc="upper left",
                  bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8)
        fig.subplots_adjust(right=0.8)
    return _png(fig)


def _histogram(values: Any, bins: Any, title: str, xlabel: str,
               stacked: dict[str, tuple[Any, Any]] | None = None) -> bytes:
    """A histogram of ``values``, or of ``stacked`` series: label -> (values, weight of each value)."""
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    if stacked:
        ax.hist([v for v, _ in stacked.values()], bins=bins, stacked=True, label=list(stacked.keys()),
                weights=[w for _, w in stacked.values()], color=[SERIES_COLOURS[k] for k in stacked] if all(
                    k in SERIES_COLOURS for k in stacked) else None)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # beside the bars
        fig.subplots_adjust(right=0.8)
    else:
        ax.hist(values, bins=bins, color=COLOURS[TRAIN])
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    return _png(fig)


def metro_outlines(out: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """Each metro's outline from ``DIR/inputs`` (staged by the build, so DIR needs no input file); a
    build written before outlines were staged falls back to the boundary files its manifest names."""
    staged = join(out, METROS)
    if exists(staged):
        return dict(load_metros(staged))
    from unigeo.sources.metros import read_boundary

    return {m["name"]: read_boundary(m["boundary"], m["name"]).geometry for m in manifest["config"]["metros"]}


REJECT_WARN = 0.10  # share of input panoramas rejected above which the report warns
MISSING_WARN = 0.05  # share of samples without a member above which the report warns


MEMBER_NAMES = {"aerial": "aerial tile", "dsm": "DSM", "txt": "text"}


def leakage_warnings(leakage: dict[str, Any], unseen: dict[str, Any]) -> list[dict[str, str]]:
    """Warnings on what the test split shares with the train split: identical member bytes in seen cells, and
    test places that are close to trained ones."""
    out = []
    n = leakage["test_samples_in_seen_cells"]
    for kind, m in leakage["members"].items():
        if m and m["identical"]:
            out.append({"level": "warning", "message": f"{m['share']:.1%} of the {m['compared']} test samples in cells "
                        f"with a train sample carry that train sample's exact {MEMBER_NAMES[kind]} bytes "
                        f"({m['identical']} of {n}): a model can match them without learning the place; compare "
                        "seen and unseen results apart"})
    d = unseen["to_nearest_train_m"]
    if unseen["unseen_test_cells"] == 0:
        out.append({"level": "warning", "message": "no test cell is unseen: every test location has a train sample "
                    "in the same cell, so the split holds no place that is new to the model"})
    elif d is not None and unseen["spatially_held_out_cells"] == 0:
        out.append({"level": "warning", "message": f"the split offers no spatially held-out test set: all "
                    f"{unseen['unseen_test_cells']} unseen test cells lie within {d['max']:.0f} m of a train cell "
                    f"(median {d['median']:.0f} m; none {unseen['held_out_m']:.0f} m or more away)"})
    return out


def warnings_for(headline: dict[str, Any], completeness: dict[str, Any], overlap: dict[str, Any],
                 unassigned: dict[str, Any], leakage: dict[str, Any] | None = None,
                 unseen: dict[str, Any] | None = None) -> list[dict[str, str]]:
    """What a reviewer must look at: ``{"level": "error"|"warning"|"note", "message"}``, most severe first."""
    out = []
    if not headline["ledger_balances"]:
        out.append({"level": "error", "message": "the ledger does not balance: inputs != kept + not selected + "
                    "rejected; run `unigeo audit`"})
    if headline["inputs"] and headline["rejected"] / headline["inputs"] > REJECT_WARN:
        out.append({"level": "warning", "message": f"{headline['rejected']} of {headline['inputs']} input panoramas "
                    f"({headline['rejected'] / headline['inputs']:.1%}) were rejected; see Rejects"})
    n = completeness["samples"]
    for member, m in completeness.get("members", {}).items():
        if n and m["missing"] / n > MISSING_WARN:
            out.append({"level": "warning", "message": f"{m['missing']} of {n} samples ({m['missing'] / n:.1%}) lack "
                        f"{member}: " + ", ".join(f"{k} {v}" for k, v in m["reasons"].items())})
    if overlap.get("test_cells"):
        out.append({"level": "note", "message": f"{overlap['share_of_test_cells_in_both']:.1%} of test cells also hold "
                    "a train sample (seen locations: the evaluation reports seen and unseen apart)"})
    if unassigned.get("rejected"):
        out.append({"level": "note", "message": f"{unassigned['rejected']} panoramas were rejected before a metro was "
                    "known (index-row checks, duplicates, outside every metro): they count in the totals and "
                    "in no metro's row"})
    for s in ("train", "test"):
        if headline[f"samples_{s}"] == 0:
            out.append({"level": "warning", "message": f"the {s} split holds no sample"})
    if leakage is not None and unseen is not None and headline["samples_train"] and headline["samples_test"]:
        out += leakage_warnings(leakage, unseen)
    order = {"error": 0, "warning": 1, "note": 2}
    return sorted(out, key=lambda w: order[w["level"]])


GALLERY_PER_SPLIT = 4  # random samples per split the report shows whole
GALLERY_PX = 192  # side of the gallery's aerial and DSM images
GALLERY_CROPS = 4  # crops shown per sample


def shaded_dsm(dsm: np.ndarray, gsd: float, px: int = GALLERY_PX) -> bytes:
    """A DSM as a hill-shaded, height-coloured PNG with its colour bar in metres (unknown heights grey)."""
    from matplotlib.colors import LightSource

    known = np.isfinite(dsm)
    z = np.where(known, dsm, float(np.nanmin(dsm)) if known.any() else 0.0).astype(np.float64)
    low, high = (float(z[known].min()), float(z[known].max())) if known.any() else (0.0, 1.0)
    high = max(high, low + 0.01)
    cmap = matplotlib.colormaps["terrain"]
    rgb = LightSource(azdeg=315, altdeg=45).shade(z, cmap=cmap, norm=Normalize(low, high), vert_exag=2, dx=gsd,
                                                   dy=gsd, blend_mode="soft")[..., :3]
    rgb[~known] = 0.6
    fig = Figure(figsize=(px / 72 * 1.35, px / 72), dpi=72)
    ax = fig.add_axes((0.0, 0.0, 0.74, 1.0))
    ax.imshow(rgb, interpolation="nearest")
    ax.set_axis_off()
    bar = fig.add_axes((0.78, 0.08, 0.05, 0.84))
    colourbar = fig.colorbar(ScalarMappable(cmap=cmap, norm=Normalize(low, high)), cax=bar)
    colourbar.set_label("height (m)", fontsize=7)
    colourbar.ax.tick_params(labelsize=6)
    return _png(fig)


def gallery(out: str, manifest: dict[str, Any], per_split: int = GALLERY_PER_SPLIT
            ) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """A few samples per split, drawn at random (seeded by the build's seed) from one random shard of the
    split, streamed once: their crops, aerial tile, shaded DSM and text. Returns the entries for
    report.json and the images by file name."""
    rng = np.random.default_rng(int(manifest.get("seed", 0)))
    entries: list[dict[str, Any]] = []
    images: dict[str, bytes] = {}
    for split in (TRAIN, TEST):
        shards = [s for s in manifest["shards"] if s["split"] == split and s["samples"] > 0]
        if not shards:
            continue
        shard = shards[int(rng.integers(len(shards)))]
        wanted = set(rng.choice(shard["samples"], min(per_split, shard["samples"]), replace=False).tolist())
        for index, (key, members) in enumerate(iter_shard(join(out, shard["shard"]))):
            if index > max(wanted):
                break  # the rest of the shard is not read
            if index not in wanted:
                continue
            meta = json.loads(members[JSON])
            entry: dict[str, Any] = {"key": key, "split": split, "shard": shard["shard"], "lat": meta["lat"],
                                     "lon": meta["lon"], "dates": meta.get("dates", {}),
                                     "panoramas": len(meta["panoramas"]), "crops": [], "aerial": None, "dsm": None,
                                     "text": members.get(TEXT, b"").decode("utf-8")}
            for member in crop_members(meta)[:GALLERY_CROPS]:
                if member in members:
                    images[f"gallery_{key}_{member}"] = members[member]
                    entry["crops"].append(f"gallery_{key}_{member}")
            aerial, dsm = tile_member(members, "aerial"), tile_member(members, "dsm")
            if aerial is not None:
                images[f"gallery_{key}_aerial.jpg"] = thumbnail_jpeg(decode_aerial(members[aerial]), GALLERY_PX)
                entry["aerial"] = f"gallery_{key}_aerial.jpg"
            if dsm is not None:
                gsd = float((meta.get("dsm") or {}).get("gsd", 1.0))
                images[f"gallery_{key}_dsm.png"] = shaded_dsm(decode_dsm(members[dsm]), gsd)
                entry["dsm"] = f"gallery_{key}_dsm.png"
            entries.append(entry)
    return entries, images


class IncompleteBuildError(UniGeoError):
    """A build folder lacks files its manifest lists."""


def build_report(out: str, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``DIR/report/{report.json,index.html,*.png}`` (in the folder of the build's files, which a
    versioned build's manifest names); return the report. ``manifest``: the build's, when it is not written
    yet (a build writes its manifest last)."""
    if manifest is None:
        manifest = read_manifest(out)
        out = build_root(out, manifest)
    missing = [f for files in missing_files(out, manifest, ("ledger", "cells", "samples")).values() for f in files]
    if missing:
        raise IncompleteBuildError(f"{out} is incomplete: {missing[:5]} listed in its manifest are missing; "
                                   "`unigeo audit` lists every problem, a rebuild restores them")
    ledger = summarize_ledger(out)  # streamed: memory grows with the samples, not the panoramas
    cells = read_cells(out)
    samples = read_samples(out)
    outlines = metro_outlines(out, manifest)
    rejects = read_rejects(out)
    figures: dict[str, bytes] = {}
    metros = []
    for m in manifest["config"]["metros"]:
        boundary = outlines[m["name"]]
        mc = cells[cells["metro"] == m["name"]] if len(cells) else cells
        ms = samples[samples["metro"] == m["name"]]
        figures[f"map_split_{m['name']}.png"] = _metro_map(m["name"], boundary, mc, ms, "split")
        figures[f"map_panoramas_{m['name']}.png"] = _metro_map(m["name"], boundary, mc, ms, "panoramas")
        per = manifest["counts"]["per_metro"].get(m["name"], {})
        metros.append({"name": m["name"], "cells": int(len(mc)), "cells_with_samples": int(ms["cell"].nunique()),
                       "coverage": round(ms["cell"].nunique() / max(1, len(mc)), 4), **{
                           k: per.get(k) for k in ("inputs", "kept", "not_selected", "rejected", "samples")}})
    per_cell = samples["panoramas_in_cell"].to_numpy(dtype=float) if len(samples) else np.zeros(0)
    figures["hist_panoramas_per_cell.png"] = _histogram(
        per_cell, bins=np.arange(0, max(2, int(per_cell.max()) + 2) if len(per_cell) else 2) - 0.5,  # centred
        title="panoramas per (cell, split) before selection", xlabel="panoramas")
    known = {(year, status): n for (year, status), n in ledger.years.items() if year >= 0}
    years = np.arange(min(y for y, _ in known), max(y for y, _ in known) + 2) if known else np.arange(2)
    figures["hist_capture_years.png"] = _histogram(
        None, bins=years - 0.5, title="capture years of the input panoramas", xlabel="year",
        stacked={s: (np.array([y for y, st in known if st == s], dtype=float),
                     np.array([n for (_, st), n in known.items() if st == s], dtype=float))
                 for s in (KEPT, NOT_SELECTED, REJECTED)})
    holdout = manifest.get("options", {}).get("holdout_year")
    by_split = years_by_split(ledger.years, holdout)
    split_years = sorted({int(y) for g in by_split.values() for y in g}) or [0]
    figures["hist_years_by_split.png"] = _histogram(
        None, bins=np.arange(split_years[0], split_years[-1] + 2) - 0.5,
        title=f"capture years by split (test: {holdout})", xlabel="year",
        stacked={g: (np.array([int(y) for y in by_split[g]], dtype=float),
                     np.array(list(by_split[g].values()), dtype=float)) for g in (TRAIN, TEST, REJECTED)})
    overlap = split_overlap(samples)
    distances = overlap.pop("_distances", None)
    leakage = member_leakage(samples)
    unseen = unseen_distances(samples, distances)
    if distances is not None:
        figures["hist_test_to_train_m.png"] = _histogram(
            distances, bins=30, title="distance from each test cell to the nearest train cell", xlabel="metres")
    shown, gallery_images = gallery(out, manifest)
    o = manifest["counts"]["overall"]
    by_year: Counter[int] = Counter()
    for (year, _), n in known.items():
        by_year[year] += n
    year_counts = {str(y): int(n) for y, n in sorted(by_year.items())}
    report: dict[str, Any] = {
        "generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "build": {k: manifest[k] for k in ("format", "unigeo_version", "created", "options", "seed")},
        "headline": {
            "inputs": o["inputs"], "kept": o["kept"], "not_selected": o["not_selected"], "rejected": o["rejected"],
            "samples_train": o["samples"]["train"], "samples_test": o["samples"]["test"],
            "cells": o.get("cells", 0), "shards": o.get("shards", 0),
            "ledger_balances": o["inputs"] == o["kept"] + o["not_selected"] + o["rejected"],
        },
        "metros": metros,
        "splits": {s: {"samples": int((samples["split"] == s).sum()),
                       "panoramas": int(samples[samples["split"] == s]["panoramas"].sum())} for s in (TRAIN, TEST)},
        "capture_years": year_counts,
        "capture_years_by_split": by_split,
        "panoramas_per_cell": {"mean": round(float(per_cell.mean()), 2) if len(per_cell) else 0.0,
                               "max": int(per_cell.max()) if len(per_cell) else 0},
        "rejects": reject_summary(rejects),
        "completeness": completeness(samples),
        "overlap": overlap,
        "leakage": {**leakage, "unseen": unseen},
        "alignment": alignment(samples),
        "shards": [{"shard": sh["shard"], "split": sh["split"], "samples": sh["samples"], "bytes": sh["bytes"],
                    "sha256": sh["sha256"][:12]} for sh in manifest["shards"]],
        "figures": sorted(figures),
        "gallery": shown,
    }
    report["warnings"] = warnings_for(report["headline"], report["completeness"], overlap,
                                      manifest["counts"].get("unassigned", {}), leakage, unseen)
    folder = join(out, "report")
    for name, data in {**figures, **gallery_images}.items():
        write_bytes(f"{folder}/{name}", data)
    write_bytes(f"{folder}/report.json", json.dumps(report, indent=2).encode())
    html = render_html(report, {k: base64.b64encode(v).decode() for k, v in {**figures, **gallery_images}.items()})
    write_bytes(f"{folder}/index.html", html.encode())
    return report

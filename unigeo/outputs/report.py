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
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from unigeo.core.build_files import missing_files, read_cells, read_ledger, read_manifest, read_samples
from unigeo.core.errors import UniGeoError
from unigeo.core.fileio import exists, join, write_bytes
from unigeo.core.sample import KEPT, KIND_MEMBERS, NOT_SELECTED, REJECTED, TEST, TILE_MEMBERS, TRAIN
from unigeo.outputs.readers import read_rejects
from unigeo.outputs.report_html import render_html
from unigeo.pipeline.cells import cell_polygon
from unigeo.pipeline.fps import local_metres
from unigeo.pipeline.staging import METROS, load_metros

EXAMPLES = 3
MAX_POLYGONS = 60_000  # above this many cells, maps draw centres instead of polygons
COLOURS = {TRAIN: "#2b8cbe", TEST: "#e6550d", "both": "#756bb1", "empty": "#e5e5e5"}


def _png(fig: Figure) -> bytes:
    """PNG bytes of a figure (matplotlib's object API: no pyplot state, no GUI backend)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


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
        d = np.array([float(np.hypot(*local_metres(np.array([la]), np.array([lo]), lat0, lon0)[0]))
                      for la, lo, lat0, lon0 in zip(train["lat"].to_numpy()[nearest], train["lon"].to_numpy()[nearest],
                                                    test["lat"].to_numpy(), test["lon"].to_numpy())])
        out["test_to_nearest_train_m"] = {"min": round(float(d.min()), 1), "median": round(float(np.median(d)), 1),
                                          "p90": round(float(np.percentile(d, 90)), 1), "max": round(float(d.max()), 1)}
        out["_distances"] = d
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


def _metro_map(name: str, boundary: Any, cells: pd.DataFrame, samples: pd.DataFrame, colour_by: str) -> bytes:
    fig = Figure(figsize=(7, 7))
    ax = fig.subplots()
    tokens = cells["cell"].tolist()
    by_cell = samples.groupby("cell")
    if colour_by == "split":
        splits = by_cell["split"].agg(lambda s: "both" if s.nunique() > 1 else s.iloc[0])
        colours = [COLOURS[splits[t]] if t in splits.index else COLOURS["empty"] for t in tokens]
        title = f"{name}: cells by split"
    else:
        counts = by_cell["panoramas"].sum()
        values = np.array([counts.get(t, 0) for t in tokens], dtype=float)
        cmap = matplotlib.colormaps["viridis"]
        top = max(1.0, float(values.max())) if len(values) else 1.0
        colours = [cmap(v / top) if v > 0 else COLOURS["empty"] for v in values]
        title = f"{name}: kept panoramas per cell (max {int(top)})"
        fig.colorbar(ScalarMappable(cmap=cmap, norm=Normalize(0, top)), ax=ax, shrink=0.7, label="panoramas")
    if len(tokens) <= MAX_POLYGONS:
        polys = [np.asarray(cell_polygon(t).exterior.coords) for t in tokens]
        ax.add_collection(PolyCollection(polys, facecolors=colours, edgecolors="white", linewidths=0.2))
    else:
        ax.scatter(cells["lon"], cells["lat"], c=colours, s=2, marker="s")
    for part in shapely.get_parts(boundary):
        x, y = part.exterior.xy
        ax.plot(x, y, color="black", linewidth=1.2)
    ax.autoscale()
    ax.set_aspect(1 / np.cos(np.radians(float(cells["lat"].mean()) if len(cells) else 0.0)))
    ax.set_title(title)
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    if colour_by == "split":
        ax.legend(handles=[Patch(color=c, label=k) for k, c in COLOURS.items()], loc="lower right", fontsize=8)
    return _png(fig)


def _histogram(values: Any, bins: Any, title: str, xlabel: str, stacked: dict[str, Any] | None = None) -> bytes:
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    if stacked:
        ax.hist(list(stacked.values()), bins=bins, stacked=True, label=list(stacked.keys()))
        ax.legend(fontsize=8)
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


def warnings_for(headline: dict[str, Any], completeness: dict[str, Any], overlap: dict[str, Any],
                 unassigned: dict[str, Any]) -> list[dict[str, str]]:
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
    order = {"error": 0, "warning": 1, "note": 2}
    return sorted(out, key=lambda w: order[w["level"]])


class IncompleteBuildError(UniGeoError):
    """A build folder lacks files its manifest lists."""


def build_report(out: str) -> dict[str, Any]:
    """Write ``DIR/report/{report.json,index.html,*.png}``; return the report."""
    manifest = read_manifest(out)
    missing = [f for files in missing_files(out, manifest, ("ledger", "cells", "samples")).values() for f in files]
    if missing:
        raise IncompleteBuildError(f"{out} is incomplete: {missing[:5]} listed in its manifest are missing; "
                                   "`unigeo audit` lists every problem, a rebuild restores them")
    ledger = read_ledger(out)
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
    known = ledger[ledger["year"] >= 0] if "year" in ledger.columns else ledger.iloc[0:0]
    years = np.arange(int(known["year"].min()), int(known["year"].max()) + 2) if len(known) else np.arange(2)
    figures["hist_capture_years.png"] = _histogram(
        None, bins=years - 0.5, title="capture years of the input panoramas", xlabel="year",
        stacked={s: known[known["status"] == s]["year"].to_numpy() for s in (KEPT, NOT_SELECTED, REJECTED)})
    overlap = split_overlap(samples)
    distances = overlap.pop("_distances", None)
    if distances is not None:
        figures["hist_test_to_train_m.png"] = _histogram(
            distances, bins=30, title="distance from each test cell to the nearest train cell", xlabel="metres")
    o = manifest["counts"]["overall"]
    year_counts = {str(y): int(n) for y, n in known["year"].value_counts().sort_index().items()}
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
        "panoramas_per_cell": {"mean": round(float(per_cell.mean()), 2) if len(per_cell) else 0.0,
                               "max": int(per_cell.max()) if len(per_cell) else 0},
        "rejects": reject_summary(rejects),
        "completeness": completeness(samples),
        "overlap": overlap,
        "alignment": alignment(samples),
        "shards": [{"shard": sh["shard"], "split": sh["split"], "samples": sh["samples"], "bytes": sh["bytes"],
                    "sha256": sh["sha256"][:12]} for sh in manifest["shards"]],
        "figures": sorted(figures),
    }
    report["warnings"] = warnings_for(report["headline"], report["completeness"], overlap,
                                      manifest["counts"].get("unassigned", {}))
    folder = join(out, "report")
    for name, data in figures.items():
        write_bytes(f"{folder}/{name}", data)
    write_bytes(f"{folder}/report.json", json.dumps(report, indent=2).encode())
    html = render_html(report, {k: base64.b64encode(v).decode() for k, v in figures.items()})
    write_bytes(f"{folder}/index.html", html.encode())
    return report

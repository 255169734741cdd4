"""What a ``sources.yaml`` points at, read back through the readers: a quick look before a build."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from unigeo.sources.config import load_config
from unigeo.sources.metros import read_boundary
from unigeo.sources.panoramas import check_rows, read_panorama_index
from unigeo.sources.pois import read_pois
from unigeo.sources.stac import open_rasters
from unigeo.sources.streetlevel import read_service

MAX_LISTED = 8  # rasters of a kind listed one by one; more are summarised per year


def _size(path: str) -> int | None:
    return os.path.getsize(path) if os.path.exists(path) else None


def inventory(config_path: str) -> dict[str, Any]:
    """Open every source of a config with the readers and summarise it.

    Raises whatever the readers raise for an unusable source; bad rows are counted, not raised.
    """
    cfg = load_config(config_path)
    out: dict[str, Any] = {"config": cfg.path, "metros": [], "aerial": [], "dsm": []}
    for m in cfg.metros:
        metro = read_boundary(m.boundary, m.name)
        w, s, e, n = metro.geometry.bounds
        out["metros"].append({"name": m.name, "file": m.boundary, "bounds_lonlat": [w, s, e, n],
                              "repairs": list(metro.repairs)})
    tables = [read_panorama_index(p.path) if p.format == "native" else check_rows(read_service(p.format, p.path,
                                                                                              p.images))
              for p in cfg.panorama_sources]
    good = pd.concat([t.good for t in tables], ignore_index=True)
    rejects = pd.concat([t.rejects for t in tables], ignore_index=True)
    years = good["year"].value_counts().sort_index() if len(good) else pd.Series(dtype=int)
    out["panoramas"] = {
        "file": ", ".join(p.path for p in cfg.panorama_sources),
        "bytes": sum(_size(p.path) or 0 for p in cfg.panorama_sources),
        "rows": sum(t.n_input for t in tables), "good": len(good),
        "rejected": rejects["reason"].value_counts().sort_index().to_dict() if len(rejects) else {},
        "years": {int(str(k)): int(v) for k, v in years.items()},
    }
    for kind, specs in (("aerial", cfg.aerial), ("dsm", cfg.dsm)):
        for r in open_rasters(specs, kind).sources:  # type: ignore[arg-type]
            out[kind].append({"file": r.path, "bytes": _size(r.path), "crs": f"EPSG:{r.epsg}" if r.epsg else "custom",
                              "size_px": [r.width, r.height], "res": list(r.res), "bands": r.count,
                              "dtype": r.dtype, "nodata": r.nodata, "overviews": list(r.overviews),
                              "date": r.date.isoformat(), "date_from": r.date_source})
    if cfg.poi_sources:
        source = cfg.poi_sources[0]
        pois = read_pois(source.path, source.format, source.min_confidence)
        out["pois"] = {"file": source.path, "count": len(pois.pois), "rejected": len(pois.rejects),
                       "categories": pois.pois["category"].value_counts().head(8).to_dict()}
    return out


def format_inventory(inv: dict[str, Any]) -> str:
    """Human-readable lines for ``inventory``."""
    lines = [f"config: {inv['config']}"]
    for m in inv["metros"]:
        w, s, e, n = m["bounds_lonlat"]
        lines.append(f"metro {m['name']}: {m['file']} lon {w:.4f}..{e:.4f} lat {s:.4f}..{n:.4f}"
                     + (f" (repaired: {'; '.join(m['repairs'])})" if m["repairs"] else ""))
    p = inv["panoramas"]
    lines.append(f"panoramas: {p['rows']} rows, {p['good']} valid; rejected {p['rejected'] or 'none'}")
    lines.append("  years: " + ", ".join(f"{y}: {c}" for y, c in p["years"].items()))
    for kind in ("aerial", "dsm"):
        if len(inv[kind]) > MAX_LISTED:  # a catalog's tiles: one line per year
            years: dict[str, list[dict[str, Any]]] = {}
            for r in inv[kind]:
                years.setdefault(r["date"][:4], []).append(r)
            for year, files in years.items():
                mb = sum(r["bytes"] or 0 for r in files) / 1e6
                lines.append(f"{kind}: {len(files)} files of {year} ({files[0]['crs']}, res {files[0]['res'][0]:.3f}, "
                             f"dates from {files[0]['date_from']}, e.g. {files[0]['file']}), {mb:.1f} MB")
            continue
        for r in inv[kind]:
            mb = (r["bytes"] or 0) / 1e6
            lines.append(f"{kind}: {r['file']} {r['crs']} {r['size_px'][0]}x{r['size_px'][1]} px, "
                         f"res {r['res'][0]:.3f}, {r['bands']} band(s) {r['dtype']}, date {r['date']} "
                         f"(from {r['date_from']}), {mb:.1f} MB")
    if "pois" in inv:
        q = inv["pois"]
        lines.append(f"pois: {q['file']} {q['count']} POIs ({q['rejected']} rejected); top categories "
                     + ", ".join(f"{k} {v}" for k, v in q["categories"].items()))
    return "\n".join(lines)

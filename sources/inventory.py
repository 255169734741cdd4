"""What a ``sources.yaml`` points at, read back through the readers: a quick look before a build."""

from __future__ import annotations

import os
from typing import Any

from unigeo.sources.config import load_config
from unigeo.sources.metros import read_boundary
from unigeo.sources.panoramas import read_panorama_index
from unigeo.sources.pois import read_pois
from unigeo.sources.rasters import open_raster


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
    table = read_panorama_index(cfg.panoramas)
    years = table.good["year"].value_counts().sort_index()
    out["panoramas"] = {
        "file": cfg.panoramas, "bytes": _size(cfg.panoramas), "rows": table.n_input, "good": len(table.good),
        "rejected": table.rejects["reason"].value_counts().sort_index().to_dict(),
        "years": {int(str(k)): int(v) for k, v in years.items()},
    }
    for kind, specs in (("aerial", cfg.aerial), ("dsm", cfg.dsm)):
        for spec in specs:
            r = open_raster(spec, kind)  # type: ignore[arg-type]
            out[kind].append({"file": r.path, "bytes": _size(r.path), "crs": f"EPSG:{r.epsg}" if r.epsg else "custom",
                              "size_px": [r.width, r.height], "res": list(r.res), "bands": r.count,
                              "dtype": r.dtype, "nodata": r.nodata, "overviews": list(r.overviews),
                              "date": r.date.isoformat(), "date_from": r.date_source})
    if cfg.pois:
        pois = read_pois(cfg.pois)
        out["pois"] = {"file": cfg.pois, "count": len(pois.pois), "rejected": len(pois.rejects),
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

"""Points of interest from GeoJSON, GeoPackage, GeoParquet or OpenStreetMap ``.osm.pbf``.

Every source becomes one table with columns ``POI_COLUMNS``: a stable ``poi_id``, ``name`` (may be
empty), ``category`` (e.g. ``cafe``, ``supermarket``, ``park``), ``lon``/``lat`` in EPSG:4326 (a
polygon becomes a point inside it), ``source_id`` (the id in the source), ``neighbourhood`` (empty
when the source has none). Rows without a category or without a usable geometry are rejected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd

from unigeo.core import reasons
from unigeo.core.errors import MissingCRSError, SourceError
from unigeo.core.fileio import gdal_path

POI_COLUMNS = ("poi_id", "name", "category", "lon", "lat", "source_id", "neighbourhood")
REJECT_COLUMNS = ("row", "source_id", "reason", "detail")
# OSM keys whose value is a POI category, most specific first.
OSM_CATEGORY_KEYS = ("amenity", "shop", "tourism", "leisure", "office", "craft", "historic")
_NEIGHBOURHOOD_KEYS = ("neighbourhood", "neighborhood", "addr:neighbourhood", "addr:suburb", "suburb", "district")


@dataclass(frozen=True)
class PoiTable:
    """POIs in the common schema plus the rejected rows."""

    pois: pd.DataFrame
    rejects: pd.DataFrame


def read_pois(path: str) -> PoiTable:
    """Read POIs from any supported file.

    Raises:
        SourceError: unreadable file or unknown format.
        MissingCRSError: a vector file without CRS.
    """
    lower = path.lower()
    try:
        if lower.endswith(".osm.pbf"):
            gdf = _read_osm(path)
        elif lower.endswith((".parquet", ".geoparquet")):
            gdf = gpd.read_parquet(path)
        else:
            gdf = gpd.read_file(gdal_path(path))
    except (SourceError, MissingCRSError):
        raise
    except Exception as e:
        raise SourceError(path, f"cannot read POIs: {e}") from e
    if gdf.crs is None:
        raise MissingCRSError(path)
    return normalise_pois(gdf, source_name=os.path.basename(path))


def _read_osm(path: str) -> gpd.GeoDataFrame:
    try:
        from pyrosm import OSM  # heavy import, only for .osm.pbf
    except ImportError as e:
        raise SourceError(path, "reading .osm.pbf POIs needs pyrosm", "pip install 'unigeo[osm]'") from e

    filt = {k: True for k in OSM_CATEGORY_KEYS}
    gdf = OSM(path).get_pois(custom_filter=filt)
    if gdf is None or len(gdf) == 0:
        return gpd.GeoDataFrame({"geometry": []}, geometry="geometry", crs="EPSG:4326")
    gdf = gdf.copy()
    osm_type = gdf["osm_type"].astype(str) if "osm_type" in gdf.columns else pd.Series("node", index=gdf.index)
    gdf["source_id"] = osm_type + "/" + gdf["id"].astype(str)
    cat = pd.Series("", index=gdf.index, dtype=object)
    for key in OSM_CATEGORY_KEYS:
        if key in gdf.columns:
            value = gdf[key].astype(object).where(gdf[key].notna(), "").astype(str)
            value = value.where(value != "yes", key)  # shop=yes -> "shop"
            cat = cat.where(cat != "", value)
    gdf["category"] = cat
    return gdf


def _column(gdf: pd.DataFrame, names: tuple[str, ...]) -> pd.Series:
    out = pd.Series("", index=gdf.index, dtype=object)
    for name in names:
        if name in gdf.columns:
            value = gdf[name].astype(object).where(gdf[name].notna(), "").astype(str).str.strip()
            out = out.where(out != "", value)
    return out


def normalise_pois(gdf: gpd.GeoDataFrame, source_name: str) -> PoiTable:
    """Map a GeoDataFrame of POIs to ``POI_COLUMNS``; reject rows without category or geometry."""
    gdf = gdf.reset_index(drop=True)
    n = len(gdf)
    source_id = _column(gdf, ("source_id", "poi_id", "id", "osm_id"))
    source_id = source_id.where(source_id != "", pd.Series(np.arange(n), index=gdf.index).astype(str))
    name = _column(gdf, ("name",))
    category = _column(gdf, ("category",) + OSM_CATEGORY_KEYS).str.lower()
    neighbourhood = _column(gdf, _NEIGHBOURHOOD_KEYS)

    geom = gdf.geometry
    bad_geom = geom.isna() | geom.is_empty
    points = gpd.GeoSeries([None] * n, crs=gdf.crs, index=gdf.index)
    points[~bad_geom] = geom[~bad_geom].representative_point()
    points = points.to_crs("EPSG:4326")
    lon = points.x.where(~bad_geom)
    lat = points.y.where(~bad_geom)
    bad_geom |= ~np.isfinite(lon) | ~np.isfinite(lat) | ~lat.between(-90, 90) | ~lon.between(-180, 180)

    reason = pd.Series("", index=gdf.index, dtype=object)
    reason[bad_geom] = reasons.POI_BAD_GEOMETRY
    reason[(reason == "") & (category == "")] = reasons.POI_MISSING_CATEGORY
    ok = (reason == "").to_numpy()
    pois = pd.DataFrame({
        "poi_id": (source_name + ":" + source_id)[ok].to_numpy(),
        "name": name[ok].to_numpy(),
        "category": category[ok].to_numpy(),
        "lon": lon[ok].to_numpy(dtype=float),
        "lat": lat[ok].to_numpy(dtype=float),
        "source_id": source_id[ok].to_numpy(),
        "neighbourhood": neighbourhood[ok].to_numpy(),
    }, columns=list(POI_COLUMNS))
    detail = np.where(reason[~ok] == reasons.POI_BAD_GEOMETRY, "missing, empty or out-of-range geometry",
                      "no category (or amenity/shop/... tag)")
    rejects = pd.DataFrame({
        "row": np.arange(n, dtype=np.int64)[~ok],
        "source_id": source_id[~ok].to_numpy(),
        "reason": reason[~ok].to_numpy(),
        "detail": detail,
    }, columns=list(REJECT_COLUMNS))
    return PoiTable(pois=pois, rejects=rejects)

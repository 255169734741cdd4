"""Points of interest from GeoJSON, GeoPackage, GeoParquet, OpenStreetMap ``.osm.pbf`` or Overture places.

Every source becomes one table with columns ``POI_COLUMNS``: a stable ``poi_id``, ``name`` (may be
empty), ``category`` (e.g. ``cafe``, ``supermarket``, ``park``), ``lon``/``lat`` in EPSG:4326 (a
polygon becomes a point inside it), ``source_id`` (the id in the source), ``neighbourhood`` (empty
when the source has none). Rows without a category or without a usable geometry are rejected.

Given the metros' areas, large sources are read for those areas alone: an ``.osm.pbf`` extract is clipped to
their bounding box as it is parsed (pyrosm), and Overture places GeoParquet is filtered on its ``bbox``
columns as it is read (pyarrow), so a country-size file is never loaded whole. Overture rows below
``min_confidence`` are rejected (``poi_low_confidence``); their categories map onto the words the
descriptions use through ``OVERTURE_CATEGORIES`` (a category not in the table is kept as it is).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd

from unigeo.core import reasons
from unigeo.core.errors import MissingCRSError, SourceError
from unigeo.core.fileio import gdal_path
from unigeo.core.geo import BBox, bbox_filter

POI_COLUMNS = ("poi_id", "name", "category", "lon", "lat", "source_id", "neighbourhood")
REJECT_COLUMNS = ("row", "source_id", "reason", "detail")
# OSM keys whose value is a POI category, most specific first.
OSM_CATEGORY_KEYS = ("amenity", "shop", "tourism", "leisure", "office", "craft", "historic")
_NEIGHBOURHOOD_KEYS = ("neighbourhood", "neighborhood", "addr:neighbourhood", "addr:suburb", "suburb", "district")


# Overture places categories (``basic_category``, else ``categories.primary``) -> the categories descriptions
# use (OpenStreetMap's words, as in ``unigeo.pipeline.text``). Documented in docs/inputs.md.
OVERTURE_CATEGORIES = {
    "coffee_shop": "cafe", "cafe": "cafe", "tea_room": "cafe",
    "restaurant": "restaurant", "fast_food_restaurant": "fast_food", "pizza_restaurant": "restaurant",
    "bar": "bar", "pub": "pub", "cocktail_bar": "bar", "wine_bar": "bar", "brewery": "bar",
    "bakery": "bakery", "grocery_store": "grocery", "supermarket": "supermarket", "convenience_store": "convenience",
    "farmers_market": "marketplace", "pharmacy": "pharmacy", "drugstore": "pharmacy",
    "bank": "bank", "atms": "atm", "atm": "atm", "hotel": "hotel", "motel": "hotel", "hostel": "hostel",
    "gym": "gym", "fitness_center": "gym", "park": "park", "playground": "playground", "library": "library",
    "museum": "museum", "art_museum": "museum", "movie_theater": "cinema", "theatre": "theatre",
    "performing_arts_theater": "theatre", "school": "school", "elementary_school": "school",
    "middle_school": "school", "high_school": "school", "college_university": "university",
    "university": "university", "hospital": "hospital", "clothing_store": "clothes", "parking": "parking",
    "place_of_worship": "place_of_worship", "church_cathedral": "place_of_worship", "post_office": "post_office",
}


@dataclass(frozen=True)
class PoiTable:
    """POIs in the common schema plus the rejected rows."""

    pois: pd.DataFrame
    rejects: pd.DataFrame


def read_pois(path: str, fmt: str = "native", min_confidence: float = 0.0, areas: Sequence[BBox] = ()) -> PoiTable:
    """Read POIs from any supported file (``fmt`` ``overture``: Overture places GeoParquet), for ``areas`` alone
    where the format allows (``.osm.pbf``, Overture; all when empty).

    Raises:
        SourceError: unreadable file or unknown format.
        MissingCRSError: a vector file without CRS.
    """
    if fmt == "overture":
        return read_overture(path, min_confidence, areas)
    lower = path.lower()
    try:
        if lower.endswith(".osm.pbf"):
            gdf = _read_osm(path, areas)
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


def _union_box(areas: Sequence[BBox]) -> list[float] | None:
    if not areas:
        return None
    return [min(a[0] for a in areas), min(a[1] for a in areas), max(a[2] for a in areas), max(a[3] for a in areas)]


def _read_osm(path: str, areas: Sequence[BBox] = ()) -> gpd.GeoDataFrame:
    try:
        from pyrosm import OSM  # heavy import, only for .osm.pbf
    except ImportError as e:
        raise SourceError(path, "reading .osm.pbf POIs needs pyrosm", "pip install 'unigeo[osm]'") from e

    filt = {k: True for k in OSM_CATEGORY_KEYS}
    gdf = OSM(path, bounding_box=_union_box(areas)).get_pois(custom_filter=filt)
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


def overture_category(basic: object, primary: object) -> str:
    """The description's category of an Overture place: its ``basic_category`` or ``categories.primary``,
    through ``OVERTURE_CATEGORIES``."""
    for value in (basic, primary):
        if isinstance(value, str) and value.strip():
            key = value.strip().lower()
            return OVERTURE_CATEGORIES.get(key, key)
    return ""


def read_overture(path: str, min_confidence: float = 0.0, areas: Sequence[BBox] = ()) -> PoiTable:
    """Overture places GeoParquet (``id``, ``names.primary``, ``categories.primary`` / ``basic_category``,
    ``confidence``, WKB ``geometry``), read for ``areas`` alone through its ``bbox`` columns.

    Raises:
        SourceError: the file cannot be read or is not Overture places.
    """
    import pyarrow.parquet as pq
    import shapely

    from unigeo.core.fileio import open_binary

    try:
        with open_binary(path) as f:
            schema = pq.ParquetFile(f).schema_arrow
            names = set(schema.names)
            missing = {"id", "geometry", "names", "categories"} - names
            if missing:
                raise SourceError(path, f"not Overture places: no {sorted(missing)} column",
                                  "download the places theme (type=place) as GeoParquet")
            columns = [c for c in ("id", "geometry", "names", "categories", "basic_category", "confidence")
                       if c in names]
            f.seek(0)
            expr = bbox_filter(areas) if "bbox" in names and areas else None
            table = pq.read_table(f, columns=columns, filters=expr)
    except SourceError:
        raise
    except FileNotFoundError as e:
        raise SourceError(path, "POI file not found") from e
    except Exception as e:  # pyarrow's errors: not Parquet, a bad filter on a file of another schema
        raise SourceError(path, f"cannot read Overture places: {e}") from e
    rows = table.to_pydict()
    n = table.num_rows
    confidence = np.array([np.nan if c is None else c for c in rows.get("confidence", [None] * n)], dtype=float)
    category = [overture_category(b, (c or {}).get("primary"))
                for b, c in zip(rows.get("basic_category", [None] * n), rows["categories"])]
    geometry = shapely.from_wkb([g if g is not None else None for g in rows["geometry"]])
    gdf = gpd.GeoDataFrame({"source_id": rows["id"], "name": [(x or {}).get("primary") or "" for x in rows["names"]],
                            "category": category}, geometry=geometry, crs="EPSG:4326")
    table_ = normalise_pois(gdf, source_name=os.path.basename(path))
    low = confidence < min_confidence
    if not low.any():
        return table_
    low_ids = set(np.asarray(rows["id"], dtype=object)[low].tolist())
    lost = table_.pois["source_id"].isin(low_ids).to_numpy()
    index = {sid: i for i, sid in enumerate(rows["id"])}
    extra = pd.DataFrame({
        "row": [index[sid] for sid in table_.pois["source_id"][lost]],
        "source_id": table_.pois["source_id"][lost].to_numpy(),
        "reason": reasons.POI_LOW_CONFIDENCE,
        "detail": [f"confidence {confidence[index[sid]]:.2f} < min_confidence {min_confidence}"
                   for sid in table_.pois["source_id"][lost]],
    }, columns=list(REJECT_COLUMNS))
    rejects = pd.concat([table_.rejects, extra], ignore_index=True).sort_values("row", ignore_index=True)
    return PoiTable(pois=table_.pois[~lost].reset_index(drop=True), rejects=rejects)

"""Rasters listed in STAC: an ItemCollection (JSON or GeoJSON), a static catalog or collection (crawled), or a
stac-geoparquet file, read with pystac and stac-geoparquet.

Each item is one raster: the href of its asset (``asset:`` in the config, else the one GeoTIFF asset with
role ``data``), resolved against the item's own location (relative, absolute, ``gs://``, ``s3://`` or
``https://``), and its acquisition date, the item's ``datetime`` or else its ``start_datetime``. Items whose
bbox misses every metro are left out before any file is opened (a stac-geoparquet file is filtered on its
bbox columns as it is read). The file's own header is the truth: an item whose ``proj:*`` fields or bbox
disagree with its file is reported (``StacRasters.mismatches``), and the header is used.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pystac
from pystac.stac_io import DefaultStacIO

from unigeo.core.errors import ConfigError, SourceError
from unigeo.core.fileio import is_url, open_binary, parent, resolve
from unigeo.core.geo import BBox, bbox_filter
from unigeo.sources.config import RasterSpec, StacSpec
from unigeo.sources.rasters import RasterKind, RasterSource, open_raster

log = logging.getLogger(__name__)

GEOTIFF = "image/tiff"
HEADER_THREADS = 16  # headers of remote items are read this many at a time (local ones one by one)
BBOX_TOLERANCE = 0.01  # of the raster's extent: an item bbox further off than this disagrees with the file


@dataclass
class StacRasters:
    """What a STAC source lists for one raster kind, after the metros' filter.

    Attributes:
        sources: the headers of the items' files, dated by the items.
        items: items the catalog lists in all, and ``kept`` of them meeting a metro.
        mismatches: one line per item whose metadata disagrees with its file's header.
        skipped: one line per item left out (no datetime, no such asset), with why.
    """

    sources: list[RasterSource] = field(default_factory=list)
    items: int = 0
    kept: int = 0
    mismatches: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class _FsspecStacIO(DefaultStacIO):
    """pystac's reader, with ``gs://`` and ``s3://`` hrefs read through fsspec like every other input."""

    def read_text_from_href(self, href: str) -> str:
        if is_url(href) and not href.startswith(("http://", "https://")):
            with open_binary(href) as f:
                return f.read().decode("utf-8")
        return str(super().read_text_from_href(href))


def _meets(bbox: Sequence[float] | None, areas: Sequence[BBox]) -> bool:
    if not bbox or not areas:
        return True
    w, s, e, n = (bbox[0], bbox[1], bbox[-3], bbox[-2]) if len(bbox) == 6 else bbox
    return any(w <= ae and e >= aw and s <= an and n >= as_ for aw, as_, ae, an in areas)


def _geoparquet_items(path: str, areas: Sequence[BBox]) -> tuple[list[dict[str, Any]], int]:
    """Items of a stac-geoparquet file meeting ``areas`` and how many it holds; with a ``bbox`` struct
    column (stac-geoparquet 1.0 and later) only the row groups whose statistics meet them are read."""
    from stac_geoparquet.arrow import stac_table_to_items

    with open_binary(path) as f:
        pf = pq.ParquetFile(f)
        total = pf.metadata.num_rows
        bbox = pf.schema_arrow.field("bbox").type if "bbox" in pf.schema_arrow.names else None
        f.seek(0)
        if areas and bbox is not None and pa.types.is_struct(bbox):
            table = pq.read_table(f, filters=bbox_filter(areas))
        else:
            table = pf.read()
    return list(stac_table_to_items(table)), total


def read_items(path: str, areas: Sequence[BBox] = ()) -> tuple[list[pystac.Item], int]:
    """The items a STAC source lists whose bbox meets one of ``areas`` (all when empty), and how many it lists.

    Raises:
        SourceError: the file cannot be read or is not STAC.
    """
    try:
        if path.lower().endswith((".parquet", ".geoparquet", ".pq")):
            rows, total = _geoparquet_items(path, areas)
            items = [pystac.Item.from_dict(d, preserve_dict=False) for d in rows]
            return [i for i in items if _meets(i.bbox, areas)], total
        with open_binary(path) as f:
            data = json.loads(f.read())
    except FileNotFoundError as e:
        raise SourceError(path, "STAC source not found") from e
    except (OSError, ValueError) as e:
        raise SourceError(path, f"cannot read STAC source: {e}") from e
    kind = data.get("type") if isinstance(data, dict) else None
    try:
        if kind == "FeatureCollection":
            all_items = [pystac.Item.from_dict(d, preserve_dict=False) for d in data.get("features", [])]
        elif kind == "Feature":
            all_items = [pystac.Item.from_dict(data, href=path, preserve_dict=False)]
        elif kind in ("Catalog", "Collection"):
            root = pystac.read_dict(data, href=path, stac_io=_FsspecStacIO())
            assert isinstance(root, pystac.Catalog)
            all_items = list(root.get_items(recursive=True))
        else:
            raise SourceError(path, f"not a STAC ItemCollection, Item, Catalog or Collection (type {kind!r})",
                              "give an item collection (a search result saved as JSON), a catalog.json or "
                              "collection.json, or a stac-geoparquet file")
    except SourceError:
        raise
    except Exception as e:  # pystac's parse errors: a malformed item
        raise SourceError(path, f"not valid STAC: {e}") from e
    return [i for i in all_items if _meets(i.bbox, areas)], len(all_items)


def item_date(item: pystac.Item) -> tuple[dt.date, str] | None:
    """An item's acquisition date and its field: ``datetime``, else ``start_datetime``."""
    if item.datetime is not None:
        return item.datetime.date(), "stac:datetime"
    start = item.common_metadata.start_datetime
    return (start.date(), "stac:start_datetime") if start is not None else None


def choose_asset(item: pystac.Item, asset: str | None, source: str) -> str:
    """The key of the asset to read: ``asset`` when given, else the one GeoTIFF asset with role ``data``.

    Raises:
        ConfigError: no asset given and not exactly one candidate (the candidates are named).
    """
    if asset is not None:
        return asset
    data = [k for k, a in item.assets.items() if "data" in (a.roles or []) and GEOTIFF in (a.media_type or "")]
    if len(data) == 1:
        return data[0]
    listed = ", ".join(f"{k} ({a.media_type or 'no type'}, roles {a.roles or []})" for k, a in item.assets.items())
    why = "no GeoTIFF asset with role data" if not data else f"{len(data)} GeoTIFF assets with role data"
    raise ConfigError(f"{source}: item {item.id} has {why}; name the one to read with `asset:` in sources.yaml. "
                      f"Its assets: {listed or 'none'}")


def asset_href(item: pystac.Item, key: str, source: str) -> str:
    """The asset's href resolved against the item's own location, else the STAC source's folder."""
    href = item.assets[key].href
    if is_url(href) or href.startswith("/"):
        return href
    self_href = item.get_self_href()
    return resolve(href, parent(self_href) if self_href else parent(source))


def _proj(item: pystac.Item, key: str, name: str) -> Any:
    asset = item.assets[key].extra_fields
    return asset.get(name, item.properties.get(name))


def mismatches(item: pystac.Item, key: str, src: RasterSource) -> list[str]:
    """How an item's bbox and ``proj:*`` fields disagree with its file's header (empty when they agree)."""
    out = []
    code = _proj(item, key, "proj:code") or (f"EPSG:{_proj(item, key, 'proj:epsg')}"
                                              if _proj(item, key, "proj:epsg") is not None else None)
    if code is not None and src.epsg is not None and str(code).upper() != f"EPSG:{src.epsg}":
        out.append(f"proj:code {code}, the file EPSG:{src.epsg}")
    shape = _proj(item, key, "proj:shape")
    if shape is not None and list(shape) != [src.height, src.width]:
        out.append(f"proj:shape {list(shape)}, the file [{src.height}, {src.width}]")
    transform = _proj(item, key, "proj:transform")
    if transform is not None and any(abs(float(a) - b) > 1e-6 * max(1.0, abs(b))
                                     for a, b in zip(transform[:6], src.transform)):
        out.append(f"proj:transform {list(transform[:6])}, the file {list(src.transform)}")
    if item.bbox:
        w, s, e, n = src.bounds_lonlat
        tol = BBOX_TOLERANCE * max(e - w, n - s)
        ib = item.bbox if len(item.bbox) == 4 else [item.bbox[0], item.bbox[1], item.bbox[3], item.bbox[4]]
        if any(abs(a - b) > tol for a, b in zip(ib, (w, s, e, n))):
            out.append(f"bbox {[round(v, 6) for v in ib]}, the file {[round(v, 6) for v in (w, s, e, n)]}")
    return out


def stac_rasters(spec: StacSpec, kind: RasterKind, areas: Sequence[BBox] = ()) -> StacRasters:
    """The rasters a STAC source lists for ``kind`` over ``areas``, each opened for its header only.

    Raises:
        SourceError: the source or an item's file cannot be read; ConfigError: no asset can be chosen.
    """
    items, total = read_items(spec.stac, areas)
    out = StacRasters(items=total)
    chosen: list[tuple[pystac.Item, str, RasterSpec]] = []
    for item in items:
        key = choose_asset(item, spec.asset, spec.stac)
        if key not in item.assets:
            out.skipped.append(f"item {item.id}: no asset {key!r} (it has {sorted(item.assets)})")
            continue
        date = item_date(item)
        if date is None:
            out.skipped.append(f"item {item.id}: neither datetime nor start_datetime")
            continue
        chosen.append((item, key, RasterSpec(asset_href(item, key, spec.stac), date[0], date[1], spec.licence)))
    if spec.asset is not None and items and not chosen and out.skipped:
        raise ConfigError(f"{spec.stac}: no item has the asset {spec.asset!r}; {out.skipped[0]}")
    if any(is_url(c[2].path) for c in chosen):  # remote headers: a request each, so many at a time
        with ThreadPoolExecutor(HEADER_THREADS) as pool:
            sources = list(pool.map(lambda c: open_raster(c[2], kind), chosen))
    else:  # local headers take a millisecond; threads would only add each one's GDAL state to the launcher
        sources = [open_raster(c[2], kind) for c in chosen]
    for (item, key, _), src in zip(chosen, sources):
        found = mismatches(item, key, src)
        if found:
            out.mismatches.append(f"{src.path}: item {item.id} says {'; '.join(found)}; the file's header is used")
    for line in out.mismatches[:5]:
        log.warning("%s", line)
    if len(out.mismatches) > 5:
        log.warning("... and %d more items whose metadata disagrees with their file", len(out.mismatches) - 5)
    out.sources, out.kept = sources, len(sources)
    return out


@dataclass
class RasterInputs:
    """Every raster of one kind a config names: its files and the items of its STAC sources.

    Attributes:
        sources: headers of every raster, in config order (a STAC source's items in the catalog's order).
        catalogs: for each STAC source (its path), what it listed.
    """

    sources: list[RasterSource] = field(default_factory=list)
    catalogs: dict[str, StacRasters] = field(default_factory=dict)


def open_rasters(specs: Sequence[RasterSpec | StacSpec], kind: RasterKind, areas: Sequence[BBox] = ()
                 ) -> RasterInputs:
    """Open the header of every raster of ``kind``: files as listed, STAC sources' items over ``areas``.

    Raises:
        SourceError, ConfigError: a file or a catalog cannot be used.
    """
    out = RasterInputs()
    for spec in specs:
        if isinstance(spec, StacSpec):
            listed = stac_rasters(spec, kind, areas)
            out.catalogs[spec.stac] = listed
            out.sources += listed.sources
        else:
            out.sources.append(open_raster(spec, kind))
    return out

"""Metro boundaries: any vector format geopandas reads, any CRS, to one EPSG:4326 (multi)polygon."""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from unigeo.core.errors import EmptyGeometryError, MissingCRSError, SourceError
from unigeo.core.fileio import gdal_path


@dataclass(frozen=True)
class Metro:
    """A metro area as the pipeline sees it.

    Attributes:
        name: slug used in shard names.
        geometry: polygon or multipolygon in EPSG:4326 (x = lon, y = lat), valid.
        source: the file it came from.
        repairs: what was done to make it valid, one line each (empty when nothing was needed).
    """

    name: str
    geometry: Polygon | MultiPolygon
    source: str
    repairs: tuple[str, ...] = ()


def _polygonal(geom: BaseGeometry) -> Polygon | MultiPolygon | None:
    """The polygonal part of ``geom`` (``make_valid`` can return collections with lines)."""
    polys: list[Polygon] = []
    for part in shapely.get_parts(geom):
        if isinstance(part, Polygon) and not part.is_empty:
            polys.append(part)
        elif isinstance(part, MultiPolygon):
            polys.extend(p for p in part.geoms if not p.is_empty)
        elif part.geom_type == "GeometryCollection":
            sub = _polygonal(part)
            if sub is not None:
                polys.extend(shapely.get_parts(sub))
    if not polys:
        return None
    merged = shapely.union_all(polys)
    return merged if isinstance(merged, (Polygon, MultiPolygon)) else None


def read_boundary(path: str, name: str) -> Metro:
    """Read a metro boundary file and return one valid EPSG:4326 (multi)polygon.

    All features are merged. Invalid geometry is repaired with ``make_valid`` and the repair is
    recorded in ``Metro.repairs``.

    Args:
        path: GeoJSON, GeoPackage, Shapefile, GeoParquet (``.parquet``) or anything GDAL reads.
        name: the metro's name.

    Raises:
        SourceError: the file cannot be read, its CRS does not transform to lon/lat, or its coordinates
            fall outside lon/lat ranges (projected coordinates in a file that declares none).
        MissingCRSError: the file declares no CRS (GeoJSON without ``crs`` is EPSG:4326 by spec).
        EmptyGeometryError: no polygon in the file, or nothing left after repair.
    """
    try:
        if path.lower().endswith((".parquet", ".geoparquet")):
            gdf = gpd.read_parquet(path)
        else:
            gdf = gpd.read_file(gdal_path(path))
    except Exception as e:  # fiona/pyogrio/pyarrow raise many types; all mean "cannot read"
        raise SourceError(path, f"cannot read boundary: {e}") from e
    if gdf.crs is None:
        raise MissingCRSError(path)
    repairs: list[str] = []
    geoms = [g for g in gdf.geometry if g is not None and not g.is_empty]
    if not geoms:
        raise EmptyGeometryError(path, "boundary has no geometry", "the file must hold a polygon or multipolygon")
    fixed = []
    for i, g in enumerate(geoms):
        if not g.is_valid:
            reason = shapely.is_valid_reason(g)
            g = shapely.make_valid(g)
            repairs.append(f"feature {i}: {reason}; repaired with make_valid")
        fixed.append(g)
    try:
        series = gpd.GeoSeries(fixed, crs=gdf.crs).to_crs("EPSG:4326")
    except Exception as e:  # pyproj cannot relate the file's CRS to lon/lat
        raise SourceError(path, f"its CRS cannot be transformed to EPSG:4326: {e}",
                          "write a CRS that PROJ knows into the file") from e
    west, south, east, north = series.total_bounds
    if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
        raise SourceError(path, f"coordinates ({west:.6g}, {south:.6g}, {east:.6g}, {north:.6g}) are not lon/lat "
                          "after reprojection", "a projected file must declare its CRS")
    geom = _polygonal(shapely.union_all(list(series)))
    if geom is None or geom.is_empty or geom.area == 0:
        raise EmptyGeometryError(path, "boundary has no polygon with area", "the file must hold a polygon")
    if not geom.is_valid:  # reprojection can create tiny self-intersections
        geom = _polygonal(shapely.make_valid(geom))
        repairs.append("invalid after reprojection to EPSG:4326; repaired with make_valid")
        if geom is None:
            raise EmptyGeometryError(path, "boundary has no valid polygon after reprojection")
    return Metro(name=name, geometry=geom, source=path, repairs=tuple(repairs))

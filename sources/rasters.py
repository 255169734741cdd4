"""Aerial RGB and DSM rasters: GeoTIFF/COG (anything GDAL opens), any CRS and resolution.

``open_raster`` reads only the header: CRS, grid, bands, nodata, overviews and acquisition date. Pixels
are read later by the tile stage, which keeps its own open handles.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal

import rasterio
from rasterio.errors import RasterioIOError
from rasterio.warp import transform_bounds

from unigeo.core.errors import MissingCRSError, MissingDateError, SourceError
from unigeo.core.fileio import gdal_path
from unigeo.sources.config import RasterSpec
from unigeo.sources.tiles import RasterFile

RasterKind = Literal["aerial", "dsm"]
# Tags GDAL or producers use for the acquisition date, in order of preference.
DATE_TAGS = ("ACQUISITION_DATE", "ACQUISITIONDATE", "DATE_ACQUIRED", "ACQUISITION_TIME", "TIFFTAG_DATETIME")
_TAG_DATE = re.compile(r"(\d{4})[-:/](\d{2})[-:/](\d{2})")


@dataclass(frozen=True)
class RasterSource:
    """Header of one source raster.

    Attributes:
        path: as given in the config (URLs kept).
        kind: ``aerial`` or ``dsm``.
        crs: the raster's CRS as WKT (picklable, exact).
        epsg: its EPSG code when it has one.
        transform: affine coefficients (a, b, c, d, e, f) of pixel -> CRS coordinates.
        width, height, count: grid size and band count.
        dtype: pixel type of band 1.
        nodata: the nodata value of band 1, or None.
        res: pixel size (x, y) in CRS units.
        bounds: (left, bottom, right, top) in the raster's CRS.
        bounds_lonlat: (west, south, east, north) in EPSG:4326, for quick coverage tests.
        overviews: decimation factors of band 1's overviews.
        date: acquisition date.
        date_source: where the date came from: ``config``, a STAC item's ``stac:datetime`` or
            ``stac:start_datetime``, or the tag name (``TIFFTAG_DATETIME`` is the file's creation time, often
            not the acquisition's: plan and build warn about it).
    """

    path: str
    kind: RasterKind
    crs: str
    epsg: int | None
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int
    count: int
    dtype: str
    nodata: float | None
    res: tuple[float, float]
    bounds: tuple[float, float, float, float]
    bounds_lonlat: tuple[float, float, float, float]
    overviews: tuple[int, ...]
    date: dt.date
    date_source: str

    def file(self) -> RasterFile:
        """What a worker needs of this raster to know which tiles it serves, without opening it."""
        return RasterFile(self.path, self.date.isoformat(), f"EPSG:{self.epsg}" if self.epsg else self.crs,
                          self.transform, self.width, self.height, self.bounds_lonlat)


def date_from_tags(tags: dict[str, str]) -> tuple[dt.date, str] | None:
    """The first parseable acquisition date among ``DATE_TAGS`` (case-insensitive)."""
    upper = {k.upper(): v for k, v in tags.items()}
    for key in DATE_TAGS:
        value = upper.get(key)
        m = _TAG_DATE.search(value or "")
        if m:
            try:
                return dt.date(int(m[1]), int(m[2]), int(m[3])), key
            except ValueError:
                continue
    return None


def open_raster(spec: RasterSpec, kind: RasterKind) -> RasterSource:
    """Read a raster's header and check it can serve as ``kind``.

    Raises:
        SourceError: the file cannot be opened, has the wrong number of bands, or is an aerial raster
            that is not 8-bit.
        MissingCRSError: the raster has no CRS.
        MissingDateError: no date in the config and none in the tags.
    """
    try:
        ds = rasterio.open(gdal_path(spec.path))
    except RasterioIOError as e:
        raise SourceError(spec.path, f"cannot open raster: {e}") from e
    with ds:
        if ds.crs is None:
            raise MissingCRSError(spec.path)
        if kind == "aerial" and ds.count < 3:
            raise SourceError(spec.path, f"aerial raster has {ds.count} band(s)", "aerial imagery needs RGB bands 1-3")
        if kind == "aerial" and ds.dtypes[0] != "uint8":
            raise SourceError(spec.path, f"aerial raster is {ds.dtypes[0]}; tiles are 8-bit RGB",
                              "rescale it to 8 bits with the stretch that suits the sensor, e.g. "
                              "`gdal_translate -ot Byte -scale 0 4095 0 255 IN OUT` for 12-bit data")
        if spec.date is not None:
            date, date_source = spec.date, spec.date_from
        else:
            found = date_from_tags(ds.tags())
            if found is None:
                raise MissingDateError(
                    spec.path, "no acquisition date in the raster's tags",
                    f"add it in sources.yaml: `dates: {{{spec.path}: YYYY-MM-DD}}`, "
                    f"or set one of the tags {list(DATE_TAGS)}",
                )
            date, date_source = found
        left, bottom, right, top = ds.bounds
        try:
            bounds_lonlat = transform_bounds(ds.crs, "EPSG:4326", left, bottom, right, top)
        except Exception as e:  # rasterio's CRSError, PROJ errors: a CRS with no path to lon/lat
            raise SourceError(spec.path, f"its CRS cannot be transformed to EPSG:4326: {e}",
                              "write a CRS that PROJ knows, e.g. `rio edit-info --crs EPSG:32619 FILE`") from e
        return RasterSource(
            path=spec.path,
            kind=kind,
            crs=ds.crs.to_wkt(),
            epsg=ds.crs.to_epsg(),
            transform=(ds.transform.a, ds.transform.b, ds.transform.c, ds.transform.d, ds.transform.e, ds.transform.f),
            width=ds.width,
            height=ds.height,
            count=ds.count,
            dtype=ds.dtypes[0],
            nodata=ds.nodata,
            res=(abs(ds.res[0]), abs(ds.res[1])),
            bounds=(left, bottom, right, top),
            bounds_lonlat=bounds_lonlat,
            overviews=tuple(ds.overviews(1)),
            date=date,
            date_source=date_source,
        )

"""``sources.yaml``: which metros, panoramas, rasters and POIs a build reads.

Example::

    metros:
      - name: boston
        boundary: boston.geojson
    panoramas: panos.parquet
    aerial: [naip_2021.tif, naip_2023.tif]
    dsm: [dsm_2020.tif]
    pois: pois.geojson
    dates:                      # optional: acquisition dates of rasters without a date tag
      dsm_2020.tif: 2020-06-01

A raster entry may also be a mapping ``{path: x.tif, date: 2021-06-15}``, or a STAC source
``{stac: items.json, asset: image}`` (an ItemCollection, a static catalog or collection, or a stac-geoparquet
file; ``unigeo.sources.stac``). ``panoramas`` is one source or a list: the native index, or
``{format: mapillary, path: mly.json, images: mly/}`` / ``{format: panoramax, path: items.json}``. ``pois``
is one source or a list: a vector file or ``.osm.pbf``, or ``{format: overture, path: places.parquet,
min_confidence: 0.5}``. Any mapping entry may carry ``license`` (an SPDX id) and ``attribution``.
Relative paths resolve against the folder of the config file; ``gs://`` and ``s3://`` paths are kept as
they are.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import yaml

from unigeo.core.errors import ConfigError
from unigeo.core.fileio import open_binary, parent, resolve

METRO_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")
METRO_NAME_MAX = 64  # shard files are named {metro}-{split}-{NNNNNN}.stats.json: well under 255 bytes
METRO_KEYS = frozenset({"name", "boundary"})
LICENSE_KEYS = frozenset({"license", "attribution"})
RASTER_KEYS = frozenset({"path", "date"}) | LICENSE_KEYS
STAC_KEYS = frozenset({"stac", "asset"}) | LICENSE_KEYS
PANORAMA_FORMATS = {"native": frozenset({"path"}), "mapillary": frozenset({"path", "images"}),
                    "panoramax": frozenset({"path"})}
POI_FORMATS = {"native": frozenset({"path"}), "overture": frozenset({"path", "min_confidence"})}
_KEYS = frozenset({"metros", "panoramas", "aerial", "dsm", "pois", "dates"})


@dataclass(frozen=True)
class MetroSpec:
    """One metro area: a name used in shard names, and its boundary file."""

    name: str
    boundary: str


@dataclass(frozen=True)
class Licence:
    """What a source's data may be used under (an SPDX id) and the attribution it requires."""

    license: str | None = None
    attribution: str | None = None

    def as_json(self) -> dict[str, str]:
        """The fields that are set, as the manifest records them beside the source."""
        return {k: v for k, v in (("license", self.license), ("attribution", self.attribution)) if v}


@dataclass(frozen=True)
class RasterSpec:
    """A raster file and, when the config or a catalog gives one, its acquisition date and where it came from
    (``config``, or ``stac:datetime`` / ``stac:start_datetime`` for an item of a STAC source)."""

    path: str
    date: dt.date | None = None
    date_from: str = "config"
    licence: Licence = Licence()

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "date": self.date.isoformat() if self.date else None, **self.licence.as_json()}


@dataclass(frozen=True)
class StacSpec:
    """A STAC source of rasters: an ItemCollection, a static catalog or collection, or a stac-geoparquet
    file (local or URL), and the asset of each item to read (None: the one GeoTIFF asset with role data)."""

    stac: str
    asset: str | None = None
    licence: Licence = Licence()

    @property
    def path(self) -> str:
        return self.stac

    def as_json(self) -> dict[str, Any]:
        return {"stac": self.stac, "asset": self.asset, **self.licence.as_json()}


@dataclass(frozen=True)
class PanoramaSource:
    """A panorama source: the native index (``native``), Mapillary Graph API image objects with the folder
    of their images (``mapillary``), or Panoramax STAC items (``panoramax``)."""

    path: str
    format: str = "native"
    images: str | None = None
    licence: Licence = Licence()


@dataclass(frozen=True)
class PoiSource:
    """A POI source: a vector file or ``.osm.pbf`` (``native``), or Overture places GeoParquet (``overture``,
    rows below ``min_confidence`` rejected)."""

    path: str
    format: str = "native"
    min_confidence: float = 0.0
    licence: Licence = Licence()


@dataclass(frozen=True)
class SourcesConfig:
    """The parsed, path-resolved content of a ``sources.yaml``."""

    path: str
    metros: tuple[MetroSpec, ...]
    panorama_sources: tuple[PanoramaSource, ...]
    aerial: tuple[RasterSpec | StacSpec, ...]
    dsm: tuple[RasterSpec | StacSpec, ...]
    poi_sources: tuple[PoiSource, ...] = ()

    @property
    def panoramas(self) -> str:
        """The first panorama source's file (the one most configs have)."""
        return self.panorama_sources[0].path

    @property
    def pois(self) -> str | None:
        """The first POI source's file, or None."""
        return self.poi_sources[0].path if self.poi_sources else None

    @property
    def data_paths(self) -> list[str]:
        """Every input file the config names (not the panorama images, nor the rasters a catalog lists)."""
        return [*(p.path for p in self.panorama_sources), *(m.boundary for m in self.metros),
                *(r.path for r in (*self.aerial, *self.dsm)), *(p.path for p in self.poi_sources)]


def parse_date(value: Any, what: str) -> dt.date:
    """A date from YAML: a date, a datetime, an ISO string, or a bare year (read as 1 January)."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, int) and 1900 <= value <= 2100:
        return dt.date(value, 1, 1)
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip()[:10])
        except ValueError:
            pass
    raise ConfigError(f"{what}: {value!r} is not a date; write it as YYYY-MM-DD")


def load_config(path: str) -> SourcesConfig:
    """Read and check a ``sources.yaml``.

    Args:
        path: local path or URL of the YAML file.

    Returns:
        The config with every path resolved against the file's folder.

    Raises:
        ConfigError: a key is missing, unknown or of the wrong type; a metro name is not a slug.
    """
    try:
        with open_binary(path) as f:
            data = yaml.safe_load(f)
    except FileNotFoundError as e:
        raise ConfigError(f"config file not found: {path}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    return parse_config(data, path)


def _check_keys(entry: dict[Any, Any], allowed: frozenset[str], where: str) -> None:
    """Unknown keys of a mapping are an error naming where, which keys, and the allowed ones."""
    unknown = set(entry) - allowed
    if unknown:
        raise ConfigError(f"{where} unknown keys {sorted(map(str, unknown))}; allowed keys are {sorted(allowed)}")


def parse_config(data: Any, path: str) -> SourcesConfig:
    """Check the mapping read from ``path`` and resolve its file paths."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with keys {sorted(_KEYS)}, got {type(data).__name__}")
    _check_keys(data, _KEYS, f"{path}:")
    base = parent(path)

    metros_raw = data.get("metros")
    if not isinstance(metros_raw, list) or not metros_raw:
        raise ConfigError(f"{path}: `metros` must be a non-empty list of {{name, boundary}} entries")
    metros: list[MetroSpec] = []
    for i, m in enumerate(metros_raw):
        if isinstance(m, dict):
            _check_keys(m, METRO_KEYS, f"{path}: metros[{i}] ({m.get('name')!r}) has")
        if not isinstance(m, dict) or not isinstance(m.get("name"), str) or not isinstance(m.get("boundary"), str):
            raise ConfigError(f"{path}: metros[{i}] must be a mapping with string keys `name` and `boundary`")
        if len(m["name"]) > METRO_NAME_MAX:
            raise ConfigError(f"{path}: metro name {m['name'][:20]!r}... is {len(m['name'])} characters; at most "
                              f"{METRO_NAME_MAX} (it becomes part of shard file names)")
        if not METRO_NAME.match(m["name"]):
            raise ConfigError(
                f"{path}: metro name {m['name']!r} must be lowercase letters, digits and '_' "
                "(it becomes part of shard file names), e.g. 'new_york'"
            )
        metros.append(MetroSpec(m["name"], resolve(m["boundary"], base)))
    names = [m.name for m in metros]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{path}: metro names must be unique; repeated: {dupes}")

    panoramas = tuple(_panorama_source(e, i, path, base) for i, e in enumerate(_entries(data, "panoramas", path)))
    if not panoramas:
        raise ConfigError(f"{path}: `panoramas` must name a panorama index (.parquet or .csv), or a list of "
                          "sources such as {format: mapillary, path: mly.json, images: mly/}")

    dates_raw = data.get("dates") or {}
    if not isinstance(dates_raw, dict):
        raise ConfigError(f"{path}: `dates` must map raster paths to dates")
    dates = {resolve(str(k), base): parse_date(v, f"{path}: dates[{k}]") for k, v in dates_raw.items()}

    def rasters(key: str) -> tuple[RasterSpec | StacSpec, ...]:
        raw = data.get(key) or []
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list):
            raise ConfigError(f"{path}: `{key}` must be a list of raster paths or STAC sources")
        out: list[RasterSpec | StacSpec] = []
        for i, entry in enumerate(raw):
            if isinstance(entry, str):
                p = resolve(entry, base)
                out.append(RasterSpec(p, dates.get(p)))
            elif isinstance(entry, dict) and isinstance(entry.get("path"), str):
                _check_keys(entry, RASTER_KEYS, f"{path}: {key}[{i}] ({entry['path']!r}) has")
                p = resolve(entry["path"], base)
                date = entry.get("date")
                out.append(RasterSpec(p, parse_date(date, f"{path}: {key}[{i}].date") if date else dates.get(p),
                                      licence=_licence(entry)))
            elif isinstance(entry, dict) and isinstance(entry.get("stac"), str):
                _check_keys(entry, STAC_KEYS, f"{path}: {key}[{i}] ({entry['stac']!r}) has")
                asset = entry.get("asset")
                if asset is not None and not isinstance(asset, str):
                    raise ConfigError(f"{path}: {key}[{i}].asset must be an asset name such as `image` or `data`")
                out.append(StacSpec(resolve(entry["stac"], base), asset, _licence(entry)))
            else:
                raise ConfigError(f"{path}: {key}[{i}] must be a path, a mapping {{path, date}} or a STAC source "
                                  "{stac: items.json, asset: NAME}")
        return tuple(out)

    aerial, dsm = rasters("aerial"), rasters("dsm")
    named = {r.path for r in aerial + dsm if isinstance(r, RasterSpec)}
    stray = sorted(str(k) for k in dates_raw if resolve(str(k), base) not in named)
    if stray:
        raise ConfigError(f"{path}: `dates` names {stray}, which are not among the aerial or dsm rasters "
                          f"{sorted(named)}; a misspelt path leaves its raster without a date")

    pois = tuple(_poi_source(e, i, path, base) for i, e in enumerate(_entries(data, "pois", path)))
    return SourcesConfig(path=path, metros=tuple(metros), panorama_sources=panoramas, aerial=aerial, dsm=dsm,
                         poi_sources=pois)


def _entries(data: dict[str, Any], key: str, path: str) -> list[Any]:
    """A key that takes one source or a list of them, as a list (absent: empty)."""
    raw = data.get(key)
    if raw is None:
        return []
    if isinstance(raw, (str, dict)):
        return [raw]
    if isinstance(raw, list):
        return raw
    raise ConfigError(f"{path}: `{key}` must be a source or a list of sources, got {type(raw).__name__}")


def _licence(entry: dict[str, Any]) -> Licence:
    for key in LICENSE_KEYS:
        if entry.get(key) is not None and not isinstance(entry[key], str):
            raise ConfigError(f"`{key}` must be a string, got {entry[key]!r}")
    return Licence(entry.get("license"), entry.get("attribution"))


def _formatted(entry: Any, i: int, key: str, formats: dict[str, frozenset[str]], path: str) -> tuple[str, str]:
    """(format, where) of a source entry of ``key`` after checking its keys against its format's."""
    where = f"{path}: {key}[{i}]"
    if isinstance(entry, str):
        return "native", where
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        raise ConfigError(f"{where} must be a path or a mapping with a string `path`")
    fmt = entry.get("format", "native")
    if fmt not in formats:
        raise ConfigError(f"{where}.format {fmt!r} is not one of {sorted(formats)}")
    _check_keys(entry, formats[fmt] | LICENSE_KEYS | {"format"}, f"{where} ({entry['path']!r}, format {fmt}) has")
    return fmt, where


def _panorama_source(entry: Any, i: int, path: str, base: str) -> PanoramaSource:
    fmt, where = _formatted(entry, i, "panoramas", PANORAMA_FORMATS, path)
    if isinstance(entry, str):
        return PanoramaSource(resolve(entry, base))
    images = entry.get("images")
    if fmt == "mapillary" and images is not None and not isinstance(images, str):
        raise ConfigError(f"{where}.images must be the folder of the images (<id>.jpg)")
    return PanoramaSource(resolve(entry["path"], base), fmt, resolve(images, base) if images else None,
                          _licence(entry))


def _poi_source(entry: Any, i: int, path: str, base: str) -> PoiSource:
    fmt, where = _formatted(entry, i, "pois", POI_FORMATS, path)
    if isinstance(entry, str):
        return PoiSource(resolve(entry, base))
    confidence = entry.get("min_confidence", 0.0)
    if not isinstance(confidence, (int, float)) or not 0.0 <= confidence <= 1.0:
        raise ConfigError(f"{where}.min_confidence must be a number from 0 to 1, got {confidence!r}")
    return PoiSource(resolve(entry["path"], base), fmt, float(confidence), _licence(entry))

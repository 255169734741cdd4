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

A raster entry may also be a mapping ``{path: x.tif, date: 2021-06-15}``. Relative paths resolve
against the folder of the config file; ``gs://`` and ``s3://`` paths are kept as they are.
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
RASTER_KEYS = frozenset({"path", "date"})
_KEYS = frozenset({"metros", "panoramas", "aerial", "dsm", "pois", "dates"})


@dataclass(frozen=True)
class MetroSpec:
    """One metro area: a name used in shard names, and its boundary file."""

    name: str
    boundary: str


@dataclass(frozen=True)
class RasterSpec:
    """A raster file and, when the config gives one, its acquisition date."""

    path: str
    date: dt.date | None = None


@dataclass(frozen=True)
class SourcesConfig:
    """The parsed, path-resolved content of a ``sources.yaml``."""

    path: str
    metros: tuple[MetroSpec, ...]
    panoramas: str
    aerial: tuple[RasterSpec, ...]
    dsm: tuple[RasterSpec, ...]
    pois: str | None

    @property
    def data_paths(self) -> list[str]:
        """Every input file the config names (not the panorama images themselves)."""
        return [self.panoramas, *(m.boundary for m in self.metros), *(r.path for r in (*self.aerial, *self.dsm)),
                *([self.pois] if self.pois else [])]


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

    panoramas = data.get("panoramas")
    if not isinstance(panoramas, str):
        raise ConfigError(f"{path}: `panoramas` must be the path of a .parquet or .csv panorama index")

    dates_raw = data.get("dates") or {}
    if not isinstance(dates_raw, dict):
        raise ConfigError(f"{path}: `dates` must map raster paths to dates")
    dates = {resolve(str(k), base): parse_date(v, f"{path}: dates[{k}]") for k, v in dates_raw.items()}

    def rasters(key: str) -> tuple[RasterSpec, ...]:
        raw = data.get(key) or []
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list):
            raise ConfigError(f"{path}: `{key}` must be a list of raster paths")
        out = []
        for i, entry in enumerate(raw):
            if isinstance(entry, str):
                p = resolve(entry, base)
                out.append(RasterSpec(p, dates.get(p)))
            elif isinstance(entry, dict) and isinstance(entry.get("path"), str):
                _check_keys(entry, RASTER_KEYS, f"{path}: {key}[{i}] ({entry['path']!r}) has")
                p = resolve(entry["path"], base)
                date = entry.get("date")
                out.append(RasterSpec(p, parse_date(date, f"{path}: {key}[{i}].date") if date else dates.get(p)))
            else:
                raise ConfigError(f"{path}: {key}[{i}] must be a path or a mapping {{path, date}}")
        return tuple(out)

    aerial, dsm = rasters("aerial"), rasters("dsm")
    named = {r.path for r in aerial + dsm}
    stray = sorted(str(k) for k in dates_raw if resolve(str(k), base) not in named)
    if stray:
        raise ConfigError(f"{path}: `dates` names {stray}, which are not among the aerial or dsm rasters "
                          f"{sorted(named)}; a misspelt path leaves its raster without a date")

    pois = data.get("pois")
    if pois is not None and not isinstance(pois, str):
        raise ConfigError(f"{path}: `pois` must be the path of a GeoJSON, GeoParquet or .osm.pbf file")
    return SourcesConfig(
        path=path,
        metros=tuple(metros),
        panoramas=resolve(panoramas, base),
        aerial=aerial,
        dsm=dsm,
        pois=resolve(pois, base) if pois else None,
    )

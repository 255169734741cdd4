"""Panoramas from street-level services, read into the native index's columns.

- **Mapillary**: Graph API v4 image objects, as a JSON list, ``{"data": [...]}`` pages (one, or a list of
  them), or GeoJSON features whose properties carry the fields. ``computed_geometry`` and
  ``computed_compass_angle`` (Mapillary's corrected values) are preferred to ``geometry`` and
  ``compass_angle``; ``captured_at`` is milliseconds since the epoch, written as a UTC date-time. The image is
  ``IMAGES/<id>.jpg`` where that file exists (or ``images`` is a URL), else ``thumb_original_url``.
- **Panoramax**: STAC items of pictures (an ItemCollection or a saved search result, local or a URL):
  ``datetime``, ``view:azimuth``, ``pers:interior_orientation.field_of_view`` and the ``hd`` asset.

Every record becomes one row whose ``pano_id`` is the service's id (Mapillary's are numbers, Panoramax's
UUIDs; an id that two sources share is a duplicate, resolved as in one index). A record that is not a
360-degree equirectangular panorama keeps its row with ``reject_reason`` set (``not_panorama``: ``is_pano``
false, a ``camera_type`` other than spherical or equirectangular, a field of view under 360;
``not_equirectangular``: width not twice the height), so the build rejects it with that reason and the
ledger counts it. Missing or malformed fields are left for the index's own row checks (``bad_lat``,
``bad_date``, ...).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from unigeo.core import reasons
from unigeo.core.errors import SourceError
from unigeo.core.fileio import is_url, join, open_binary, parent, resolve

COLUMNS = ["pano_id", "lat", "lon", "heading_deg", "captured_at", "uri", "reject_reason", "reject_detail"]
PANORAMIC_CAMERAS = ("spherical", "equirectangular")


def _load_json(path: str) -> Any:
    try:
        with open_binary(path) as f:
            return json.loads(f.read())
    except FileNotFoundError as e:
        raise SourceError(path, "panorama source not found") from e
    except (OSError, ValueError) as e:
        raise SourceError(path, f"cannot read panorama source: {e}") from e


def mapillary_records(data: Any, path: str = "") -> Iterator[dict[str, Any]]:
    """The image objects of a Mapillary file: a list, ``{"data": [...]}`` pages, or GeoJSON features."""
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        for f in data.get("features", []):
            props = dict(f.get("properties") or {})
            props.setdefault("geometry", f.get("geometry"))
            yield props
    elif isinstance(data, dict) and isinstance(data.get("data"), list):
        yield from data["data"]
    elif isinstance(data, list) and all(isinstance(p, dict) and isinstance(p.get("data"), list) for p in data) and data:
        for page in data:
            yield from page["data"]
    elif isinstance(data, list):
        yield from data
    else:
        raise SourceError(path, "not Mapillary image objects",
                          "give a JSON list of Graph API v4 image objects, {\"data\": [...]} pages, or GeoJSON")


def _point(geometry: Any) -> tuple[Any, Any]:
    """(lat, lon) of a GeoJSON point, or (None, None)."""
    try:
        lon, lat = geometry["coordinates"][:2]
        return lat, lon
    except (TypeError, KeyError, ValueError, IndexError):
        return None, None


def _epoch_ms(value: Any) -> str:
    """ISO-8601 UTC date-time of milliseconds since the epoch ('' when it is not a number)."""
    try:
        ms = float(value)
    except (TypeError, ValueError):
        return "" if value is None else str(value)
    if not np.isfinite(ms):
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(timespec="seconds")


def _pano_check(is_pano: Any, camera: Any, width: Any, height: Any, fov: Any = None) -> tuple[str, str]:
    """(reason, detail) of a record that is not a 360-degree equirectangular panorama, else ('', '')."""
    if is_pano is False:
        return reasons.NOT_PANORAMA, "is_pano is false"
    if camera is not None and str(camera).lower() not in PANORAMIC_CAMERAS:
        return reasons.NOT_PANORAMA, f"camera_type {camera!r} is not spherical or equirectangular"
    try:
        if fov is not None and float(fov) < 360:
            return reasons.NOT_PANORAMA, f"field_of_view {fov} < 360"
    except (TypeError, ValueError):
        pass
    try:
        if width is not None and height is not None and int(width) != 2 * int(height):
            return reasons.NOT_EQUIRECTANGULAR, f"{width}x{height} is not 2:1"
    except (TypeError, ValueError):
        pass
    return "", ""


def read_mapillary(path: str, images: str | None = None) -> pd.DataFrame:
    """The rows (``COLUMNS``, plus ``camera_type``, ``width``, ``height``) of a Mapillary file, in its order.

    Raises:
        SourceError: the file cannot be read or holds no image objects.
    """
    records = list(mapillary_records(_load_json(path), path))
    on_disk: set[str] | None = None
    if images is not None and not is_url(images):
        on_disk = set(os.listdir(images)) if os.path.isdir(images) else set()
    rows = []
    for r in records:
        lat, lon = _point(r.get("computed_geometry") or r.get("geometry"))
        heading = r.get("computed_compass_angle", r.get("compass_angle"))
        if heading is None:
            heading = r.get("compass_angle")
        image_id = str(r.get("id", "")).strip()
        name = f"{image_id}.jpg"
        local = os.path.abspath(os.path.join(images, name)) if images is not None and not is_url(images) else ""
        if images is not None and (on_disk is None or name in on_disk):
            uri = join(images, name) if is_url(images) else local
        else:
            uri = r.get("thumb_original_url") or local
        reason, detail = _pano_check(r.get("is_pano"), r.get("camera_type"), r.get("width"), r.get("height"))
        rows.append({"pano_id": image_id, "lat": lat, "lon": lon,
                     "heading_deg": heading, "captured_at": _epoch_ms(r.get("captured_at")), "uri": uri,
                     "reject_reason": reason, "reject_detail": detail, "camera_type": r.get("camera_type"),
                     "width": r.get("width"), "height": r.get("height")})
    return _frame(rows)


def read_panoramax(path: str) -> pd.DataFrame:
    """The rows (``COLUMNS``, plus ``field_of_view``) of Panoramax STAC items, in their order.

    Raises:
        SourceError: the file cannot be read or is not a collection of STAC items.
    """
    data = _load_json(path)
    if isinstance(data, dict) and data.get("type") == "Feature":
        data = {"type": "FeatureCollection", "features": [data]}
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise SourceError(path, "not a STAC ItemCollection of Panoramax pictures",
                          "save a search result (/api/search or a collection's items) as JSON")
    base = parent(path)
    rows = []
    for item in data.get("features", []):
        props = item.get("properties") or {}
        lat, lon = _point(item.get("geometry"))
        orientation = props.get("pers:interior_orientation") or {}
        fov = orientation.get("field_of_view")
        size = orientation.get("sensor_array_dimensions") or [None, None]
        href = ((item.get("assets") or {}).get("hd") or {}).get("href", "")
        reason, detail = _pano_check(None, None, size[0], size[1], fov)
        item_id = str(item.get("id", "")).strip()
        rows.append({"pano_id": item_id, "lat": lat, "lon": lon,
                     "heading_deg": props.get("view:azimuth"),
                     "captured_at": props.get("datetime") or props.get("start_datetime") or "",
                     "uri": _absolute(resolve(href, base)) if href else "", "reject_reason": reason,
                     "reject_detail": detail, "field_of_view": fov})
    return _frame(rows)


def _absolute(path: str) -> str:
    return path if is_url(path) else os.path.abspath(path)


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    for c in ("lat", "lon", "heading_deg"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    for c in ("width", "height", "field_of_view"):
        if c in df:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    for c in ("pano_id", "captured_at", "uri", "reject_reason", "reject_detail"):
        df[c] = df[c].fillna("").astype(str)
    if "camera_type" in df:
        df["camera_type"] = df["camera_type"].fillna("").astype(str)
    return df


def read_service(fmt: str, path: str, images: str | None = None) -> pd.DataFrame:
    """The rows of a ``mapillary`` or ``panoramax`` source."""
    if fmt == "mapillary":
        return read_mapillary(path, images)
    if fmt == "panoramax":
        return read_panoramax(path)
    raise ValueError(f"unknown panorama format {fmt!r}")

"""Inputs staged under the output folder, so workers read them instead of the job graph carrying them.

The launcher reads metro boundaries and POIs in whatever format the user has (geopandas, pyrosm), then
writes them here in plain forms that workers load in a DoFn's ``setup()`` with shapely and pyarrow
alone; the job graph carries only their paths, whatever the inputs' size. The report reads the metro
outlines from here too, so a build folder stays readable after its inputs move.

``DIR/inputs/metros.geojson``     every metro: name, source file, repairs, (multi)polygon in EPSG:4326
``DIR/inputs/pois.parquet``       POIs in the common schema (``sources.pois.POI_COLUMNS``)
``DIR/inputs/poi_rejects.parquet`` POI rows the reader rejected, with the source file
``DIR/inputs/panoramas-N.parquet`` the N-th panorama source of the config, when it is a service's records
                                  (Mapillary, Panoramax) read into the native index's columns
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from shapely.geometry.base import BaseGeometry

from unigeo.core.fileio import join, read_bytes, write_bytes
from unigeo.core.sample import Reject
from unigeo.pipeline.text import PoiIndex

if TYPE_CHECKING:
    from unigeo.sources.metros import Metro
    from unigeo.sources.pois import PoiTable

FOLDER = "inputs"
METROS = f"{FOLDER}/metros.geojson"
POIS = f"{FOLDER}/pois.parquet"
POI_REJECTS = f"{FOLDER}/poi_rejects.parquet"


@dataclass(frozen=True)
class StagedInputs:
    """Where a build's staged inputs are (``pois`` and ``poi_rejects`` are None without a POI source)."""

    metros: str
    pois: str | None = None
    poi_rejects: str | None = None
    panoramas: tuple[str, ...] = ()  # the panorama indexes in config order: native files, or staged ones


def panorama_index(n: int) -> str:
    """Where, relative to the build folder, the ``n``-th panorama source (a service's records) is staged as a
    native index (the manifest names it so)."""
    return f"{FOLDER}/panoramas-{n}.parquet"


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def stage_inputs(out: str, metros: list[Metro], pois: PoiTable | None, pois_path: str | None,
                 panoramas: Sequence[str | pd.DataFrame] = ()) -> StagedInputs:
    """Write the staged inputs of a build under ``out``; ``panoramas``: each panorama source in config order,
    the path of a native index or a service's records as rows (staged here)."""
    indexes = []
    for n, source in enumerate(panoramas):
        if isinstance(source, str):
            indexes.append(source)
        else:
            indexes.append(join(out, panorama_index(n)))
            write_bytes(indexes[-1], _parquet(pa.Table.from_pandas(source, preserve_index=False)))
    features = [{"type": "Feature", "properties": {"name": m.name, "source": m.source, "repairs": list(m.repairs)},
                 "geometry": json.loads(shapely.to_geojson(m.geometry))} for m in metros]
    write_bytes(join(out, METROS), json.dumps({"type": "FeatureCollection", "features": features}).encode())
    if pois is None:
        return StagedInputs(join(out, METROS), panoramas=tuple(indexes))
    write_bytes(join(out, POIS), _parquet(pa.Table.from_pandas(pois.pois, preserve_index=False)))
    rejects = pois.rejects if "file" in pois.rejects.columns else pois.rejects.assign(file=pois_path or "")
    write_bytes(join(out, POI_REJECTS), _parquet(pa.Table.from_pandas(rejects, preserve_index=False)))
    return StagedInputs(join(out, METROS), join(out, POIS), join(out, POI_REJECTS), tuple(indexes))


def load_metros(path: str) -> list[tuple[str, BaseGeometry]]:
    """(name, EPSG:4326 geometry) of each staged metro, in config order."""
    collection = json.loads(read_bytes(path))
    return [(f["properties"]["name"], shapely.from_geojson(json.dumps(f["geometry"])))
            for f in collection["features"]]


def _table(path: str) -> dict[str, list[Any]]:
    return pq.read_table(io.BytesIO(read_bytes(path))).to_pydict()


def load_poi_index(path: str | None) -> PoiIndex | None:
    """The staged POIs as a distance index (None without POIs)."""
    if path is None:
        return None
    t = _table(path)
    if not t.get("poi_id"):
        return None
    return PoiIndex(t["poi_id"], t["name"], t["category"], t["lat"], t["lon"], t["neighbourhood"])


def poi_rejects(path: str | None) -> Iterator[Reject]:
    """The staged POI rejects as ``Reject`` records."""
    if path is None:
        return
    t = _table(path)
    for row, source_id, reason, detail, file in zip(t["row"], t["source_id"], t["reason"], t["detail"], t["file"]):
        yield Reject("poi", str(source_id), str(reason), str(detail), {"file": file or None, "row": int(row)}, int(row))

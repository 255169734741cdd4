"""The 3D scene behind the synthetic world, and a procedural generator of one.

Coordinates are metres in the scene's projected CRS (``Scene.crs``); heights are metres above the
terrain, which itself is a gentle analytic surface (``Scene.ground``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from pyproj import Transformer
from shapely import affinity
from shapely.geometry import LineString, Point, Polygon, box

from unigeo.core.geo import transformer

# Years at which the scene changes: buildings with ``built``/``removed`` == CHANGE_YEAR.
CHANGE_YEAR = 2022

ROOF_PALETTE: tuple[tuple[int, int, int], ...] = (
    (178, 40, 36),    # brick red
    (205, 70, 55),    # red
    (122, 122, 130),  # grey
    (212, 192, 150),  # beige
    (236, 234, 224),  # white
    (70, 100, 160),   # blue
    (92, 142, 94),    # green
    (150, 100, 60),   # brown
    (222, 162, 44),   # ochre
)
POI_CATEGORIES: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    ("cafe", 0.2, ("Cafe", "Coffee House", "Espresso Bar")),
    ("restaurant", 0.18, ("Kitchen", "Bistro", "Grill", "Trattoria")),
    ("grocery", 0.12, ("Market", "Grocery", "Food Store")),
    ("bakery", 0.07, ("Bakery", "Bread Co.")),
    ("bank", 0.07, ("Bank", "Savings", "Credit Union")),
    ("pharmacy", 0.07, ("Pharmacy", "Drugstore")),
    ("school", 0.06, ("Elementary School", "High School", "Academy")),
    ("library", 0.04, ("Library", "Reading Room")),
    ("bar", 0.08, ("Tavern", "Pub", "Taproom")),
    ("hotel", 0.05, ("Hotel", "Inn")),
    ("gym", 0.06, ("Fitness", "Gym")),
)
NAME_WORDS = (
    "Aurora", "Maple", "Harbor", "Juniper", "Beacon", "Cedar", "Granite", "Willow", "Liberty", "Summit",
    "Copper", "Orchard", "Lantern", "Meadow", "Union", "Atlas", "Blue Door", "Corner", "Riverside", "Hilltop",
)
NEIGHBOURHOODS = ("Northgate", "Harbor Point", "Old Mill", "Elm Hollow", "Brickyard", "Fairview")
STREET_NAMES = ("Elm", "Oak", "Pine", "Cedar", "Birch", "Walnut", "Chestnut", "Spruce", "Ash", "Linden",
                "Poplar", "Hawthorn", "Magnolia", "Sycamore", "Willow", "Alder")


@dataclass(frozen=True)
class Building:
    """A building: footprint, height above terrain, colour of roof and facade, and when it stands."""

    footprint: Polygon
    height: float
    colour: tuple[int, int, int]
    built: int | None = None
    removed: int | None = None
    source_id: str = ""

    def stands(self, year: int) -> bool:
        """True when the building exists in ``year``."""
        return (self.built is None or year >= self.built) and (self.removed is None or year < self.removed)


@dataclass(frozen=True)
class Tree:
    x: float
    y: float
    radius: float
    height: float


@dataclass(frozen=True)
class Street:
    line: LineString
    width: float
    name: str


@dataclass(frozen=True)
class Poi:
    name: str
    category: str
    x: float
    y: float
    neighbourhood: str = ""


@dataclass
class Scene:
    """Everything the renderers draw.

    Attributes:
        name: metro name.
        crs: projected CRS of all coordinates (metres); the DSM is written in it.
        bounds: (xmin, ymin, xmax, ymax) of the rendered area.
        boundary: the metro polygon, in ``crs``.
        texture_angle_deg: orientation of the street grid, used to lay out facade windows.
    """

    name: str
    crs: str
    bounds: tuple[float, float, float, float]
    boundary: Polygon
    streets: list[Street] = field(default_factory=list)
    buildings: list[Building] = field(default_factory=list)
    trees: list[Tree] = field(default_factory=list)
    parks: list[Polygon] = field(default_factory=list)
    water: list[Polygon] = field(default_factory=list)
    pois: list[Poi] = field(default_factory=list)
    texture_angle_deg: float = 0.0
    ground_base: float = 10.0
    ground_slope: tuple[float, float] = (0.004, -0.002)
    ground_wave: float = 1.0

    @property
    def centre(self) -> tuple[float, float]:
        xmin, ymin, xmax, ymax = self.bounds
        return (xmin + xmax) / 2, (ymin + ymax) / 2

    def ground(self, x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
        """Terrain height (m) at scene coordinates: a tilted plane with a long, low wave."""
        cx, cy = self.centre
        dx, dy = np.asarray(x, dtype=np.float64) - cx, np.asarray(y, dtype=np.float64) - cy
        wave = self.ground_wave * np.sin(2 * np.pi * dx / 700.0) * np.cos(2 * np.pi * dy / 900.0)
        return self.ground_base + self.ground_slope[0] * dx + self.ground_slope[1] * dy + wave

    def to_lonlat(self) -> Transformer:
        return transformer(self.crs, "EPSG:4326")


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _uv_box(u0: float, u1: float, v0: float, v1: float, angle: float, origin: tuple[float, float]) -> Polygon:
    """A rectangle given in street-grid coordinates (u across, v along), as a scene polygon."""
    poly = box(u0, v0, u1, v1)
    poly = affinity.rotate(poly, angle, origin=(0, 0), use_radians=False)
    return affinity.translate(poly, origin[0], origin[1])


def _grid_lines(rng: np.random.Generator, extent: float) -> list[tuple[float, float]]:
    """Street positions and widths along one axis, covering [-extent, extent]."""
    out = []
    pos = -extent - rng.uniform(0, 60)
    i = 0
    while pos < extent + 130:
        width = 20.0 if i % 3 == 0 else 12.0
        out.append((pos, width))
        pos += rng.uniform(85, 130)
        i += 1
    return out


def procedural_scene(size_m: float, seed: int, name: str = "riverton",
                     centre_lonlat: tuple[float, float] = (-71.0800, 42.3505),
                     crs: str = "EPSG:26986") -> Scene:
    """A procedural town: a rotated street grid, blocks of buildings, parks, a pond, trees and POIs.

    Args:
        size_m: side of the square scene in metres.
        seed: everything random derives from it.
        name: metro name.
        centre_lonlat: where on Earth the town stands.
        crs: the scene's projected CRS (default NAD83 / Massachusetts Mainland, metres).
    """
    rng = np.random.default_rng(seed)
    cx, cy = transformer("EPSG:4326", crs).transform(*centre_lonlat)
    half = size_m / 2
    bounds = (cx - half, cy - half, cx + half, cy + half)
    area = box(*bounds)
    angle = float(rng.uniform(8, 20))
    extent = half * 1.5
    us, vs = _grid_lines(rng, extent), _grid_lines(rng, extent)

    streets: list[Street] = []
    for k, (u, w) in enumerate(us):
        line = affinity.translate(affinity.rotate(LineString([(u, -extent - 200), (u, extent + 200)]), angle,
                                                  origin=(0, 0)), cx, cy).intersection(area)
        if isinstance(line, LineString) and line.length > 20:
            streets.append(Street(line, w, f"{_ordinal(k + 1)} Street"))
    for k, (v, w) in enumerate(vs):
        line = affinity.translate(affinity.rotate(LineString([(-extent - 200, v), (extent + 200, v)]), angle,
                                                  origin=(0, 0)), cx, cy).intersection(area)
        if isinstance(line, LineString) and line.length > 20:
            streets.append(Street(line, w, f"{STREET_NAMES[k % len(STREET_NAMES)]} Avenue"))

    buildings: list[Building] = []
    parks: list[Polygon] = []
    water: list[Polygon] = []
    trees: list[Tree] = []
    pois: list[Poi] = []
    blocks = []
    for (u0, wu0), (u1, wu1) in zip(us, us[1:]):
        for (v0, wv0), (v1, wv1) in zip(vs, vs[1:]):
            ext = (u0 + wu0 / 2 + 3, u1 - wu1 / 2 - 3, v0 + wv0 / 2 + 3, v1 - wv1 / 2 - 3)
            poly = _uv_box(*ext, angle, (cx, cy))
            if poly.intersects(area) and poly.intersection(area).area > 400:
                blocks.append((ext, poly))
    # One pond in a block away from the centre, about 10% parks, buildings elsewhere.
    far = sorted(range(len(blocks)), key=lambda i: -blocks[i][1].centroid.distance(Point(cx, cy)))
    pond = far[int(rng.integers(0, max(1, len(far) // 4)))]
    for i, ((bu0, bu1, bv0, bv1), poly) in enumerate(blocks):
        if i == pond:
            water.append(poly.buffer(-4).simplify(1.0))
            continue
        if rng.random() < 0.1:
            parks.append(poly)
            park_area = poly.area
            for _ in range(int(park_area / 180)):
                px, py = rng.uniform(bu0 + 3, bu1 - 3), rng.uniform(bv0 + 3, bv1 - 3)
                p = affinity.translate(affinity.rotate(Point(px, py), angle, origin=(0, 0)), cx, cy)
                trees.append(Tree(p.x, p.y, float(rng.uniform(2.0, 4.0)), float(rng.uniform(6, 14))))
            c = poly.centroid
            pois.append(Poi(f"{NAME_WORDS[int(rng.integers(len(NAME_WORDS)))]} Park", "park", c.x, c.y))
            continue
        depth_total = bv1 - bv0
        rows = [(bv0, bv1)] if depth_total < 55 else [(bv0, bv0 + depth_total / 2), (bv0 + depth_total / 2, bv1)]
        for r, (rv0, rv1) in enumerate(rows):
            u = bu0
            while u < bu1 - 10:
                lot_w = min(float(rng.uniform(14, 32)), bu1 - u)
                front = float(rng.uniform(0, 3))
                back = float(rng.uniform(2, 8))
                gap = float(rng.uniform(0.5, 3))
                if len(rows) == 1 or r == 0:
                    fv0, fv1 = rv0 + front, rv1 - back
                else:
                    fv0, fv1 = rv0 + back, rv1 - front
                fu0, fu1 = u + gap / 2, u + lot_w - gap / 2
                u += lot_w
                if fu1 - fu0 < 6 or fv1 - fv0 < 6:
                    continue
                poly = _uv_box(fu0, fu1, fv0, fv1, angle, (cx, cy))
                if not area.contains(poly.centroid):
                    continue
                d = poly.centroid.distance(Point(cx, cy)) / half
                height = float(np.clip((8 + 45 * math.exp(-2.5 * d * d)) * rng.lognormal(0, 0.35), 5, 120))
                jitter = np.clip(np.array(ROOF_PALETTE[int(rng.integers(len(ROOF_PALETTE)))])
                                 + rng.integers(-12, 13, size=3), 0, 255)
                colour = (int(jitter[0]), int(jitter[1]), int(jitter[2]))
                change = rng.random()
                built = CHANGE_YEAR if change < 0.07 else None
                removed = CHANGE_YEAR if 0.07 <= change < 0.13 else None
                buildings.append(Building(poly, round(height * 2) / 2, colour, built, removed,
                                          source_id=f"b{len(buildings)}"))

    # Street trees on some streets, both sides.
    for s in streets:
        if rng.random() < 0.5:
            continue
        for side in (-1, 1):
            offset = s.line.offset_curve(side * (s.width / 2 + 1.5))
            if offset.is_empty or not isinstance(offset, LineString):
                continue
            t = float(rng.uniform(2, 8))
            while t < offset.length:
                p = offset.interpolate(t)
                trees.append(Tree(p.x, p.y, float(rng.uniform(1.8, 3.0)), float(rng.uniform(6, 11))))
                t += float(rng.uniform(9, 15))

    # Neighbourhoods: the quadrants around the centre.
    names = list(NEIGHBOURHOODS)
    rng.shuffle(names)

    def neighbourhood(x: float, y: float) -> str:
        return names[(2 if y >= cy else 0) + (1 if x >= cx else 0)]

    weights = np.array([c[1] for c in POI_CATEGORIES])
    for b in buildings:
        if not b.stands(2100) or rng.random() > 0.4:
            continue
        cat, _, nouns = POI_CATEGORIES[int(rng.choice(len(POI_CATEGORIES), p=weights / weights.sum()))]
        p = b.footprint.representative_point()
        label = f"{NAME_WORDS[int(rng.integers(len(NAME_WORDS)))]} {nouns[int(rng.integers(len(nouns)))]}"
        pois.append(Poi(label, cat, p.x, p.y))
    pois = [Poi(p.name, p.category, p.x, p.y, neighbourhood(p.x, p.y)) for p in pois]

    # Metro boundary: the scene inset by 6%, with one corner cut off so that some streets lie outside.
    m = size_m * 0.06
    xmin, ymin, xmax, ymax = bounds
    cut = size_m * float(rng.uniform(0.25, 0.35))
    boundary = Polygon([(xmin + m, ymin + m), (xmax - m, ymin + m), (xmax - m, ymax - m - cut),
                        (xmax - m - cut, ymax - m), (xmin + m, ymax - m)])
    return Scene(name=name, crs=crs, bounds=bounds, boundary=boundary, streets=streets, buildings=buildings,
                 trees=trees, parks=parks, water=water, pois=pois, texture_angle_deg=angle)

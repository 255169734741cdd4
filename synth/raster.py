"""The scene as grids: terrain, surface height, class, building index and top-down colour."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.features import rasterize
from shapely.geometry import LineString, Point

from unigeo.synth.scene import Scene

# Surface classes.
GRASS, ROAD, SIDEWALK, MARKING, PARK, WATER, TREE, BUILDING = range(8)
CLASS_COLOURS = np.array([
    (104, 138, 74),   # grass
    (72, 72, 78),     # road
    (172, 168, 160),  # sidewalk
    (232, 200, 70),   # centre-line marking
    (86, 150, 72),    # park lawn
    (42, 82, 128),    # water
    (44, 98, 48),     # tree canopy
    (0, 0, 0),        # building: its own roof colour
], dtype=np.float32)


@dataclass
class SceneGrids:
    """The scene at one year, sampled on a north-up grid in the scene CRS.

    Attributes:
        transform: pixel -> scene coordinates.
        res: pixel size in metres.
        ground: terrain height (m).
        surface: terrain plus buildings and tree canopies (m).
        cls: surface class (GRASS, ROAD, ...).
        building: index into ``colours`` (-1 where no building).
        colours: roof/facade colour per building index.
        colour: top-down colour (what an orthophoto sees).
    """

    transform: Affine
    res: float
    ground: np.ndarray
    surface: np.ndarray
    cls: np.ndarray
    building: np.ndarray
    colours: np.ndarray
    colour: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        h, w = self.cls.shape
        return h, w

    def index(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, col, inside) of scene coordinates; indices are clipped where outside."""
        c = np.floor((x - self.transform.c) / self.res).astype(np.int64)
        r = np.floor((self.transform.f - y) / self.res).astype(np.int64)
        h, w = self.shape
        inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        return np.clip(r, 0, h - 1), np.clip(c, 0, w - 1), inside


def _noise(rng: np.random.Generator, shape: tuple[int, int], cell: int) -> np.ndarray:
    """Blocky value noise in [-1, 1] with features of ``cell`` pixels."""
    h, w = shape
    coarse = rng.uniform(-1, 1, size=(h // cell + 2, w // cell + 2)).astype(np.float32)
    return np.repeat(np.repeat(coarse, cell, axis=0), cell, axis=1)[:h, :w]


def rasterize_scene(scene: Scene, year: int, res: float, seed: int = 0) -> SceneGrids:
    """Burn the scene as it stands in ``year`` into grids of ``res`` metres."""
    xmin, ymin, xmax, ymax = scene.bounds
    w, h = int(round((xmax - xmin) / res)), int(round((ymax - ymin) / res))
    transform = Affine(res, 0, xmin, 0, -res, ymax)
    shape = (h, w)
    rng = np.random.default_rng([seed, year])

    shapes: list[tuple[object, int]] = []
    shapes += [(s.line.buffer(s.width / 2 + 3, cap_style="flat"), SIDEWALK) for s in scene.streets]
    shapes += [(s.line.buffer(s.width / 2, cap_style="flat"), ROAD) for s in scene.streets]
    for s in scene.streets:  # dashed centre line: 3 m dashes every 9 m
        t = 0.0
        while t + 3 < s.line.length:
            a, b = s.line.interpolate(t), s.line.interpolate(t + 3)
            shapes.append((LineString([a, b]).buffer(0.12, cap_style="flat"), MARKING))
            t += 9
    shapes += [(p, PARK) for p in scene.parks]
    shapes += [(p, WATER) for p in scene.water]
    cls = rasterize(shapes, out_shape=shape, transform=transform, fill=GRASS, dtype="uint8", all_touched=False)

    standing = [b for b in scene.buildings if b.stands(year)]
    building = rasterize([(b.footprint, i) for i, b in enumerate(standing)] or [(Point(0, 0), -1)],
                         out_shape=shape, transform=transform, fill=-1, dtype="int32")
    tree_idx = rasterize([(Point(t.x, t.y).buffer(t.radius, 12), i) for i, t in enumerate(scene.trees)]
                         or [(Point(0, 0), -1)], out_shape=shape, transform=transform, fill=-1, dtype="int32")

    cols = np.arange(w, dtype=np.float64) * res + xmin + res / 2
    rows = ymax - res / 2 - np.arange(h, dtype=np.float64) * res
    ground = scene.ground(cols[None, :], rows[:, None]).astype(np.float32)

    heights = np.array([b.height for b in standing] + [0.0], dtype=np.float32)
    colours = np.array([b.colour for b in standing] + [(0, 0, 0)], dtype=np.float32)
    surface = ground.copy()
    has_tree = (tree_idx >= 0) & (building < 0)
    if has_tree.any():
        ti = tree_idx[has_tree]
        tx = np.array([t.x for t in scene.trees])[ti]
        ty = np.array([t.y for t in scene.trees])[ti]
        tr = np.array([t.radius for t in scene.trees])[ti]
        th = np.array([t.height for t in scene.trees])[ti]
        rr, cc = np.nonzero(has_tree)
        dist = np.hypot(cols[cc] - tx, rows[rr] - ty) / tr
        surface[has_tree] += (th * (0.65 + 0.35 * np.sqrt(np.clip(1 - dist**2, 0, 1)))).astype(np.float32)
        cls[has_tree] = TREE
    has_b = building >= 0
    surface[has_b] += heights[building[has_b]]
    cls[has_b] = BUILDING

    colour = CLASS_COLOURS[cls]
    grain = _noise(rng, shape, max(1, int(round(1.0 / res))))
    patch = _noise(rng, shape, max(1, int(round(6.0 / res))))
    amp = np.array([10, 6, 8, 4, 14, 6, 26, 0], dtype=np.float32)[cls]
    colour += ((grain * 0.6 + patch * 0.4) * amp)[..., None]
    colour[has_b] = colours[building[has_b]] * (1 + 0.04 * grain[has_b])[:, None]
    return SceneGrids(transform=transform, res=res, ground=ground, surface=surface, cls=cls,
                      building=building, colours=colours, colour=np.clip(colour, 0, 255).astype(np.uint8))

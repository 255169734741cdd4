"""Text descriptions of places from nearby POIs and from what the tiles show.

``place_facts`` gathers the facts (pure numpy); a ``TextGenerator`` turns them into a paragraph. The
``TemplateGenerator`` is deterministic per sample; ``EndpointGenerator`` (in ``unigeo.pipeline.text_endpoint``)
asks an OpenAI-compatible chat endpoint and falls back to the template.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from unigeo.pipeline.fps import local_metres

TEMPLATE_VERSION = "1"
# How much a category says about a place: divides its distance when POIs are ordered.
SALIENCE = {"school": 5.0, "university": 5.0, "hospital": 5.0, "library": 4.0, "park": 4.0, "grocery": 4.0,
            "supermarket": 4.0, "marketplace": 4.0, "museum": 4.0, "theatre": 3.5, "cafe": 3.0,
            "restaurant": 3.0, "bakery": 3.0, "bank": 3.0, "pharmacy": 3.0, "hotel": 3.0, "cinema": 3.0,
            "bar": 2.0, "pub": 2.0, "gym": 2.0, "fast_food": 2.0, "clothes": 2.0}
# Street furniture says little about a place: it is named only when nothing else is near.
for _minor in ("bench", "waste_basket", "vending_machine", "parking", "bicycle_parking", "parking_entrance",
               "telephone", "post_box", "recycling", "toilets", "drinking_water", "clock", "charging_station",
               "atm", "parking_space", "motorcycle_parking", "bicycle_rental", "shelter"):
    SALIENCE[_minor] = 0.25
PLURALS = {"cafe": "cafes", "grocery": "grocery stores", "bakery": "bakeries", "pharmacy": "pharmacies",
           "library": "libraries", "school": "schools", "bank": "banks", "bar": "bars", "pub": "pubs",
           "restaurant": "restaurants", "hotel": "hotels", "gym": "gyms", "park": "parks",
           "supermarket": "supermarkets", "fast_food": "fast-food places", "clothes": "clothing stores"}
NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "a dozen")


@dataclass(frozen=True)
class NearbyPoi:
    poi_id: str
    name: str
    category: str
    distance_m: float


@dataclass(frozen=True)
class PlaceFacts:
    """What is known of a place; heights in metres, shares in [0, 1], None when the tile is missing."""

    metro: str
    neighbourhood: str
    radius_m: float
    pois: tuple[NearbyPoi, ...] = ()
    mean_height_m: float | None = None
    max_height_m: float | None = None
    built_share: float | None = None
    green_share: float | None = None
    water_share: float | None = None

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["pois"] = [asdict(p) for p in self.pois]
        return d


@dataclass(frozen=True)
class Description:
    """A place's text, where it came from, and why the preferred generator failed (None when it did not)."""

    text: str
    provenance: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None


class TextGenerator(Protocol):
    """Turns a place's facts into a description; a failure is returned with a fall-back text, never raised."""

    name: str

    def describe(self, facts: PlaceFacts, seed: int, key: str) -> Description: ...


class PoiIndex:
    """POIs of a build, queried by distance around a point (a coarse lat/lon grid, then exact metres)."""

    CELL_DEG = 0.01

    def __init__(self, ids: Sequence[str], names: Sequence[str], categories: Sequence[str],
                 lats: Sequence[float], lons: Sequence[float], neighbourhoods: Sequence[str]) -> None:
        self.ids, self.names, self.categories = list(ids), list(names), list(categories)
        self.neighbourhoods = list(neighbourhoods)
        self.lat, self.lon = np.asarray(lats, dtype=np.float64), np.asarray(lons, dtype=np.float64)
        self._grid: dict[tuple[int, int], list[int]] = {}
        for i, (la, lo) in enumerate(zip(self.lat, self.lon)):
            self._grid.setdefault((int(la // self.CELL_DEG), int(lo // self.CELL_DEG)), []).append(i)

    def near(self, lat: float, lon: float, radius_m: float) -> list[tuple[int, float]]:
        """(index, distance in metres) of the POIs within ``radius_m``, nearest first (ties by id)."""
        span_lat = radius_m / 111_000.0 / self.CELL_DEG + 1
        span_lon = radius_m / (111_000.0 * max(np.cos(np.radians(lat)), 0.01)) / self.CELL_DEG + 1
        r0, c0 = int(lat // self.CELL_DEG), int(lon // self.CELL_DEG)
        cand = [i for dr in range(-int(span_lat), int(span_lat) + 1) for dc in range(-int(span_lon), int(span_lon) + 1)
                for i in self._grid.get((r0 + dr, c0 + dc), [])]
        if not cand:
            return []
        idx = np.array(cand)
        d = np.hypot(*local_metres(self.lat[idx], self.lon[idx], lat, lon).T)
        keep = d <= radius_m
        return sorted(((int(i), float(x)) for i, x in zip(idx[keep], d[keep])), key=lambda t: (t[1], self.ids[t[0]]))


def tile_facts(aerial: np.ndarray | None, dsm: np.ndarray | None) -> dict[str, float | None]:
    """Built-up share and building heights from the DSM; green and water shares from the aerial colours."""
    out: dict[str, float | None] = {"mean_height_m": None, "max_height_m": None, "built_share": None,
                                    "green_share": None, "water_share": None}
    if dsm is not None and np.isfinite(dsm).any():
        ground = float(np.nanpercentile(dsm, 5))
        above = dsm - ground
        built = np.isfinite(above) & (above > 2.5)
        out["built_share"] = round(float(built.mean()), 3)
        if built.any():
            out["mean_height_m"] = round(float(above[built].mean()), 1)
            out["max_height_m"] = round(float(above[built].max()), 1)
    if aerial is not None:
        rgb = aerial.astype(np.int16)
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        valid = rgb.sum(axis=2) > 0
        if valid.any():
            out["green_share"] = round(float(((g > r + 12) & (g > b + 12) & valid).sum() / valid.sum()), 3)
            out["water_share"] = round(float(((b > r + 30) & (b > g + 5) & valid).sum() / valid.sum()), 3)
    return out


def place_facts(metro: str, lat: float, lon: float, index: PoiIndex | None, radius_m: float, max_pois: int,
                aerial: np.ndarray | None, dsm: np.ndarray | None) -> PlaceFacts:
    """Facts of one place: POIs within ``radius_m`` ordered by distance / salience, and tile statistics."""
    pois: list[NearbyPoi] = []
    neighbourhood = ""
    if index is not None:
        near = index.near(lat, lon, radius_m)
        for i, _ in near:
            if index.neighbourhoods[i]:
                neighbourhood = index.neighbourhoods[i]
                break
        ranked = sorted(near, key=lambda t: (t[1] / SALIENCE.get(index.categories[t[0]], 1.0), index.ids[t[0]]))
        pois = [NearbyPoi(index.ids[i], index.names[i], index.categories[i], round(d, 1)) for i, d in ranked[:max_pois]]
    return PlaceFacts(metro=metro, neighbourhood=neighbourhood, radius_m=radius_m, pois=tuple(pois),
                      **tile_facts(aerial, dsm))


def facts_digest(facts: PlaceFacts, prompt: str = "") -> str:
    return hashlib.sha256((json.dumps(facts.as_json(), sort_keys=True) + prompt).encode()).hexdigest()


def _title(metro: str) -> str:
    return " ".join(w.capitalize() for w in metro.replace("_", " ").split())


def plural(category: str) -> str:
    """English plural of a category: the table first, then the usual spelling rules."""
    if category in PLURALS:
        return PLURALS[category]
    word = category.replace("_", " ")
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _count(n: int, category: str) -> str:
    singular = category.replace("_", " ")
    if n == 1:
        return f"one {singular}"
    return f"{NUMBERS[n] if n < len(NUMBERS) else n} {plural(category)}"


def _a(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


class TemplateGenerator:
    """Deterministic paragraphs with variety: phrasing chosen by a generator seeded per sample."""

    name = "template"
    version = TEMPLATE_VERSION

    def describe(self, facts: PlaceFacts, seed: int, key: str) -> Description:
        rng = np.random.default_rng([seed, int(hashlib.sha256(key.encode()).hexdigest()[:12], 16)])

        def pick(options: Sequence[str]) -> str:
            return options[int(rng.integers(len(options)))]

        metro = _title(facts.metro)
        character = self._character(facts)
        if facts.neighbourhood:
            opening = pick((f"Situated in {metro}'s {character} {facts.neighbourhood} neighborhood, this place",
                            f"In the {character} {facts.neighbourhood} area of {metro}, this spot",
                            f"This corner of {facts.neighbourhood}, {_a(character)} part of {metro},"))
        else:
            opening = pick((f"This {character} part of {metro}", f"Situated in {_a(character)} stretch of "
                            f"{metro}, this place", f"This spot in {metro}, {character} in character,"))
        sentences = [opening + " " + self._poi_clause(facts, pick)]
        tiles = self._tile_sentence(facts, pick)
        if tiles:
            sentences.append(tiles)
        text = " ".join(s.strip() for s in sentences)
        return Description(text, {"generator": self.name, "version": self.version,
                                  "poi_ids": [p.poi_id for p in facts.pois], "prompt_sha256": facts_digest(facts)})

    @staticmethod
    def _character(f: PlaceFacts) -> str:
        if f.water_share is not None and f.water_share > 0.3:
            return "waterside"
        if f.built_share is None:
            return "urban"
        if f.green_share is not None and f.green_share > 0.45 and f.built_share < 0.15:
            return "green, open"
        if f.mean_height_m is not None and f.mean_height_m > 30:
            return "dense, high-rise"
        if f.mean_height_m is not None and f.mean_height_m > 14:
            return "lively mid-rise"
        return "low-rise, residential" if f.built_share < 0.35 else "compact"

    @staticmethod
    def _poi_clause(f: PlaceFacts, pick: Any) -> str:
        if not f.pois:
            return pick((f"has no mapped points of interest within {f.radius_m:.0f} m.",
                         f"lies more than {f.radius_m:.0f} m from any mapped shop, school or park."))
        by_cat: dict[str, list[NearbyPoi]] = {}
        for p in f.pois:
            by_cat.setdefault(p.category, []).append(p)
        parts = []
        for cat, items in list(by_cat.items())[:4]:
            named = [p.name for p in items if p.name]
            if len(items) <= 2 and named:
                singular = cat.replace("_", " ")
                noun = plural(cat) if len(named) > 1 else singular
                parts.append(pick((f"{singular} options including {_join(named)}" if len(named) > 1
                                   else f"the {noun} {named[0]}", f"{_join(named)} ({noun})")))
            else:
                closest = f", the nearest being {named[0]}" if named else ""
                parts.append(f"{_count(len(items), cat)}{closest}")
        verb = pick(("offers", "is close to", "has", "sits near"))
        nearest = next((p for p in f.pois if p.name), None)
        tail = ""
        if nearest is not None and nearest.name not in " ".join(parts):
            tail = f", {nearest.name} being closest at {nearest.distance_m:.0f} m"
        return f"{verb} {_join(parts)}{tail}."

    @staticmethod
    def _tile_sentence(f: PlaceFacts, pick: Any) -> str:
        bits = []
        if f.mean_height_m is not None and f.max_height_m is not None:
            bits.append(pick((f"buildings average {f.mean_height_m:.0f} m in height, the tallest reaching "
                              f"{f.max_height_m:.0f} m", f"rooflines stand about {f.mean_height_m:.0f} m high "
                              f"(up to {f.max_height_m:.0f} m)")))
        if f.built_share is not None:
            bits.append(f"about {f.built_share:.0%} of the ground is built over")
        if f.green_share is not None and f.green_share >= 0.05:
            bits.append(pick((f"{f.green_share:.0%} is green", f"trees and lawns cover {f.green_share:.0%}")))
        if f.water_share is not None and f.water_share >= 0.05:
            bits.append(f"water covers {f.water_share:.0%}")
        if not bits:
            return ""
        s = _join(bits)
        return s[0].upper() + s[1:] + "."

"""The build's options, one dataclass per group; each field is declared once (default, help, range)
and is both the ``unigeo build`` flag and the value the transforms read (defaults from the contract)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from unigeo.core.errors import ConfigError
from unigeo.core.options import check_ranges, option
from unigeo.core.sample import TILE_ENCODINGS
from unigeo.pipeline.cells import MAX_LEVEL, MIN_LEVEL, default_parent_level
from unigeo.pipeline.split import parse_years
from unigeo.pipeline.text import TemplateGenerator, TextGenerator


@dataclass(frozen=True)
class ImageryOptions:
    """Street-view crops and aerial/DSM tiles."""

    crops_per_pano: int = option(1, "Pinhole crops rendered from each kept panorama (--no-imagery skips them).",
                                 min=1)
    crop_px: int = option(256, "Crop side in pixels.", min=8)
    pitch_min: float = option(-5.0, "Lowest crop pitch (degrees above the horizon).", min=-90, max=90)
    pitch_max: float = option(15.0, "Highest crop pitch (degrees above the horizon).", min=-90, max=90)
    fov_min: float = option(60.0, "Narrowest crop horizontal field of view (degrees).", min=0, min_open=True, max=179)
    fov_max: float = option(100.0, "Widest crop horizontal field of view (degrees).", min=0, min_open=True, max=179)
    jpeg_quality: int = option(90, "JPEG quality of the crops.", min=1, max=100)
    tile_px: int = option(256, "Aerial/DSM tile side in pixels.", min=8)
    gsd: float = option(0.6, "Tile metres per pixel.", min=0, min_open=True)
    max_nodata: float = option(0.2, "Largest nodata share of a kept tile.", min=0, max=1)
    max_pixels: int = option(134_217_728, "Largest panorama in pixels (width x height; default 16384 x 8192); "
                             "larger ones are rejected as image_too_large (Pillow's limit follows it).", min=1)
    tile_encoding: str = option("standard", "How tiles are stored: standard (aerial.png, dsm.npy float32, the "
                                "contract's members) or compact (aerial.webp lossless, dsm.png of centimetres; "
                                "about a third of the bytes).", choices=tuple(TILE_ENCODINGS))

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.pitch_min > self.pitch_max:
            raise ConfigError(f"--pitch-min {self.pitch_min} is above --pitch-max {self.pitch_max}")
        if self.fov_min > self.fov_max:
            raise ConfigError(f"--fov-min {self.fov_min} is above --fov-max {self.fov_max}")

    @property
    def pitch_range(self) -> tuple[float, float]:
        return self.pitch_min, self.pitch_max

    @property
    def fov_range(self) -> tuple[float, float]:
        return self.fov_min, self.fov_max


@dataclass(frozen=True)
class TextOptions:
    """Where descriptions come from: POIs within ``radius_m`` (at most ``max_pois``) and the template,
    or an OpenAI-compatible endpoint when ``endpoint`` is set (key from the ``key_env`` variable)."""

    radius_m: float = option(300.0, "Metres around the cell centre whose POIs the text may name.",
                             flag="text-radius", min=0, min_open=True)
    max_pois: int = option(12, "Most POIs a text may name.", flag="text-max-pois", min=0)
    endpoint: str | None = option(None, "OpenAI-compatible API base URL (e.g. http://localhost:8000/v1); "
                                  "default: template text.", flag="text-endpoint")
    model: str | None = option(None, "Model name for --text-endpoint.", flag="text-model")
    key_env: str = option("UNIGEO_TEXT_API_KEY", "Environment variable holding the endpoint's API key "
                          "(never logged).", flag="text-key-env")
    timeout_s: float = option(30.0, "Seconds per endpoint request.", flag="text-timeout", min=0, min_open=True)
    retries: int = option(3, "Endpoint tries per text before the template is used.", flag="text-retries", min=1)

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.endpoint and not self.model:
            raise ConfigError("--text-endpoint needs --text-model")

    def generator(self) -> TextGenerator:
        if self.endpoint:
            from unigeo.pipeline.text_endpoint import EndpointGenerator

            return EndpointGenerator(self.endpoint, str(self.model), self.key_env, self.timeout_s, self.retries)
        return TemplateGenerator()


@dataclass(frozen=True)
class BuildOptions:
    """Locations, selection, split and shards; the imagery and text groups."""

    level: int = option(16, f"S2 level of a location ({MIN_LEVEL}-{MAX_LEVEL}; 16 is ~150 m).", min=MIN_LEVEL,
                        max=MAX_LEVEL)
    max_panos: int = option(120, "Panoramas kept per cell and split (farthest-point sampling).", min=1)
    holdout_year: int = option(2023, "Imagery of this year is the test split.", min=1900, max=2100)
    years: str = option("2017-2024", "Year range of the train split (the holdout year is excluded).")
    seed: int = option(0, "Seed of every random choice.")
    parent_level: int | None = option(None, "S2 level of the coarse cells that spread the covering over workers "
                                      f"[default: level - 6, at least {MIN_LEVEL}].", min=MIN_LEVEL, max=MAX_LEVEL,
                                      show_default=False)
    max_cells: int = option(2_000_000, "Most S2 cells the metros' covering may hold, estimated from their area "
                            "before anything runs; raise it on purpose for a larger build.", min=1)
    max_reject_fraction: float = option(1.0, "Exit 1 (after writing everything) when more than this share of the "
                                        "input panoramas is rejected.", min=0, max=1)
    no_imagery: bool = option(False, "Location stages only: cells, selection, split, ledger and JSON-only samples; "
                              "no image is read.")
    shard_max_samples: int = option(1000, "Most samples in a shard.", min=1)
    shard_max_mb: float = option(1024.0, "Most megabytes in a shard (a larger sample gets one of its own).",
                                 min=0, min_open=True)
    train_shard_order: str = option("mixed", "Which samples share a training shard: a seeded random draw over the "
                                    "whole metro (batches mix places from everywhere) or neighbours in S2 order "
                                    "(batches from one area). Test shards are always in S2 order.",
                                    choices=("mixed", "s2"))
    layout: str = option("auto", "How a build replaces the earlier one in --out. in-place: the files sit in the folder "
                         "itself, moved in when the build is done (a local folder's default). versioned: they stay "
                         "in a new DIR/builds/<build-id>/ and publishing rewrites DIR/manifest.json alone, which "
                         "names that prefix (the default on gs://, s3:// and other object stores, where a move "
                         "copies every object). auto: by the kind of --out.", choices=("auto", "in-place", "versioned"))
    imagery: ImageryOptions = dataclasses.field(default_factory=ImageryOptions)
    text: TextOptions = dataclasses.field(default_factory=TextOptions)

    def __post_init__(self) -> None:
        check_ranges(self)
        try:
            parse_years(self.years)
        except ValueError as e:
            raise ConfigError(f"--years: {e}") from e
        if self.parent_level is not None and self.parent_level > self.level:
            raise ConfigError(f"--parent-level must be in 0..{self.level}, got {self.parent_level}")

    @property
    def year_range(self) -> tuple[int, int]:
        return parse_years(self.years)

    @property
    def cover_parent_level(self) -> int:
        return default_parent_level(self.level) if self.parent_level is None else self.parent_level

    @property
    def render(self) -> ImageryOptions | None:
        """The imagery options, or None for a location-only build."""
        return None if self.no_imagery else self.imagery

    def as_dict(self) -> dict[str, Any]:
        """The options as the manifest records them (``imagery`` is null for a location-only build)."""
        d = dataclasses.asdict(self)
        d["parent_level"] = self.cover_parent_level
        if self.no_imagery:
            d["imagery"] = None
        return d

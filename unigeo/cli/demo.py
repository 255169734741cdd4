"""``unigeo demo``: the README's first command."""

from __future__ import annotations

import os

import click

from unigeo.cli.options import seed_option, size_option, verbosity
from unigeo.cli.synth import run_synth


@click.command()
@click.option("--out", default="unigeo-demo", show_default=True, type=click.Path(file_okay=False),
              help="Output folder.")
@size_option
@seed_option
@verbosity
def demo(out: str, size: str, seed: int) -> None:
    """Synthetic world -> build -> report -> short training -> eval table.

    This version runs the first stage, writes the synthetic world and reads every file back.
    """
    world = os.path.join(out, "world")
    run_synth(world, size, seed, "procedural", True, None)
    click.echo(f"\nworld written: {world}/sources.yaml (panoramas in {world}/panos/)")
    click.echo("next stages (build, report, train, eval) are not built yet in this version.")

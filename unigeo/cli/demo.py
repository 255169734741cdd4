"""``unigeo demo``: the README's first command."""

from __future__ import annotations

import json
import os

import click

from unigeo.cli.build import REPORT_MODULES, format_summary, missing_extra, run_build
from unigeo.cli.options import seed_option, size_option, verbosity
from unigeo.cli.synth import run_synth
from unigeo.core.errors import UniGeoError
from unigeo.pipeline.options import BuildOptions


@click.command()
@click.option("--out", default="unigeo-demo", show_default=True, type=click.Path(file_okay=False),
              help="Output folder.")
@size_option
@seed_option
@verbosity
def demo(out: str, size: str, seed: int) -> None:
    """Synthetic world -> build -> report -> audit (-> short training -> eval table, as they land)."""
    from unigeo.outputs.audit import audit

    hint = missing_extra(REPORT_MODULES, "report")
    if hint:
        raise click.ClickException(f"the demo ends with the build's report: {hint} (or 'unigeo[all]')")
    world = os.path.join(out, "world")
    data = os.path.join(out, "data")
    click.echo(f"1/3 synthetic world -> {world}")
    run_synth(world, size, seed, "procedural", True, None)
    click.echo(f"\n2/3 build (Beam, DirectRunner) and report -> {data}")
    try:
        manifest = run_build(os.path.join(world, "sources.yaml"), data, BuildOptions(seed=seed), [])
    except UniGeoError as e:
        raise click.ClickException(str(e)) from e
    click.echo(format_summary(manifest, counters=False))
    click.echo(f"\n3/3 audit {data}")
    result = audit(data)
    click.echo(json.dumps({k: result[k] for k in ("ok", "n_violations", "checked")}, indent=2))
    if not result["ok"]:
        raise click.ClickException("audit found violations: " + "; ".join(result["violations"][:5]))
    click.echo(f"\ndone: shards in {data}/shards, manifest {data}/manifest.json")
    click.echo(f"report: {os.path.abspath(data)}/report/index.html (opens from disk, no network)")
    # Training and evaluation join here when the trainer lands: train(data, run), then eval.
    click.echo("training and evaluation are not built yet in this version.")

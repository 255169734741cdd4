"""``unigeo demo``: the README's first command."""

from __future__ import annotations

import json
import os

import click

from unigeo.cli.build import REPORT_MODULES, format_summary, missing_extra, run_build
from unigeo.cli.exits import epilog
from unigeo.cli.options import seed_option, size_option, verbosity
from unigeo.cli.synth import run_synth
from unigeo.cli.train import TRAIN_MODULES, run_eval, run_train
from unigeo.core.errors import UniGeoError
from unigeo.pipeline.options import BuildOptions

DEMO_EPOCHS = {"tiny": 12, "small": 8}


@click.command(epilog=epilog("demo"))
@click.option("--out", default="unigeo-demo", show_default=True, type=click.Path(file_okay=False),
              help="Output folder.")
@size_option
@seed_option
@click.option("--epochs", type=click.IntRange(min=0), default=None,
              help="Epochs of the closing training (default: 12 tiny, 8 small; 0 skips training).")
@verbosity
def demo(out: str, size: str, seed: int, epochs: int | None) -> None:
    """Synthetic world -> build -> report -> audit -> short training -> retrieval table."""
    from unigeo.outputs.audit import audit

    hint = missing_extra(REPORT_MODULES, "report")
    if hint:
        raise click.ClickException(f"the demo ends with the build's report: {hint} (or 'unigeo[all]')")
    world = os.path.join(out, "world")
    data = os.path.join(out, "data")
    click.echo(f"1/5 synthetic world -> {world}")
    run_synth(world, size, seed, "procedural", True, None)
    click.echo(f"\n2/5 build (Beam, DirectRunner) and report -> {data}")
    try:
        manifest = run_build(os.path.join(world, "sources.yaml"), data, BuildOptions(seed=seed), [])
    except UniGeoError as e:
        raise click.ClickException(str(e)) from e
    click.echo(format_summary(manifest, counters=False))
    click.echo(f"\n3/5 audit {data}")
    result = audit(data)
    click.echo(json.dumps({k: result[k] for k in ("ok", "n_violations", "checked")}, indent=2))
    if not result["ok"]:
        raise click.ClickException("audit found violations: " + "; ".join(result["violations"][:5]))
    click.echo(f"\ndone: shards in {data}/shards, manifest {data}/manifest.json")
    click.echo(f"report: {os.path.abspath(data)}/report/index.html (opens from disk, no network)")
    epochs = DEMO_EPOCHS[size] if epochs is None else epochs
    hint = missing_extra(TRAIN_MODULES, "train")
    if hint or not epochs:
        click.echo(f"\ntraining skipped: {hint}" if hint else "\ntraining skipped (--epochs 0)")
        return
    run = os.path.join(out, "run")
    click.echo(f"\n4/5 train {epochs} epochs on CPU -> {run} (a short run: a baseline, not a trained model)")
    run_train(data, run, epochs=epochs, batch_size=32, seed=seed, log_every=5, overwrite=True)  # the demo's own run
    click.echo(f"\n5/5 eval on the {manifest['options'].get('holdout_year', 2023)} split -> {run}/eval")
    run_eval(data, os.path.join(run, "model.pt"), None, 64, "cpu")
    click.echo(f"\nthe whole evaluation (every pair, geolocation, examples): {os.path.abspath(run)}/eval/index.html; "
               "for a world big enough to learn from: unigeo synth --size medium")

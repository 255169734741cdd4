"""``unigeo report DIR``: rebuild ``DIR/report/`` from the manifest, ledger and summaries."""

from __future__ import annotations

import json

import click

from unigeo.cli.exits import epilog
from unigeo.cli.options import verbosity


@click.command(epilog=epilog("report"))
@click.argument("out_dir")
@verbosity
def report(out_dir: str) -> None:
    """Rebuild DIR/report/ (report.json, index.html, figures) from a build's manifest and ledger."""
    from unigeo.core.build_files import build_root
    from unigeo.core.errors import UniGeoError
    from unigeo.outputs.report import build_report

    try:
        result = build_report(out_dir)
    except FileNotFoundError as e:
        raise click.ClickException(f"{out_dir} holds no build: {e}") from e
    except UniGeoError as e:
        raise click.ClickException(str(e)) from e
    click.echo(json.dumps(result["headline"], indent=2))
    click.echo(f"report: {build_root(out_dir).rstrip('/')}/report/index.html")

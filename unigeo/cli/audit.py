"""``unigeo audit DIR``: check a build's shards, ledger sums and split leakage."""

from __future__ import annotations

import json
import sys

import click

from unigeo.cli.options import verbosity


@click.command()
@click.argument("out_dir")
@verbosity
def audit(out_dir: str) -> None:
    """Check shards, ledger sums and split leakage of a build; print JSON; exit 1 on any violation."""
    from unigeo.outputs.audit import audit as run_audit

    result = run_audit(out_dir)
    click.echo(json.dumps(result, indent=2))
    if not result["ok"]:
        sys.exit(1)

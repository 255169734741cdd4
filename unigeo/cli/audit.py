"""``unigeo audit DIR``: check a build's shards, ledger sums and split leakage."""

from __future__ import annotations

import json
import sys

import click

from unigeo.cli.exits import epilog
from unigeo.cli.options import verbosity


@click.command(epilog=epilog("audit"))
@click.argument("out_dir")
@verbosity
def audit(out_dir: str) -> None:
    """Check shards, ledger sums and split leakage of a build; print JSON; exit 1 on any violation.
    A publish that was interrupted is finished (or undone) first, and the JSON says so."""
    from unigeo.outputs.audit import audit as run_audit
    from unigeo.outputs.folder import recover

    recovered = recover(out_dir)
    if recovered:
        click.echo(recovered, err=True)
    result = run_audit(out_dir)
    if recovered:
        result["recovered"] = recovered
    click.echo(json.dumps(result, indent=2))
    if not result["ok"]:
        sys.exit(1)

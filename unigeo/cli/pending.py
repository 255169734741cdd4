"""Commands of the contract that are not built yet: each says so and exits with code 2."""

from __future__ import annotations

from typing import Any

import click

NOT_BUILT_EXIT = 2


def not_built(command: str) -> None:
    click.echo(f"unigeo {command}: not built yet in this version of UniGeo.", err=True)
    raise SystemExit(NOT_BUILT_EXIT)


@click.command()
@click.option("--data", type=click.Path(), help="Build output folder.")
@click.option("--out", type=click.Path(), help="Run folder.")
@click.option("--epochs", type=int)
@click.option("--device", type=click.Choice(["cpu", "cuda"]))
def train(**_: Any) -> None:
    """Train the five-modality model from DIR/shards/train (not built yet)."""
    not_built("train")


@click.command(name="eval")
@click.option("--data", type=click.Path(), help="Build output folder.")
@click.option("--checkpoint", type=click.Path(), help="RUN/model.pt.")
def evaluate(**_: Any) -> None:
    """Retrieval metrics on DIR/shards/test (not built yet)."""
    not_built("eval")

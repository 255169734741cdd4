"""The ``unigeo`` command line: one module per command, registered on one group."""

from __future__ import annotations

import click

from unigeo import __version__
from unigeo.cli.audit import audit
from unigeo.cli.build import build
from unigeo.cli.demo import demo
from unigeo.cli.options import verbosity
from unigeo.cli.plan import plan
from unigeo.cli.report import report
from unigeo.cli.synth import synth
from unigeo.cli.train import eval_command, train_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="unigeo")
@verbosity
def cli() -> None:
    """UniGeo: build multimodal geospatial training data (street view, aerial, DSM, text, coordinates)
    with Apache Beam, and train on it."""


for command in (demo, synth, plan, build, report, audit, train_command, eval_command):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli()

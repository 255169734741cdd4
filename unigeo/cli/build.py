"""``unigeo build``: the Beam job from ``sources.yaml`` to shards, ledger, rejects, manifest and report."""

from __future__ import annotations

import logging
import os
from typing import Any

import click

from unigeo.cli.dataclass_options import click_options, from_kwargs
from unigeo.cli.options import verbosity
from unigeo.core import fileio
from unigeo.core.errors import ConfigError, UniGeoError
from unigeo.pipeline.options import BuildOptions, ImageryOptions, TextOptions

log = logging.getLogger("unigeo.build")


def format_summary(manifest: dict, counters: bool = True) -> str:
    c = manifest["counts"]["overall"]
    lines = [
        f"panoramas: {c['inputs']} in = {c['kept']} kept + {c['not_selected']} not selected + {c['rejected']} rejected",
        "rejected: " + (", ".join(f"{k} {v}" for k, v in c["rejected_by_reason"].items()) or "none"),
        f"cells: {c['cells']} covered; samples: {c['samples']['train']} train, {c['samples']['test']} test",
        f"shards: {c['shards']} ({c['shard_bytes'] / 1e6:.1f} MB) in {manifest['run']['duration_s']:.1f} s; members "
        + ", ".join(f"{k} {v}" for k, v in c["members"].items()),
    ]
    for metro, m in manifest["counts"]["per_metro"].items():
        lines.append(f"  {metro}: {m['cells']} cells, {m['inputs']} panoramas, {m['kept']} kept, "
                     f"{m['samples']['train']} train / {m['samples']['test']} test samples")
    if counters:
        lines.append("counters:")
        lines += [f"  {k}: {v}" for k, v in manifest["counters"].items()]
    return "\n".join(lines)


def missing_extra(modules: tuple[str, ...], extra: str) -> str | None:
    """A hint naming the extra to install when one of ``modules`` cannot be imported, else None."""
    import importlib.util

    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    if not absent:
        return None
    return f"{', '.join(absent)} not installed: pip install 'unigeo[{extra}]'"


REPORT_MODULES = ("matplotlib", "jinja2")


def run_build(config_path: str, out: str, opts: BuildOptions, beam_args: list[str]) -> dict[str, Any]:
    """Run the build job, then write ``DIR/manifest.json`` and ``DIR/report/``; return the manifest.

    Raises:
        ConfigError, SourceError: bad configuration or an unusable input, before anything runs.
    """
    from unigeo.outputs.manifest import write_manifest
    from unigeo.pipeline.job import read_inputs, run_job  # Beam is slow to import; keep --help fast

    if not fileio.is_url(out) and os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"--out {out} is a file; give a folder (new, or one a previous build wrote)")
    inputs = read_inputs(config_path)
    found, run = run_job(inputs, out, opts, beam_args)
    manifest = write_manifest(out, inputs.config, inputs.metros, opts.as_dict(), found, run)
    hint = missing_extra(REPORT_MODULES, "report")
    if hint:
        log.warning("report skipped (%s); `unigeo report %s` writes it later", hint, out)
        return manifest
    from unigeo.outputs.report import build_report

    build_report(out)
    log.info("report: %s/report/index.html", out.rstrip("/"))
    return manifest


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--config", "config_path", required=True, help="sources.yaml (local path or gs:// / s3:// URL).")
@click.option("--out", required=True, help="Output folder (local path or URL).")
@click_options(BuildOptions, ImageryOptions, TextOptions)
@verbosity
@click.pass_context
def build(ctx: click.Context, config_path: str, out: str, **values: Any) -> None:
    """Build WebDataset shards from a sources.yaml.

    Flags this command does not know go to Apache Beam, e.g. `--runner DataflowRunner --project P
    --region R --temp_location gs://...` or `--direct_running_mode=multi_processing`. The runner is
    DirectRunner unless `--runner` is given.
    """
    try:
        opts = from_kwargs(BuildOptions, values, imagery=from_kwargs(ImageryOptions, values),
                           text=from_kwargs(TextOptions, values))
    except UniGeoError as e:
        raise click.BadParameter(str(e)) from e
    try:
        manifest = run_build(config_path, out, opts, list(ctx.args))
    except UniGeoError as e:
        raise click.ClickException(str(e)) from e
    click.echo(format_summary(manifest))
    click.echo(f"manifest: {out.rstrip('/')}/manifest.json")

"""``unigeo build``: the Beam job from ``sources.yaml`` to shards, ledger, rejects, manifest and report."""

from __future__ import annotations

import json
import logging
from typing import Any

import click

from unigeo.cli.dataclass_options import click_options, from_kwargs
from unigeo.cli.exits import epilog
from unigeo.cli.options import verbosity
from unigeo.core.errors import AccessError, ReconciliationError, UniGeoError
from unigeo.core.fileio import join
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


DATA_PLANE_ERRORS = ("Channel closed prematurely", "Error parsing message with type")


def data_plane_hint(message: str, beam_args: list[str]) -> str:
    """A line on the 2 GB message limit when a multi-worker local build failed in Beam's gRPC data plane."""
    multi = any(a.startswith("--direct_running_mode") and not a.endswith("in_memory") for a in beam_args)
    if not multi or not any(e in message for e in DATA_PLANE_ERRORS):
        return ""
    return ("a multi-worker local build sends each worker its share of a stage's input as one gRPC message of at "
            "most 2 GB; use more --direct_num_workers, the in-memory mode (no --direct_running_mode), or Dataflow\n")


def reject_share(manifest: dict[str, Any]) -> float:
    """The share of input panoramas that were rejected (0 without inputs)."""
    c = manifest["counts"]["overall"]
    return c["rejected"] / c["inputs"] if c["inputs"] else 0.0


def check_remote(config_path: str, out: str, dry: bool) -> None:
    """Bucket names first (no network), then one quick access of the config's URL and (unless a dry run,
    which never lists ``out``) the output's, so that missing credentials or network fail in seconds.

    Raises:
        ConfigError: an invalid bucket name.
        AccessError: a URL that cannot be reached.
    """
    from unigeo.core.fileio import check_bucket, is_url, probe
    from unigeo.sources.config import load_config

    for url in (config_path, out):
        check_bucket(url)
    probe(config_path)
    if not dry:
        probe(out)
    try:
        cfg = load_config(config_path)
    except UniGeoError:
        return  # the build's own checks report it, in their order (an --out that is a file comes first)
    stores: dict[str, str] = {}  # one input per store (scheme and bucket): credentials and network are per store
    for path in cfg.data_paths:
        if is_url(path):
            stores.setdefault("/".join(path.split("/", 3)[:3]), path)
    for path in stores.values():
        probe(path)  # checks the bucket's name first


def check_inputs(inputs: Any, opts: BuildOptions) -> None:
    """The raster checks of `unigeo plan` (headers and catalogs only), logged; ``PlanError`` for what would leave
    a modality empty, before anything is written."""
    from unigeo.pipeline.plan import Plan, check_plan, input_checks

    plan = input_checks(Plan(), inputs.metros, inputs.aerial, inputs.dsm, opts, inputs.catalogs)
    for line in plan.warnings:
        log.warning("%s", line)
    check_plan(plan)


def dry_run(config_path: str, out: str, opts: BuildOptions, beam_args: list[str]) -> dict[str, Any]:
    """Every check of a build, then the job translated for its runner and not run (``--dry_run=True``);
    nothing under ``out`` changes and a ``gs://`` / ``s3://`` ``out`` is not listed. Returns what
    ``unigeo.pipeline.job.translate`` reports and the layout the build would publish in."""
    from unigeo.outputs import folder
    from unigeo.pipeline.job import check_covering, read_inputs, translate

    folder.check_not_a_file(out)
    inputs = read_inputs(config_path)
    check_inputs(inputs, opts)
    check_covering(inputs.metros, opts.level, opts.max_cells)
    folder.check_output_folder(out, inputs.config.path, inputs.config.data_paths, list_remote=False)
    layout = folder.layout_for(out, opts.layout)
    target = join(out, f"{folder.BUILDS}/{folder.new_build_id()}") if layout == "versioned" else join(
        out, folder.STAGING)
    return {**translate(inputs, target, opts, beam_args), "layout": layout}


def run_build(config_path: str, out: str, opts: BuildOptions, beam_args: list[str]) -> dict[str, Any]:
    """Check everything, run the build job in ``DIR/.unigeo-staging`` (or a new ``DIR/builds/<build-id>``
    for the versioned layout), write its report and then its manifest there, then publish it over the
    earlier build; return the manifest.

    Raises:
        ConfigError, SourceError: bad configuration, an unusable input, or an output folder a build must
            not write into; raised before anything under ``out`` changes.
        ReconciliationError: the job finished but its shards do not hold what its ledger kept and its plan
            gave them; nothing is published, the earlier build under ``out`` is as it was.
        Exception: the job failed; the earlier build under ``out`` is as it was.
    """
    from unigeo.outputs import folder
    from unigeo.outputs.manifest import collect_manifest, write_manifest
    from unigeo.pipeline.job import check_covering, read_inputs, run_job  # Beam is slow to import

    folder.check_not_a_file(out)
    inputs = read_inputs(config_path)
    check_inputs(inputs, opts)
    check_covering(inputs.metros, opts.level, opts.max_cells)
    recovered = folder.recover(out)
    if recovered:
        log.warning("%s", recovered)
    folder.check_output_folder(out, inputs.config.path, inputs.config.data_paths)
    staging = folder.start(out, folder.layout_for(out, opts.layout))
    try:
        found, run = run_job(inputs, staging, opts, beam_args)
        manifest = collect_manifest(staging, inputs.config, inputs.metros, opts.as_dict(), found, run,
                                    folder.prefix_of(out, staging))
        r = manifest["reconciliation"]
        log.info("checked: the %d samples the ledger kept are in the %d shards their plan gave them (%.2f s)",
                 r["samples"], r["shards"], r["seconds"])
        hint = missing_extra(REPORT_MODULES, "report")
        if hint:
            log.warning("report skipped (%s); `unigeo report %s` writes it later", hint, out)
        else:
            from unigeo.outputs.report import build_report

            build_report(staging, manifest)
        write_manifest(staging, manifest)  # last: a staged build with its manifest is complete
    except BaseException:
        folder.abandon(out, staging)
        raise
    folder.publish(out, staging)
    if not hint:
        log.info("report: %s/report/index.html", join(out, manifest["prefix"]).rstrip("/"))
    return manifest


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
               epilog=epilog("build"))
@click.option("--config", "config_path", required=True, help="sources.yaml (local path or gs:// / s3:// URL).")
@click.option("--out", required=True, help="Output folder (local path or URL).")
@click_options(BuildOptions, ImageryOptions, TextOptions)
@verbosity
@click.pass_context
def build(ctx: click.Context, config_path: str, out: str, **values: Any) -> None:
    """Build WebDataset shards from a sources.yaml.

    Flags this command does not know go to Apache Beam, e.g. `--runner DataflowRunner --project P
    --region R --temp_location gs://...`; a flag neither knows is an error. The runner is DirectRunner
    unless `--runner` is given.

    Before it publishes, the build checks that every sample the ledger kept is in exactly one shard, the
    one the shard plan gave it; a build that fails the check is not published.
    """
    from unigeo.pipeline.job import unknown_beam_flags

    unknown = unknown_beam_flags(list(ctx.args), [p.opts[0].lstrip("-") for p in ctx.command.params
                                                   if isinstance(p, click.Option)])
    if unknown:
        raise click.UsageError("; ".join(unknown) + ". Flags that neither `unigeo build` nor Beam knows are "
                               "errors (see `unigeo build --help`).", ctx)
    try:
        opts = from_kwargs(BuildOptions, values, imagery=from_kwargs(ImageryOptions, values),
                           text=from_kwargs(TextOptions, values))
    except UniGeoError as e:
        raise click.BadParameter(str(e)) from e
    from unigeo.pipeline.job import check_beam_options, is_dry_run

    problems = check_beam_options(list(ctx.args))
    if problems:
        raise ConfigurationError("Beam pipeline options: " + "; ".join(problems))
    dry = is_dry_run(list(ctx.args))
    try:
        check_remote(config_path, out, dry)
        if dry:
            click.echo(json.dumps(dry_run(config_path, out, opts, list(ctx.args)), indent=2))
            return
    except UniGeoError as e:
        raise cli_error(e) from e
    try:
        manifest = run_build(config_path, out, opts, list(ctx.args))
    except ReconciliationError as e:
        raise click.ClickException(f"build not published: {e}\n{out} holds its earlier build as it was, if it had "
                                   "one") from e
    except UniGeoError as e:
        raise cli_error(e) from e
    except Exception as e:
        log.debug("the build failed", exc_info=True)
        message = f"{type(e).__name__}: {e}"
        raise click.ClickException(f"build failed: {message[:2000]}\n{data_plane_hint(message, ctx.args)}{out} holds "
                                   "its earlier build as it was, if it had one (-v shows the traceback)") from e
    click.echo(format_summary(manifest))
    click.echo(f"manifest: {out.rstrip('/')}/manifest.json"
               + (f" (files in {join(out, manifest['prefix'])})" if manifest.get("prefix") else ""))
    share = reject_share(manifest)
    if share > opts.max_reject_fraction:
        c = manifest["counts"]["overall"]
        raise click.ClickException(
            f"{c['rejected']} of {c['inputs']} panoramas rejected ({share:.1%}), more than --max-reject-fraction "
            f"{opts.max_reject_fraction:g}; the build is written, see {out.rstrip('/')}/report/index.html")


class ConfigurationError(click.ClickException):
    """A configuration or input error found before the build started: exit status 2, like a usage error."""

    exit_code = 2


def cli_error(e: UniGeoError) -> click.ClickException:
    """The command-line error of a build error: exit 1 for a URL that cannot be reached (the configuration may
    be right) and for inputs that would leave a modality empty (as `unigeo plan`), exit 2 for anything else
    found before the build started (configuration, inputs, --out)."""
    from unigeo.pipeline.plan import PlanError

    if isinstance(e, PlanError):
        return click.ClickException("\n".join(e.problems))
    return click.ClickException(str(e)) if isinstance(e, AccessError) else ConfigurationError(str(e))

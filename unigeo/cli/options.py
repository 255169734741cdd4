"""Options shared by several commands."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

size_option = click.option("--size", type=click.Choice(["tiny", "small"]), default="small", show_default=True,
                           help="World size: tiny (~0.2 km2, tests) or small (~4 km2, demo).")
synth_size_option = click.option(
    "--size", type=click.Choice(["tiny", "small", "medium"]), default="small", show_default=True,
    help="World size: tiny (~0.2 km2, tests), small (~4 km2, demo) or medium (42 km2, 13,000 panoramas, "
         "~1,940 locations: enough to train on).")
seed_option = click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random choice.")

_NOISY = ("pyogrio", "rasterio", "fiona", "matplotlib", "urllib3", "PIL", "gcsfs")


def _not_beam_import_noise(record: logging.LogRecord) -> bool:
    # Beam's BigQuery client warns through the root logger, at import, when apitools is absent.
    return not str(record.msg).startswith("apitools not found")


def configure_logging(verbose: int, quiet: int) -> None:
    """-v for debug (Beam's INFO), -vv for Beam's DEBUG too, -q for warnings only; INFO by default."""
    level = max(logging.DEBUG, min(logging.ERROR, logging.INFO - 10 * verbose + 10 * quiet))
    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for handler in logging.getLogger().handlers:
        if _not_beam_import_noise not in handler.filters:
            handler.addFilter(_not_beam_import_noise)
    logging.getLogger().setLevel(level)
    for name in _NOISY:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    # Beam warns about optional GCP clients and logs every stage: its INFO with -v, its DEBUG (each
    # operation of each bundle) with -vv. Its note on each string type hint (our modules' postponed
    # annotations, which it reads as Any) is never shown.
    beam_level = logging.ERROR if not verbose else logging.INFO if verbose == 1 else logging.DEBUG
    logging.getLogger("apache_beam").setLevel(beam_level)
    logging.getLogger("apache_beam.typehints.native_type_compatibility").setLevel(max(beam_level, logging.WARNING))


def _count(ctx: click.Context, param: click.Parameter, value: int) -> int:
    store = ctx.find_root().meta.setdefault("unigeo.verbosity", {"verbose": 0, "quiet": 0})
    store[param.name or ""] += value
    configure_logging(store["verbose"], store["quiet"])
    return value


def verbosity(f: F) -> F:
    """``-v/--verbose`` and ``-q/--quiet``, accepted before or after the command name."""
    f = click.option("-q", "--quiet", count=True, expose_value=False, callback=_count,
                     help="Less log output (repeatable).")(f)
    return click.option("-v", "--verbose", count=True, expose_value=False, callback=_count,
                        help="More log output (repeatable).")(f)

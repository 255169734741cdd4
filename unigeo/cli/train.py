"""``unigeo train`` and ``unigeo eval``: the bundled five-modality trainer (the ``train`` extra)."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import click
from click.core import ParameterSource

from unigeo.cli.build import missing_extra
from unigeo.cli.dataclass_options import click_options
from unigeo.cli.exits import epilog
from unigeo.cli.options import verbosity
from unigeo.core.errors import ConfigError, UniGeoError
from unigeo.model.config import IMAGE_TOWERS, TEXT_TOWERS, ModelConfig, TrainConfig, check_tower

TRAIN_MODULES = ("torch", "tokenizers", "webdataset")


def _require_train_extra() -> None:
    hint = missing_extra(TRAIN_MODULES, "train")
    if hint:
        raise click.ClickException(f"the trainer needs {hint}")


def parse_modalities(value: str) -> tuple[str, ...]:
    """Comma-separated names, checked against the trainer's modality registry."""
    from unigeo.model.modalities import names as registered

    names = tuple(dict.fromkeys(m.strip() for m in value.split(",") if m.strip()))
    unknown = [m for m in names if m not in registered()]
    if unknown:
        raise click.BadParameter(f"unknown modality {', '.join(unknown)}; choose from {','.join(registered())}")
    if len(names) < 2:
        raise click.BadParameter("at least two modalities are needed to align them")
    return names


def tower_option(kind: str, value: str, choices: tuple[str, ...]) -> str:
    """``--image-tower`` / ``--text-tower``: a name, or ``siglip:DIR`` with DIR an existing folder, made absolute."""
    try:
        check_tower(kind, value, choices)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint=f"--{kind}-tower") from e
    if value.startswith("siglip:"):
        folder = value[len("siglip:"):]
        if not os.path.isdir(folder):
            raise click.BadParameter(f"siglip:DIR needs a local folder holding the SigLIP model, got {folder!r}",
                                     param_hint=f"--{kind}-tower")
        return f"siglip:{os.path.abspath(folder)}"
    return value


def run_train(data: str, out: str, explicit: tuple[str, ...] = (), **kw: Any) -> dict[str, Any]:
    """Train with keyword arguments named after the fields of ``TrainConfig`` and ``ModelConfig`` (also
    used by ``unigeo demo``); the seed goes to both. ``explicit``: the options the user gave."""
    from unigeo.model.train import train

    model_keys = {f.name for f in dataclasses.fields(ModelConfig)}
    model_kw = {k: v for k, v in kw.items() if k in model_keys and v is not None}
    train_kw = {k: v for k, v in kw.items() if k not in model_keys - {"seed"} and v is not None}
    try:
        return train(TrainConfig(data=data, out=out, **train_kw), ModelConfig(**model_kw), explicit)
    except ConfigError as e:
        raise click.UsageError(str(e)) from e
    except (UniGeoError, ValueError) as e:
        raise click.ClickException(str(e)) from e


@click.command(name="train", epilog=epilog("train"))
@click.option("--data", required=True, type=click.Path(), help="Build output folder (DIR), local or gs://, s3://.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (RUN).")
@click.option("--modalities", default=None,
              help="Comma-separated modalities to align, at least two [default: every modality of the registry: "
                   "sv,aerial,dsm,text,coords].")
@click_options(TrainConfig, ModelConfig)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@verbosity
def train_command(data: str, out: str, modalities: str | None, no_progress: bool, **kw: Any) -> None:
    """Train the five-modality model on DIR/shards/train; writes RUN/model.pt, config.json, log.jsonl,
    tokenizer.json. Under torchrun, one process per device (DDP)."""
    _require_train_extra()
    names = parse_modalities(modalities) if modalities else None
    kw["image_tower"] = tower_option("image", kw["image_tower"], IMAGE_TOWERS)
    kw["text_tower"] = tower_option("text", kw["text_tower"], TEXT_TOWERS)
    if kw.get("tokenizer") and not os.path.isfile(kw["tokenizer"]):
        raise click.BadParameter(f"{kw['tokenizer']} is not a file", param_hint="--tokenizer")
    ctx = click.get_current_context()
    given = tuple(name for name in (*kw, "modalities")
                  if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT))
    summary = run_train(data, out, explicit=given, modalities=names, progress=not no_progress, **kw)
    if summary["rank"] == 0:
        last = summary["history"][-1] if summary["history"] else None
        if last:
            click.echo(f"trained {len(summary['history'])} epoch(s) on {summary['train_samples']} samples: "
                       f"last epoch loss {last['loss']:.4f}, {last['samples_per_s']:.1f} samples/s")
        click.echo(f"checkpoint: {summary['checkpoint']}\nnext: unigeo eval --data {data} "
                   f"--checkpoint {summary['checkpoint']}")


def run_eval(data: str, checkpoint: str, out: str | None, batch_size: int, device: str,
             examples: int = 12) -> dict[str, Any]:
    from unigeo.model.evaluate import evaluate, format_table

    try:
        metrics = evaluate(data, checkpoint, out, batch_size, device, examples)
    except UniGeoError as e:
        raise click.ClickException(str(e)) from e
    click.echo(format_table(metrics))
    return metrics


@click.command(name="eval", epilog=epilog("eval"))
@click.option("--data", required=True, type=click.Path(), help="Build output folder (DIR).")
@click.option("--checkpoint", required=True, type=click.Path(), help="RUN/model.pt.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder [default: RUN/eval].")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--examples", type=click.IntRange(min=0), default=12, show_default=True,
              help="Retrieval examples on index.html, in all, spread over the query modalities (at least two each).")
@click.option("--json", "as_json", is_flag=True, help="Also print metrics.json.")
@verbosity
def eval_command(data: str, checkpoint: str, out: str | None, batch_size: int, device: str, examples: int,
                 as_json: bool) -> None:
    """Retrieval metrics on DIR/shards/test: every modality pair, geolocation against the cells'
    coordinates and the ensemble; overall, seen and unseen; chance beside each figure."""
    _require_train_extra()
    metrics = run_eval(data, checkpoint, out, batch_size, device, examples)
    if as_json:
        click.echo(json.dumps(metrics, indent=2))

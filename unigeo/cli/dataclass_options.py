"""Click options made from options dataclasses (``unigeo.core.options``): flag, default, help and
range come from the field, so the command line never restates them."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import click

from unigeo.core.options import SPEC, OptionSpec, flag_of, option_fields

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

def _dest(field: dataclasses.Field[Any]) -> str:
    return flag_of(field).replace("-", "_")

def _click_type(hint: Any, spec: OptionSpec) -> Any:
    base = next((a for a in typing.get_args(hint) if a is not type(None)), hint)  # X | None -> X
    if spec.choices is not None:
        return click.Choice(spec.choices)
    if base in (int, float) and spec.min is None and spec.max is None:
        return base
    if base is int:
        return click.IntRange(None if spec.min is None else int(spec.min), None if spec.max is None else int(spec.max),
                              min_open=spec.min_open)
    if base is float:
        return click.FloatRange(spec.min, spec.max, min_open=spec.min_open)
    return click.STRING

def click_options(*classes: type) -> Callable[[F], F]:
    """Add one click option per option field of each dataclass, in declaration order."""

    def decorate(f: F) -> F:
        params = []
        for cls in classes:
            hints = typing.get_type_hints(cls)
            for field in option_fields(cls):
                spec: OptionSpec = field.metadata[SPEC]
                if hints[field.name] is bool:
                    params.append(click.option(f"--{flag_of(field)}", _dest(field), is_flag=True, help=spec.help))
                    continue
                kind = _click_type(hints[field.name], spec)
                params.append(click.option(f"--{flag_of(field)}", _dest(field), type=kind, default=field.default,
                                           show_default=spec.show_default, help=spec.help))

        for param in reversed(params):
            f = param(f)
        return f

    return decorate

def from_kwargs(cls: type[T], kwargs: dict[str, Any], **extra: Any) -> T:
    """An options object from the parsed values of ``click_options(cls)``; ``extra`` fills other fields."""
    values = {field.name: kwargs[_dest(field)] for field in option_fields(cls)}
    return cls(**values, **extra)

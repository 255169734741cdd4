"""Options declared once: a dataclass field carries its default, help text and range.

The command line builds its options from these fields (``unigeo.cli.dataclass_options``), and
``check_ranges`` validates the same ranges when an options object is made in code, so a default, a
bound or a help text is written in one place.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from unigeo.core.errors import ConfigError

SPEC = "unigeo.option"


@dataclass(frozen=True)
class OptionSpec:
    """How a field is offered on the command line and checked.

    Attributes:
        help: one line for ``--help``.
        flag: the long flag without dashes; default: the field name with ``-`` for ``_``.
        min, max: inclusive bounds (``min_open``: exclusive lower bound), None for none.
        show_default: whether ``--help`` prints the default (off where the default is computed).
        choices: the values a string option may take (None: any).
    """

    help: str
    flag: str | None = None
    min: float | None = None
    max: float | None = None
    min_open: bool = False
    show_default: bool = True
    choices: tuple[str, ...] | None = None


def option(default: Any, help: str, **spec: Any) -> Any:
    """A dataclass field that is also a command-line option."""
    return dataclasses.field(default=default, metadata={SPEC: OptionSpec(help, **spec)})


def flag_of(field: dataclasses.Field[Any]) -> str:
    spec: OptionSpec = field.metadata[SPEC]
    return spec.flag or field.name.replace("_", "-")


def option_fields(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields of an options dataclass that are command-line options, in declaration order."""
    return [f for f in dataclasses.fields(cls) if SPEC in f.metadata]


def describe_range(spec: OptionSpec) -> str:
    low = f"{'>' if spec.min_open else '>='} {spec.min:g}" if spec.min is not None else ""
    high = f"<= {spec.max:g}" if spec.max is not None else ""
    return " and ".join(p for p in (low, high) if p)


def check_ranges(obj: Any) -> None:
    """Check every option field of ``obj`` against its declared range.

    Raises:
        ConfigError: naming the flag, the allowed range and the value given.
    """
    for f in option_fields(type(obj)):
        spec: OptionSpec = f.metadata[SPEC]
        value = getattr(obj, f.name)
        if spec.choices is not None and value not in spec.choices:
            raise ConfigError(f"--{flag_of(f)} must be one of {', '.join(spec.choices)}, got {value!r}")
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        low_ok = spec.min is None or (value > spec.min if spec.min_open else value >= spec.min)
        high_ok = spec.max is None or value <= spec.max
        if not (low_ok and high_ok):
            raise ConfigError(f"--{flag_of(f)} must be {describe_range(spec)}, got {value}")

"""Reference pages of the documentation, made from the code: every command's options (from their
declarations), the reject reasons (from ``unigeo.core.reasons``), the sample's members and json fields
(from ``unigeo.core.sample`` and its JSON Schema) and the exit statuses (from ``unigeo.cli.exits``).

``docs/hooks.py`` puts them into the pages at docs build time (a page holds ``<!-- reference: NAME -->``),
so the site never restates what the code declares.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from typing import Any

import click

from unigeo.cli.exits import EXIT_STATUS


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def commands() -> dict[str, click.Command]:
    """The ``unigeo`` commands by name, in the order ``unigeo --help`` lists them."""
    from unigeo.cli import cli

    return dict(sorted(cli.commands.items()))


def _kind(param: click.Option) -> str:
    if param.count:
        return "flag, repeatable"
    if param.is_flag:
        return "flag"
    t = param.type
    if isinstance(t, click.Choice):
        return " \\| ".join(str(c) for c in t.choices)
    if isinstance(t, (click.IntRange, click.FloatRange)):
        return t.name.split()[0] + " " + t._describe_range()
    return t.name


def _default(param: click.Option) -> str:
    if param.is_flag or param.count or param.default is None or param.required:
        return "required" if param.required else ""
    if not param.show_default:
        return "(computed)"
    return f"`{param.default}`"


def options_table(command: click.Command) -> str:
    """One row per option of ``command``: flags, type or choices, default, help."""
    rows = []
    for p in command.params:
        if not isinstance(p, click.Option):
            continue
        flags = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
        rows.append([flags, _kind(p), _default(p), p.help or ""])
    return _table(["option", "type", "default", "meaning"], rows)


def options_page() -> str:
    parts = []
    for name, command in commands().items():
        doc = inspect.cleandoc(command.help or "").split("\n\n")[0].replace("\n", " ")
        usage = " ".join(command.collect_usage_pieces(click.Context(command, info_name=name)))
        parts.append(f"## `unigeo {name}`\n\n{doc}\n\n```\nunigeo {name} {usage}\n```\n\n{options_table(command)}")
    return "\n\n".join(parts) + "\n"


def reject_reasons() -> Iterator[tuple[str, str, str, str]]:
    """(section, constant, reason, meaning) for every reason in ``unigeo.core.reasons``, in source order.

    Raises:
        ValueError: a reason without its ``# meaning`` comment.
    """
    from unigeo.core import reasons

    section = ""
    for line in inspect.getsource(reasons).splitlines():
        heading = re.match(r"#\s*(.+?)\.?$", line)
        if heading:
            section = heading[1]
            continue
        m = re.match(r'([A-Z_]+) = "([a-z_]+)"\s*(?:#\s*(.*))?$', line)
        if m:
            if not m[3]:
                raise ValueError(f"reject reason {m[1]} has no `# meaning` comment in unigeo/core/reasons.py")
            yield section, m[1], m[2], m[3]


def reasons_page() -> str:
    rows = [[f"`{reason}`", meaning, section] for section, _, reason, meaning in reject_reasons()]
    return _table(["reason", "meaning", "where it is decided"], rows) + "\n"


def _schema_rows(schema: dict[str, Any], defs: dict[str, Any], prefix: str = "") -> Iterator[list[str]]:
    required = set(schema.get("required", ()))
    for name, spec in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        ref = spec.get("$ref") or next((o["$ref"] for o in spec.get("oneOf", []) if "$ref" in o), None)
        items_ref = spec.get("items", {}).get("$ref") if isinstance(spec.get("items"), dict) else None
        kind = spec.get("type") or ("one of " + ", ".join(map(str, spec["enum"])) if "enum" in spec else "")
        if ref:
            kind = "object" + (" or null" if "oneOf" in spec else "")
        if items_ref:
            kind = "array of objects"
        yield [f"`{path}`", str(kind), "yes" if name in required else "", spec.get("description", "")]
        target = ref or items_ref
        if target:
            yield from _schema_rows(defs[target.rsplit("/", 1)[1]], defs, path + ("[]." if items_ref else "."))
        elif spec.get("type") == "object":
            yield from _schema_rows(spec, defs, path + ".")


def json_fields() -> list[list[str]]:
    """(path, type, required, description) of every field of the sample json, nested fields included."""
    from unigeo.core.sample import json_schema

    schema = json_schema()
    return list(_schema_rows(schema, schema.get("$defs", {})))


def sample_page() -> str:
    from unigeo.core.sample import MEMBER_DOCS

    members = _table(["member", "holds"], [[f"`{m}`", d] for m, d in MEMBER_DOCS.items()])
    fields = _table(["field", "type", "required", "meaning"], json_fields())
    return f"## Members\n\n{members}\n\n## The `json` member\n\n{fields}\n"


def exit_codes_page() -> str:
    rows = [[f"`unigeo {name}`", str(code), meaning] for name, codes in EXIT_STATUS.items()
            for code, meaning in codes.items()]
    return _table(["command", "exit status", "meaning"], rows) + "\n"


PAGES: dict[str, Callable[[], str]] = {
    "options": options_page,
    "reasons": reasons_page,
    "sample": sample_page,
    "exit-codes": exit_codes_page,
}

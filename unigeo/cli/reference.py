"""Reference pages of the documentation, made from the code: every command's options (from their
declarations), the reject reasons (from ``unigeo.core.reasons``), the sample's members and json fields
(from ``unigeo.core.sample`` and its JSON Schema) and the exit statuses (from ``unigeo.cli.exits``).

``docs/hooks.py`` puts them into the pages at docs build time (a page holds ``<!-- reference: NAME -->``),
so the site never restates what the code declares.
"""

from __future__ import annotations

import inspect
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
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
        return " | ".join(str(c) for c in t.choices)  # _cell escapes the bars
    if isinstance(t, (click.IntRange, click.FloatRange)):
        return f"{t.name.split()[0]} `{t._describe_range()}`"  # a code span: `0<=x<=1` is not HTML
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


# The benchmark results the docs show; UNIGEO_BENCH_RESULTS points the site at another folder of them.
RESULTS = Path(os.environ.get("UNIGEO_BENCH_RESULTS") or Path(__file__).resolve().parents[2] / "bench" / "results")
RATIO = re.compile(r"(?:^|[._])(?:vs|ratio|growth|share)(?:[._]|$)|speedup")  # a figure that is a ratio


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            yield from _flatten(v, f"{prefix}[{i}]")
    else:
        yield prefix, value


def _load(v: Any) -> str:
    return " / ".join(f"{x:.2f}" for x in v[:3]) if isinstance(v, list) else str(v)


def provenance_line(result: dict[str, Any]) -> str:
    """Where and when a result was measured, in one sentence."""
    p = result["provenance"]
    argv = " ".join(p.get("argv", []))
    return (f"Measured at commit `{p['commit']}` on {p['date']}: {p['cores']} cores ({p['machine']}), Python "
            f"{p['python']}; load average (1/5/15 min) {_load(p['load_average_start'])} at the start and "
            f"{_load(p['load_average_end'])} at the end. Command: `python -m bench.{result['benchmark']}"
            f"{' ' + argv if argv else ''}`.")


def bench_table(result: dict[str, Any]) -> str:
    """Every figure of a result, ratios first (in bold): they carry over to another machine, times do not."""
    rows = [(k, v) for k, v in _flatten({k: v for k, v in result.items() if k not in ("provenance", "benchmark")})]
    ratios = [[f"**{k}**", f"**{v}**"] for k, v in rows if RATIO.search(k)]
    others = [[k, v] for k, v in rows if not RATIO.search(k)]
    return _table(["figure", "value"], ratios + others)


def bench_section(name: str, results: Path | None = None) -> str:
    """The tables of ``bench/results/NAME.json`` with their provenance (``all``: every result file).

    Raises:
        FileNotFoundError: no such result (the docs build then fails: a page names a benchmark never run).
    """
    results = results or RESULTS
    if name == "all":
        files = sorted(results.glob("*.json"))
        return "\n\n".join(f"## {f.stem}\n\n" + bench_section(f.stem, results) for f in files) + "\n"
    result = _result(name, results)
    return f"{provenance_line(result)}\n\n{bench_table(result)}\n"


def _result(name: str, results: Path | None = None) -> dict[str, Any]:
    """``bench/results/NAME.json``.

    Raises:
        FileNotFoundError: no such result (the docs build then fails: a page names a benchmark never run).
    """
    path = (results or RESULTS) / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no result of {name}; run `python -m bench.{name}`")
    return dict(json.loads(path.read_text()))


PAPER_PANORAMAS = 60_000_000  # input panoramas at the paper's scale (~800k cells, 14 metros)
PAPER_SAMPLES = 1_200_000  # a train sample in every cell, a test sample in half of them


def scale_plan_page(results: Path | None = None) -> str:
    """The arithmetic of a build at the paper's scale, from the measured rates of ``bench_scale`` (whole-build
    kept panoramas per CPU-second) and the bytes of ``bench_samples``, taking every panorama as kept (the cap
    of 120 per cell only lowers the work) and one cloud vCPU as one core of the benchmark's machine."""
    scale, samples = _result("bench_scale", results), _result("bench_samples", results)
    rate = scale["build"]["kept_per_cpu_s"]
    imagery_rate = scale["per_core"]["kept_panoramas_rendered_per_s"]
    hours = PAPER_PANORAMAS / rate / 3600
    crop_bytes = samples["standard"].get("bytes_per_crop")
    lines = [
        f"Rates measured at commit `{scale['provenance']['commit']}` ({scale['provenance']['cores']} cores, "
        f"{scale['provenance']['machine']}, load {_load(scale['provenance']['load_average_start'])} at the start):",
        "",
        f"- imagery: {PAPER_PANORAMAS:,} / {rate} kept panoramas per vCPU-second = **{hours:,.0f} vCPU-hours** "
        f"({PAPER_PANORAMAS / imagery_rate / 3600:,.0f} at the imagery stage's own rate, {imagery_rate} per second, "
        "without the per-build costs that weigh heavily on a small build);",
        f"- wall time with N workers of 4 vCPUs: {hours:,.0f} / (4 N) hours: {hours / 200:.1f} h at 50 workers, "
        f"{hours / 400:.1f} h at 100 (plus worker start-up);",
    ]
    for encoding in ("standard", "compact"):
        tiles = samples[encoding]["bytes_per_sample_excluding_crops"]
        if crop_bytes:
            total = PAPER_SAMPLES * tiles + PAPER_PANORAMAS * crop_bytes
            lines.append(f"- shards with `--tile-encoding {encoding}`: {PAPER_SAMPLES:,} samples x {tiles:,} B + "
                         f"{PAPER_PANORAMAS:,} crops x {crop_bytes:,} B = **{total / 1e12:.2f} TB**;")
    lines.append(f"- memory: {scale['peak_rss_mb']:,} MB peak RSS for the benchmark's process, which prepared the "
                 "world, ran the whole job and the report in one process and then measured each part; a build "
                 "process alone is measured by the memory benchmark.")
    return "\n".join(lines) + "\n"


def overture_categories_page() -> str:
    """The table from Overture places categories to the descriptions' words (``sources.pois``)."""
    from unigeo.sources.pois import OVERTURE_CATEGORIES

    return _table(["Overture category", "description's category"],
                  [[f"`{k}`", f"`{v}`"] for k, v in sorted(OVERTURE_CATEGORIES.items())]) + \
        "\nAny other category is kept as Overture writes it (underscores read as spaces).\n"


PAGES: dict[str, Callable[[], str]] = {
    "options": options_page,
    "reasons": reasons_page,
    "sample": sample_page,
    "exit-codes": exit_codes_page,
    "scale-plan": scale_plan_page,
    "overture-categories": overture_categories_page,
}

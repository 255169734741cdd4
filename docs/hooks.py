"""mkdocs hook: fills ``<!-- reference: NAME -->`` with the page ``unigeo.cli.reference`` generates from
the code, and ``<!-- bench: NAME -->`` with the tables of ``bench/results/NAME.json``."""

from __future__ import annotations

import re
from typing import Any

from unigeo.cli.reference import PAGES, bench_section

MARKER = re.compile(r"<!-- (reference|bench): ([\w-]+) -->")


def _fill(match: re.Match[str]) -> str:
    kind, name = match[1], match[2]
    if kind == "reference":
        if name not in PAGES:
            raise ValueError(f"no reference page {name!r} (known: {', '.join(PAGES)})")
        return PAGES[name]()
    return bench_section(name)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return MARKER.sub(_fill, markdown)

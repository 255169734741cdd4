"""Beam counters through one helper: ``inc_counter("assign", "outside_metros")``."""

from __future__ import annotations

import functools
from typing import Any

from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter

NAMESPACE = "unigeo"


@functools.cache
def _counter(name: str) -> Any:
    return Metrics.counter(NAMESPACE, name)


def inc_counter(stage: str, name: str, n: int = 1) -> None:
    """Add ``n`` to the counter ``stage/name`` (records in/out, rejects by reason, ...)."""
    if n:
        _counter(f"{stage}/{name}").inc(n)


def counters(result: Any) -> dict[str, int]:
    """Committed (or attempted, where a runner commits none) UniGeo counters of a finished run."""
    out: dict[str, int] = {}
    for c in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        value = c.committed if c.committed is not None else c.attempted
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(value or 0)
    return dict(sorted(out.items()))

"""What every benchmark records beside its figures (the machine, its load, the date), a process's peak
memory, and how it prints and saves its result."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import time
from typing import Any

import psutil


def machine() -> dict[str, Any]:
    """The date, the cores and processor of this machine, and its load average now."""
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "cores": os.cpu_count(),
            "machine": platform.processor() or platform.machine(), "load_average": os.getloadavg()}


def tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of ``proc`` and every process under it (processes that end meanwhile count 0)."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def measure(argv: list[str], interval: float) -> dict[str, Any]:
    """Run ``argv``; its wall time and the peak RSS of its process tree, sampled every ``interval`` s.

    Raises:
        SystemExit: the command failed (with the end of its stderr).
    """
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, tree_rss(proc))
        time.sleep(interval)
    stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {child.returncode}:\n{stderr[-3000:]}")
    return {"wall_s": round(time.perf_counter() - started, 1), "peak_rss_mb": round(peak / 2**20)}


def emit(result: dict[str, Any], path: str | None) -> None:
    """Add the load average after the run, print ``result`` as JSON and write it to ``path`` if given."""
    result["load_average_after"] = os.getloadavg()
    text = json.dumps(result, indent=2)
    print(text)
    if path:
        with open(path, "w") as f:
            f.write(text + "\n")

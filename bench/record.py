"""What every benchmark records beside its figures (the commit, the machine, its load before and after,
the date), a process's peak memory, and how it prints and saves its result: ``bench/results/NAME.json``,
from which the documentation's benchmark tables are made."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any

import psutil

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def commit() -> str:
    """The commit measured, with ``+dirty`` when tracked files other than results have changes ('unknown'
    outside git)."""
    root = os.path.dirname(RESULTS)
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                                ":(top,exclude)bench/results"],  # results are what benchmarks write, not code
                               cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def machine() -> dict[str, Any]:
    """The date, the cores and processor of this machine, and its load average now."""
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "cores": os.cpu_count(),
            "machine": cpu_model(), "load_average": os.getloadavg()}


STARTED = {**machine(), "commit": commit()}  # when and what the benchmark (which imports this first) started


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


def save(name: str, result: dict[str, Any], path: str | None = None) -> None:
    """Print ``result`` as JSON with where and when it was measured (commit, machine, cores, load average
    at the start and the end, date, command line) and write it to ``path``, by default
    ``bench/results/NAME.json``."""
    record = {"benchmark": name, **result, "provenance": {
        "commit": STARTED["commit"], "date": STARTED["date"], "cores": STARTED["cores"], "machine": STARTED["machine"],
        "python": platform.python_version(), "load_average_start": list(STARTED["load_average"]),
        "load_average_end": list(os.getloadavg()), "argv": sys.argv[1:]}}
    text = json.dumps(record, indent=2)
    print(text)
    path = path or os.path.join(RESULTS, f"{name}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text + "\n")


def emit(result: dict[str, Any], path: str | None, name: str | None = None) -> None:
    """``save`` under the calling benchmark's module name (``bench_x``), or to ``path`` if given."""
    save(name or os.path.splitext(os.path.basename(sys.argv[0]))[0], result, path)

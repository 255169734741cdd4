"""The local runner: Beam's FnApiRunner without the DirectRunner's Prism attempt; multi_processing workers
run ``unigeo.pipeline.worker``."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from unigeo.pipeline.local import LocalRunner, is_direct


def worker(_: int) -> tuple[str, str]:
    """The module the worker process runs, and the job name in the options it was given."""
    main = sys.modules["__main__"]
    options = json.loads(os.environ.get("PIPELINE_OPTIONS", "{}"))
    return (getattr(getattr(main, "__spec__", None), "name", None) or "in-process",
            options.get("beam:option:job_name:v1", options.get("job_name", "")))


def run(args: list[str], expected: tuple[str, str] | None = None, n: int = 4) -> None:
    options = PipelineOptions(args)
    with beam.Pipeline(runner=LocalRunner(), options=options) as p:
        seen = p | beam.Create(list(range(n))) | beam.Reshuffle() | beam.Map(worker)
        if expected:
            assert_that(seen, equal_to([expected] * n))


def test_direct_runner_names() -> None:
    assert all(is_direct(n) for n in ("DirectRunner", "direct", "SwitchingDirectRunner",
                                      "apache_beam.runners.direct.direct_runner.DirectRunner"))
    assert not any(is_direct(n) for n in ("DataflowRunner", "PrismRunner", "FlinkRunner", "BundleBasedDirectRunner"))


@pytest.mark.slow
def test_multi_processing_workers_run_the_unigeo_entry_point_with_the_job_options() -> None:
    run(["--direct_running_mode=multi_processing", "--direct_num_workers=2", "--job_name=unigeo-test"],
        expected=("unigeo.pipeline.worker", "unigeo-test"))


def test_a_run_leaves_nothing_in_the_temporary_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    run([])
    assert list(tmp_path.iterdir()) == []


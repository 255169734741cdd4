"""The local runner: what Beam's DirectRunner runs a batch job on, without its detours.

Beam's ``DirectRunner`` first tries Prism, a separate Go runner it downloads (offline the attempt fails,
leaving a ``beam-temp*`` folder behind in the system's temporary folder; online the job would run on
another engine), then falls back to the ``FnApiRunner`` for batch jobs. ``LocalRunner`` is that
``FnApiRunner``, given the pipeline options the way the DirectRunner gives them, so a local build
always runs on the same engine. It honours ``--direct_running_mode`` and ``--direct_num_workers``.

With ``--direct_running_mode=multi_processing`` each worker process runs ``unigeo.pipeline.worker``:
Beam's SDK harness, which leaves the process at once when the runner is done with it. Beam's own
entry point lets the interpreter wind down first (~0.4 s a worker on 2 cores), and the runner closes
its workers one after the other.

Both multi-worker modes move data over gRPC, and there ``LocalRunner`` turns off the data plane's timed
flush (``DATA_BUFFER_TIME_LIMIT_MS``, 1 s in Beam's runner). That flush runs on a thread of its own and
is not synchronised with the writes: it takes the buffered bytes, waits to enqueue them while the send
queue is full (100 MB), then clears the buffer, discarding what was written meanwhile. A stage whose
input is a large materialised PCollection (the encoded samples, ~1.4 GB in the medium synthetic world)
lost up to a quarter of its elements, silently (``tests/pipeline/test_local.py`` reproduces it on Beam's
stream). Without it the streams flush by size at element boundaries, and an input the runner sends to
a worker travels as one message, as a grouped input already did.
"""

from __future__ import annotations

import shlex
import sys
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability import python_urns
from apache_beam.portability.api import beam_provision_api_pb2, beam_runner_api_pb2
from apache_beam.runners.portability.fn_api_runner import fn_runner, worker_handlers
from apache_beam.runners.portability.portable_runner import JobServiceHandle
from apache_beam.runners.runner import PipelineRunner

DIRECT_RUNNERS = frozenset({"direct", "directrunner", "switchingdirectrunner"})
WORKER_COMMAND = f"{shlex.quote(sys.executable)} -m unigeo.pipeline.worker"


def untimed_data_plane() -> None:
    """Turn off the gRPC data plane's timed flush for the runners and in-process workers created from now
    on (it drops data; see the module's docstring). Beam reads the setting when it starts a run's servers."""
    worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 0


def is_direct(runner: str) -> bool:
    """True for the names Beam accepts for its DirectRunner."""
    return runner.rsplit(".", 1)[-1].lower() in DIRECT_RUNNERS


class _SubprocessWorkers(fn_runner.FnApiRunner):
    """Beam's ``FnApiRunner`` whose multi_processing workers run ``WORKER_COMMAND``."""

    def run_via_runner_api(self, pipeline_proto: beam_runner_api_pb2.Pipeline, options: PipelineOptions) -> Any:
        for env in pipeline_proto.components.environments.values():
            if env.urn == python_urns.SUBPROCESS_SDK:  # multi_processing: Beam's worker command
                env.payload = WORKER_COMMAND.encode()
        return super().run_via_runner_api(pipeline_proto, options)


class LocalRunner(PipelineRunner):
    """Runs each pipeline on an ``FnApiRunner`` given that run's options, as the DirectRunner does; see
    the module's docstring."""

    def run_pipeline(self, pipeline: Any, options: PipelineOptions) -> Any:
        untimed_data_plane()
        encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
        runner = _SubprocessWorkers(provision_info=fn_runner.ExtendedProvisionInfo(
            beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))
        return runner.run_pipeline(pipeline, options)

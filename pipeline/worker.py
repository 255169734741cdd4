"""A worker process of a local ``multi_processing`` build (``python -m unigeo.pipeline.worker``).

It runs Beam's SDK harness until the runner closes it, then leaves without the interpreter's
shutdown: every bundle's outputs are written and committed before the runner lets the harness end, so
nothing is left to flush but the standard streams. A harness that fails raises as Beam's own entry
point does.
"""

from __future__ import annotations

import logging
import os
import sys


def main() -> None:
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(sys.argv)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()

"""Dataflow, checked offline: the build translates for DataflowRunner (``--dry_run=True``), every DoFn
pickles, the worker image is carried and the graph stays small; the Dockerfile matches the launcher's
Beam and Python, and the worker install holds no torch."""

from __future__ import annotations

import json
import re
import sys
from importlib import metadata
from pathlib import Path

import apache_beam as beam
import pytest
from click.testing import CliRunner
from packaging.requirements import Requirement

from unigeo.cli import cli

pytest.importorskip("apache_beam.runners.dataflow.internal.apiclient")
tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "us-central1-docker.pkg.dev/unigeo-test/unigeo/worker:0.1.0"
DATAFLOW = ["--runner", "DataflowRunner", "--dry_run=True", "--project", "unigeo-test", "--region", "us-central1",
            "--temp_location", "gs://unigeo-test/tmp", "--staging_location", "gs://unigeo-test/staging",
            "--sdk_container_image", IMAGE, "--no_auth", "--job_name", "unigeo-dry-run"]
GRAPH_LIMIT = 1_000_000  # bytes; Dataflow refuses job requests above 10 MB


def test_the_build_translates_for_dataflow_without_submitting(tiny_world: Path, tmp_path: Path) -> None:
    out = tmp_path / "never"
    r = CliRunner().invoke(cli, ["-q", "build", "--config", str(tiny_world / "sources.yaml"), "--out",
                                 "gs://unigeo-test/out", *DATAFLOW])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["runner"] == "DataflowRunner" and report["container_images"] == [IMAGE]
    assert report["transforms"] > 50 and 0 < report["graph_bytes"] < GRAPH_LIMIT
    assert not out.exists()


def test_every_dofn_of_the_dataflow_job_unpickles(tiny_world: Path, tmp_path: Path) -> None:
    from apache_beam.internal import pickler
    from apache_beam.portability.api import beam_runner_api_pb2

    from unigeo.pipeline.job import build_pipeline, pipeline_options, read_inputs
    from unigeo.pipeline.options import BuildOptions
    from unigeo.pipeline.staging import stage_inputs

    inputs = read_inputs(str(tiny_world / "sources.yaml"))
    staged = stage_inputs(str(tmp_path), inputs.metros, inputs.pois, inputs.config.pois)
    p = beam.Pipeline(options=pipeline_options(DATAFLOW))
    build_pipeline(p, inputs.config, staged, BuildOptions(), "gs://unigeo-test/out", inputs.aerial, inputs.dsm)
    job = p.run().job  # type: ignore[attr-defined]
    ours = []
    for t in job.proto_pipeline.components.transforms.values():
        if t.spec.urn != "beam:transform:pardo:v1":
            continue
        payload = beam_runner_api_pb2.ParDoPayload.FromString(t.spec.payload)
        if payload.do_fn.urn == "beam:dofn:pickled_python_info:v1":
            fn = pickler.loads(payload.do_fn.payload)
            name = type(fn[0] if isinstance(fn, tuple) else fn).__module__
            ours.append(name)
    assert sum(m.startswith("unigeo.") for m in ours) >= 8, ours
    assert len(job.proto_pipeline.SerializeToString()) < GRAPH_LIMIT


def _pins(text: str, name: str) -> set[str]:
    """The versions a requirements-style text pins ``name`` to (``name==V`` or ``name[extras]==V``)."""
    return set(re.findall(rf"^{re.escape(name)}(?:\[[^\]]*\])?==([\w.]+)", text, re.M))


def test_beam_is_pinned_once_for_launcher_and_workers() -> None:
    """pyproject's pin of apache-beam is the one version: the lock, the worker image and this install agree."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [Requirement(d) for d in deps if Requirement(d).name == "apache-beam"]
    assert len(pins) == 1 and str(pins[0].specifier).startswith("=="), pins
    version = str(pins[0].specifier)[2:]
    assert _pins((ROOT / "constraints.txt").read_text(), "apache-beam") == {version}
    docker = (ROOT / "Dockerfile").read_text()
    assert re.findall(r"^ARG BEAM_VERSION=([\w.]+)\s*$", docker, re.M) == [version]
    assert beam.__version__ == version, "this install ignored the pin: install with -c constraints.txt"


def test_the_worker_image_matches_the_launcher() -> None:
    text = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM apache/beam_python(\d+)\.(\d+)_sdk:\$\{BEAM_VERSION\}\s*$", text, re.M)
    assert base, "the base image must be apache/beam_pythonX.Y_sdk:${BEAM_VERSION}"
    assert (int(base[1]), int(base[2])) == sys.version_info[:2], "workers must run the launcher's Python minor"
    assert re.findall(r"^ARG BEAM_VERSION=([\w.]+)\s*$", text, re.M) == [beam.__version__]
    install = re.search(r"^RUN pip install (.+)$", text, re.M)
    assert install, "the image installs the project with pip"
    assert '-c constraints.txt "apache-beam[gcp]==${BEAM_VERSION}" ".[gcp,s3,report]"' in install[1]
    # The native region decoder builds there: its build script and headers are in the image, and the
    # image's own check imports it. The lock travels with the project.
    copied = {p for line in re.findall(r"^COPY (.+) \S+$", text, re.M) for p in line.split()}
    assert {"pyproject.toml", "setup.py", "unigeo", "constraints.txt"} <= copied
    assert "libjpeg62-turbo-dev" in text and "unigeo._jpegregion" in text


def test_every_install_uses_the_lock() -> None:
    """The README's install, the test command and the worker image all install with constraints.txt, and the
    lock names a version for every package the project asks for."""
    assert '-c constraints.txt -e ".[all]"' in (ROOT / "README.md").read_text()
    assert '-c constraints.txt -e ".[train,dev]"' in (ROOT / "scripts" / "test.sh").read_text()
    lock = (ROOT / "constraints.txt").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(d) for d in project["dependencies"]]
    wanted += [Requirement(d) for extra in project["optional-dependencies"].values() for d in extra]
    missing = sorted({r.name for r in wanted if r.name != "unigeo" and not _pins(lock, r.name.lower())})
    assert not missing, f"constraints.txt has no version for {missing}: run scripts/lock.sh"


def _closure(name: str, extras: frozenset[str], seen: set[str]) -> None:
    key = name.lower().replace("_", "-")
    if key in seen:
        return
    seen.add(key)
    try:
        requires = metadata.requires(name) or []
    except metadata.PackageNotFoundError:
        return
    for line in requires:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
            if req.marker is not None and not extras and "extra" in str(req.marker):
                continue
            _closure(req.name, frozenset(req.extras), seen)


def test_the_worker_install_has_no_torch() -> None:
    """What the Dockerfile installs (the core and the ``gcp`` extra) pulls in no torch, by the installed
    packages' metadata."""
    seen: set[str] = set()
    _closure("unigeo", frozenset({"gcp"}), seen)
    assert {"apache-beam", "rasterio", "webdataset", "gcsfs"} <= seen
    assert "torch" not in seen and "tokenizers" not in seen, sorted(seen)


def _one_line_error(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert "Traceback" not in output and lines and lines[-1].startswith("Error: "), output
    return lines[-1]


@pytest.mark.parametrize(("flags", "names"), [
    (["--project", "p", "--region", "r", "--temp_location", "gs://B/tmp", "--staging_location", "gs://B/staging"],
     ["Invalid GCS bucket (gs://B/tmp)", "temp_location", "staging_location", "Invalid Project ID (p)"]),
    (["--project", "unigeo-test", "--region", "us-central1"], ["--temp_location: required with DataflowRunner"]),
])
def test_beam_option_errors_exit_2_in_one_line_before_any_network(tiny_world: Path, flags: list[str],
                                                                  names: list[str]) -> None:
    """Beam's own validation of Dataflow options (a bad project id, a bucket name Beam refuses, a missing temp
    location) is an exit-2 usage error in one line, found before Beam would try to create a bucket."""
    import time

    started = time.monotonic()
    r = CliRunner().invoke(cli, ["-q", "build", "--config", str(tiny_world / "sources.yaml"), "--out",
                                 "gs://unigeo-test/out", "--runner", "DataflowRunner", "--dry_run=True", *flags])
    elapsed = time.monotonic() - started
    assert r.exit_code == 2, r.output
    line = _one_line_error(r.output)
    assert all(n in line for n in names), line
    assert elapsed < 10, elapsed  # no network retry: Beam's default-bucket creation alone tries for 120 s


def test_an_invalid_bucket_in_a_url_is_a_usage_error(tiny_world: Path) -> None:
    r = CliRunner().invoke(cli, ["-q", "build", "--config", str(tiny_world / "sources.yaml"), "--out",
                                 "gs://My_Bucket/data"])
    assert r.exit_code == 2, r.output
    assert "'My_Bucket' is not a valid gs:// bucket name" in _one_line_error(r.output)


def test_an_unreachable_config_url_fails_in_one_line_with_exit_1(tmp_path: Path) -> None:
    """No credentials and no network: the config's URL is tried once, for a bounded time, and the command
    exits 1 naming the URL and what to check, instead of a client's retries and a long traceback."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "UNIGEO_REMOTE_TIMEOUT_S": "4", "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "none.json"),
           "NO_GCE_CHECK": "true"}
    url = "gs://unigeo-test-no-such-bucket/world/sources.yaml"
    r = subprocess.run([sys.executable, "-m", "unigeo", "-q", "build", "--config", url, "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1, r.stderr
    line = _one_line_error(r.stderr)
    assert url in line and "credentials" in line, line
    assert not (tmp_path / "o").exists()


def test_an_unreachable_input_url_in_a_local_config_fails_in_one_line(tiny_world: Path, tmp_path: Path) -> None:
    """A local sources.yaml whose panorama index lives in a bucket that cannot be reached: exit 1 naming it."""
    import os
    import subprocess
    import sys

    import yaml

    config = yaml.safe_load((tiny_world / "sources.yaml").read_text())
    config["panoramas"] = "gs://unigeo-test-no-such-bucket/panos.parquet"
    config["metros"] = [{**m, "boundary": str(tiny_world / m["boundary"])} for m in config["metros"]]
    for kind in ("aerial", "dsm"):
        config[kind] = [str(tiny_world / r) if isinstance(r, str) else {**r, "path": str(tiny_world / r["path"])}
                        for r in config[kind]]
    if config.get("pois"):
        config["pois"] = str(tiny_world / config["pois"])
    if config.get("dates"):
        config["dates"] = {str(tiny_world / k): v for k, v in config["dates"].items()}
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "UNIGEO_REMOTE_TIMEOUT_S": "4", "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "none.json"),
           "NO_GCE_CHECK": "true"}
    r = subprocess.run([sys.executable, "-m", "unigeo", "-q", "build", "--config", str(path), "--out",
                        str(tmp_path / "o")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "gs://unigeo-test-no-such-bucket/panos.parquet" in _one_line_error(r.stderr)

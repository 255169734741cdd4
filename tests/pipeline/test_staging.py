"""Inputs reach workers through DIR/inputs, not through the job graph: a million POIs leave the graph
small, and what workers unpickle imports neither geopandas nor pyrosm."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import geopandas as gpd
import numpy as np
import pytest
import yaml

from unigeo.pipeline.job import build_pipeline, pipeline_options, read_inputs
from unigeo.pipeline.options import BuildOptions
from unigeo.pipeline.staging import load_metros, load_poi_index, stage_inputs

N_POIS = 1_000_000


def graph(world: Path, out: Path) -> bytes:
    """The build's pipeline proto, as a runner receives it (the job is built, not run)."""
    inputs = read_inputs(str(world / "sources.yaml"))
    staged = stage_inputs(str(out), inputs.metros, inputs.pois, inputs.config.pois)
    p = beam.Pipeline(options=pipeline_options([]))
    build_pipeline(p, inputs.config, staged, BuildOptions(), str(out), inputs.aerial, inputs.dsm)
    return p.to_runner_api().SerializeToString()  # type: ignore[no-any-return]


@pytest.mark.slow
def test_a_million_pois_leave_the_job_graph_under_1_mb(tiny_world: Path, tmp_path: Path) -> None:
    world = tmp_path / "world"
    shutil.copytree(tiny_world, world)
    rng = np.random.default_rng(0)
    pois = gpd.GeoDataFrame({"name": [f"place {i}" for i in range(N_POIS)],
                             "category": rng.choice(["cafe", "school", "bank", "park"], N_POIS)},
                            geometry=gpd.points_from_xy(rng.uniform(-71.09, -71.07, N_POIS),
                                                        rng.uniform(42.34, 42.36, N_POIS)), crs="EPSG:4326")
    pois.to_parquet(world / "pois.parquet")
    config = yaml.safe_load((world / "sources.yaml").read_text())
    config["pois"] = "pois.parquet"
    (world / "sources.yaml").write_text(yaml.safe_dump(config))

    size = len(graph(world, tmp_path / "out"))
    staged = tmp_path / "out" / "inputs" / "pois.parquet"
    assert staged.stat().st_size > 5_000_000  # the POIs are there, on disk
    assert size < 1_000_000, f"job graph is {size} bytes with {N_POIS} POIs"
    index = load_poi_index(str(staged))
    assert index is not None and len(index.ids) == N_POIS


def test_workers_do_not_import_geopandas_pyrosm_or_torch(tiny_world: Path, tmp_path: Path) -> None:
    """Unpickle every DoFn of the job in a fresh interpreter, as a worker does, and list what it imports
    beyond Beam itself (Beam with its GCP extra may import geopandas on its own)."""
    proto = tmp_path / "pipeline.pb"
    proto.write_bytes(graph(tiny_world, tmp_path / "out"))
    code = (
        "import sys\n"
        "import apache_beam as beam\n"
        "from apache_beam.portability.api import beam_runner_api_pb2\n"
        "from apache_beam.options.pipeline_options import PipelineOptions\n"
        f"proto = beam_runner_api_pb2.Pipeline.FromString(open({str(proto)!r}, 'rb').read())\n"
        "before = set(sys.modules)\n"
        "p = beam.Pipeline.from_runner_api(proto, beam.runners.DirectRunner(), PipelineOptions([]))\n"
        "loaded = [m for m in ('geopandas', 'pyrosm', 'matplotlib', 'torch', 'webdataset', 'unigeo.pipeline.job')\n"
        "          if m in sys.modules and m not in before]\n"
        "print('imported:', loaded, 'unigeo modules:', sum(m.startswith('unigeo.pipeline.') for m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "imported: []" in r.stdout and "unigeo modules: 0" not in r.stdout


def test_staged_metros_round_trip_exactly(tiny_world: Path, tmp_path: Path) -> None:
    inputs = read_inputs(str(tiny_world / "sources.yaml"))
    staged = stage_inputs(str(tmp_path), inputs.metros, None, None)
    assert staged.pois is None
    (name, geom), = load_metros(staged.metros)
    assert name == inputs.metros[0].name and geom.equals_exact(inputs.metros[0].geometry, 0.0)

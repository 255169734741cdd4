"""Shared fixtures: a tiny synthetic world (generated once per session) and small real rasters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_bounds

from unigeo.synth.world import write_world

# The one build of the tiny world that tests share (audit, imagery, report, sample format): two
# panoramas per cell so some are not selected, small shards so there are several, two 128-px crops
# per panorama, and a nodata bound that keeps the edge tiles.
TINY_BUILD_ARGS = ("--max-panos", "2", "--shard-max-samples", "4", "--crops-per-pano", "2", "--crop-px", "128",
                   "--max-nodata", "0.6")


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny procedural world, seed 0, with faults."""
    out = tmp_path_factory.mktemp("tiny_world")
    write_world(str(out), size="tiny", seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_build(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``unigeo build`` of the tiny world with ``TINY_BUILD_ARGS``, once per session. Read-only: a
    test that changes a build works on a copy."""
    from click.testing import CliRunner

    from unigeo.cli import cli

    out = tmp_path_factory.mktemp("tiny_build")
    r = CliRunner().invoke(cli, ["-q", "build", "--config", str(tiny_world / "sources.yaml"), "--out", str(out),
                                 *TINY_BUILD_ARGS])
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="session")
def tiny_build_compact(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same build as ``tiny_build`` with ``--tile-encoding compact``. Read-only."""
    from click.testing import CliRunner

    from unigeo.cli import cli

    out = tmp_path_factory.mktemp("tiny_build_compact")
    r = CliRunner().invoke(cli, ["-q", "build", "--config", str(tiny_world / "sources.yaml"), "--out", str(out),
                                 *TINY_BUILD_ARGS, "--tile-encoding", "compact"])
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture
def small_send_queues(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local runner's data plane scaled down 100x: 1 MB send queues (Beam's are 100 MB) and a 5 ms timed
    flush (Beam's runner uses 1 s), so that tens of MB through a job stand for a build of GBs (the medium
    world moves 1.4 GB of samples). In the launcher only: ``multi_processing`` workers keep Beam's."""
    from apache_beam.runners.portability.fn_api_runner import worker_handlers
    from apache_beam.runners.worker import data_plane

    monkeypatch.setattr(data_plane, "_DEFAULT_SEND_QUEUE_MAX_BYTES", 1 << 20)
    monkeypatch.setattr(worker_handlers, "DATA_BUFFER_TIME_LIMIT_MS", 5)


@pytest.fixture(scope="session")
def tiny_world_info(tiny_world: Path) -> dict:
    return json.loads((tiny_world / "world.json").read_text())


def write_geotiff(path: Path, data: np.ndarray, bounds: tuple[float, float, float, float], crs: str | None,
                  nodata: float | None = None, tags: dict[str, str] | None = None) -> Path:
    """A real GeoTIFF with rasterio; ``data`` is (bands, rows, cols)."""
    if data.ndim == 2:
        data = data[None]
    transform = from_bounds(*bounds, data.shape[2], data.shape[1])
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1], "count": data.shape[0],
               "dtype": data.dtype.name, "transform": transform, "nodata": nodata}
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        if tags:
            ds.update_tags(**tags)
    return path


@pytest.fixture
def rgb_64(tmp_path: Path) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(3, 64, 64), dtype=np.uint8)


"""A build folder is read without Beam and without its inputs: ``unigeo audit`` and ``unigeo report``
run in a Python where ``import apache_beam`` fails, on a build whose world was deleted."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from unigeo.cli import cli

# Any import of Beam fails in this interpreter, as in an environment where it is not installed.
NO_BEAM = "import sys; sys.modules['apache_beam'] = None; from unigeo.cli import main; sys.argv[0] = 'unigeo'; main()"


def unigeo_without_beam(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", NO_BEAM, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def orphan_build(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build of a copy of the tiny world; the copy is then deleted."""
    root = tmp_path_factory.mktemp("orphan")
    world = root / "world"
    shutil.copytree(tiny_world, world)
    out = root / "data"
    r = CliRunner().invoke(cli, ["-q", "build", "--config", str(world / "sources.yaml"), "--out", str(out),
                                 "--max-panos", "2"])
    assert r.exit_code == 0, r.output
    shutil.rmtree(world)
    return out


@pytest.mark.slow
def test_report_and_audit_run_without_beam_and_without_the_inputs(orphan_build: Path) -> None:
    shutil.rmtree(orphan_build / "report")
    r = unigeo_without_beam("report", str(orphan_build))
    assert r.returncode == 0, r.stderr
    assert (orphan_build / "report" / "index.html").stat().st_size > 10_000
    report = json.loads((orphan_build / "report" / "report.json").read_text())
    assert report["headline"]["ledger_balances"] and report["metros"][0]["name"] == "riverton"
    assert any(name.startswith("map_split_") for name in report["figures"])
    r = unigeo_without_beam("audit", str(orphan_build))
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(r.stdout)
    assert result["ok"] and result["checked"]["samples"] > 0


def test_the_blocker_really_blocks_beam() -> None:
    r = subprocess.run([sys.executable, "-c", NO_BEAM.replace("from unigeo.cli import main", "import apache_beam")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "apache_beam" in r.stderr

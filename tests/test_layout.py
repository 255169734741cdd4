"""The project's shape: one import package, layers enforced, Beam-free modules that stay so."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import mapped  # noqa: E402


@pytest.mark.slow
def test_the_wheel_installs_one_import_package(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("unigeo-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"unigeo"}
    top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["unigeo"]
    for module in ("unigeo/pipeline/job.py", "unigeo/sources/tiles.py", "unigeo/synth/world.py",
                   "unigeo/model/__init__.py", "unigeo/core/sample.schema.json", "unigeo/outputs/audit.py"):
        assert module in names


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env_tool = str(Path(sys.executable).parent / "lint-imports")
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "mapped.py"), env_tool] if tree == ROOT else
                          [env_tool], cwd=tree, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(tree), "PATH": str(Path(sys.executable).parent)})


def test_layer_contracts_hold_and_catch_beam_in_the_trainer(tmp_path: Path) -> None:
    assert lint_imports(ROOT).returncode == 0
    model = tmp_path / "model"
    model.mkdir()
    (model / "__init__.py").write_text((ROOT / "model" / "__init__.py").read_text())
    (model / "leak.py").write_text("import apache_beam  # noqa: F401\n")
    tree = mapped.link_tree(tmp_path / "tree", replace={"model": model})
    r = lint_imports(tree)
    assert r.returncode != 0 and "unigeo.model is not allowed to import apache_beam" in r.stdout


@pytest.mark.parametrize("module", ["unigeo.pipeline.split", "unigeo.core.sample", "unigeo.outputs.audit",
                                    "unigeo.pipeline.render", "unigeo.model"])
def test_beam_free_modules_do_not_import_beam(module: str) -> None:
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if "|" in line}
    assert module.rsplit(".", 1)[-1] in " ".join(imported)  # the listing is real
    assert not any(m == "apache_beam" or m.startswith("apache_beam.") for m in imported)

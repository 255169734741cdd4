"""Run a tool over the one import package, `unigeo`, whose sub-packages live in top-level folders.

The repository maps `unigeo.pipeline` <- `pipeline/` (and so on) with setuptools' `package-dir`.
mypy and import-linter find packages by walking folders and do not follow the editable install's
import hook, so this links the folders into the layout the imports name (build/mapped/unigeo/...)
and runs the tool in that tree (with the project's pyproject.toml), so it is found first:

    python scripts/mapped.py mypy -p unigeo
    python scripts/mapped.py lint-imports
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def link_tree(dest: Path, root: Path = ROOT, replace: dict[str, Path] | None = None) -> Path:
    """Link ``root``'s folders into ``dest/unigeo`` as the imports name them; ``replace`` maps a
    sub-package name (e.g. ``model``) to another folder to link instead. Returns ``dest``."""
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    if dest.exists():
        shutil.rmtree(dest)
    package = dest / "unigeo"
    package.mkdir(parents=True)
    for entry in (root / "unigeo").iterdir():
        if entry.name != "__pycache__":
            os.symlink(entry, package / entry.name)
    for name, folder in config.get("package-dir", {}).items():
        sub = name.split(".", 1)[1]
        os.symlink((replace or {}).get(sub, root / folder), package / sub)
    os.symlink(root / "pyproject.toml", dest / "pyproject.toml")
    return dest


def run(command: list[str], tree: Path) -> int:
    env = {**os.environ, "MYPYPATH": str(tree),
           "PYTHONPATH": os.pathsep.join([str(tree), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.call(command, cwd=tree, env=env)


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    tool = shutil.which(sys.argv[1], path=os.path.dirname(sys.executable)) or sys.argv[1]
    return run([tool, *sys.argv[2:]], link_tree(ROOT / "build" / "mapped"))


if __name__ == "__main__":
    sys.exit(main())

"""mypy over the one import package, `unigeo`, whose sub-packages live in top-level folders.

The repository maps `unigeo.pipeline` <- `pipeline/` (and so on) with setuptools' `package-dir`;
mypy does not follow an editable install's import hook, so this links the folders into the layout
the imports name (build/typecheck/unigeo/...) and runs `mypy -p unigeo` on it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def link_tree(dest: Path) -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = config.get("package-dir", {})
    if dest.exists():
        shutil.rmtree(dest)
    package = dest / "unigeo"
    package.mkdir(parents=True)
    for entry in (ROOT / "unigeo").iterdir():
        if entry.name != "__pycache__":
            os.symlink(entry, package / entry.name)
    for name, folder in mapped.items():
        os.symlink(ROOT / folder, package / name.split(".", 1)[1])


def main() -> int:
    tree = ROOT / "build" / "typecheck"
    link_tree(tree)
    env = {**os.environ, "MYPYPATH": str(tree)}
    return subprocess.call([sys.executable, "-m", "mypy", "-p", "unigeo", *sys.argv[1:]], cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# Refreshes constraints.txt, the lock of every dependency version that the README's install, the test command
# and the worker image (Dockerfile) install with `-c constraints.txt`. One resolution for Python 3.10 and newer
# on every platform (uv's universal mode); run it after changing a dependency in pyproject.toml, then run the
# test command and commit both files.
set -euo pipefail
cd "$(dirname "$0")/.."
uv="${UV:-uv}"
command -v "$uv" >/dev/null 2>&1 || { echo "uv is needed: pip install uv" >&2; exit 2; }
"$uv" pip compile pyproject.toml --all-extras --universal --python-version 3.10 --quiet \
  --custom-compile-command "bash scripts/lock.sh" -o constraints.txt "$@"

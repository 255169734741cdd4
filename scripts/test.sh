#!/usr/bin/env bash
# The test command of the README: the virtual environment .venv (created if missing), the project with its
# trainer and dev extras at the locked versions, then lint (ruff), types (mypy), import layers (import-linter), the worker image
# (hadolint), the documentation site in strict mode (mkdocs: a broken link or a missing page fails) and the
# test suite (pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# constraints.txt: every dependency at the version the project was tested with (scripts/lock.sh refreshes it).
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[train,dev]"
.venv/bin/ruff check .
.venv/bin/python scripts/mapped.py mypy -p unigeo
.venv/bin/python scripts/mapped.py lint-imports
.venv/bin/hadolint Dockerfile
export NO_MKDOCS_2_WARNING=1  # the theme's notice about its successor, printed on every build
site_dir="$(mktemp -d)"
.venv/bin/mkdocs build --strict --quiet --site-dir "$site_dir"
rm -rf "$site_dir"
.venv/bin/pytest -ra "$@"

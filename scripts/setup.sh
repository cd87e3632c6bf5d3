#!/usr/bin/env bash
# Create .venv (if needed) and install REMADOM with its test and eval extras.
# Torch is installed first as an explicit CPU-friendly pin so that pip does not pull a
# multi-GB CUDA build; override with TORCH_SPEC="torch==X.Y" (or TORCH_SPEC="" to skip).
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
  if [ -n "$TORCH_SPEC" ]; then "$PY" -m pip install --quiet "$TORCH_SPEC"; fi
fi
"$PY" -m pip install --quiet -e ".[test,eval]"
echo "REMADOM installed in .venv ($("$PY" -c 'import remadom; print(remadom.__version__)'))"

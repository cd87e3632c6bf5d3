#!/usr/bin/env bash
# Creates (or completes) benchmarks/.venvs/midas, the interpreter benchmarks/run.py uses for the
# MIDAS adapter: Python 3.11 + torch 2.13.0 (CPU wheel) + scmidas 0.3.0 + REMADOM[eval] (the worker
# imports remadom.eval for the metrics, and scvi). Idempotent: re-running only installs what is
# missing.
#
#   bash benchmarks/envs/setup_midas.sh                 # PYTHON311=/path/to/python3.11 to choose it
#
# Why a separate venv: scmidas 0.3.0 pins torch<2.11, torchvision<0.26, torchaudio<2.11 and
# lightning<2.7. Its code imports neither torchvision nor torchaudio and runs on torch 2.13, so it
# is installed with --no-deps and its real imports are installed one by one below.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# REMADOM_BENCH_VENV_DIR: where the venvs go (default benchmarks/.venvs); outside the checkout they
# survive its removal; then point run.py at them with REMADOM_BENCH_PYTHON_MIDAS=<dir>/midas/bin/python
VENV="${REMADOM_BENCH_VENV_DIR:-$ROOT/benchmarks/.venvs}/midas"
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
SCMIDAS_VERSION=${SCMIDAS_VERSION:-0.3.0}

find_python311() {
    local cand
    for cand in "${PYTHON311:-}" python3.11 python3 /root/.pyenv/shims/python3.11; do
        [[ -n "$cand" ]] || continue
        if "$cand" -c 'import sys; assert sys.version_info[:2] == (3, 11)' >/dev/null 2>&1; then
            echo "$cand"
            return 0
        fi
    done
    return 1
}

if [[ ! -x "$VENV/bin/python" ]]; then
    PY=$(find_python311) || {
        echo "No Python 3.11 found (set PYTHON311=/path/to/python3.11)" >&2
        exit 1
    }
    echo "creating $VENV with $PY"
    mkdir -p "$(dirname "$VENV")"
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check)
PIN="$VENV/midas-pins.txt"
# torch stays at the version installed first; lightning as scmidas asks (<2.7)
printf 'torch==%s\nlightning<2.7\npytorch-lightning<2.7\n' "$TORCH_VERSION" >"$PIN"

"${PIP[@]}" "torch==$TORCH_VERSION"
# not editable: the venv must not depend on this checkout staying where it is; run.py puts the
# running checkout's src/ first on PYTHONPATH for the worker, so the REMADOM in use is always its own
"${PIP[@]}" -c "$PIN" "$ROOT[eval]"
"${PIP[@]}" --no-deps "scmidas==$SCMIDAS_VERSION"
# scmidas' own imports (its metadata also lists torchvision/torchaudio, which it never imports)
"${PIP[@]}" -c "$PIN" "lightning>=2.4,<2.7" "numpy<3" "scipy<2" "pandas<3" "scikit-learn<2" \
    "matplotlib<4" "anndata>=0.10,<0.13" "mudata>=0.3,<0.4" "scanpy>=1.10,<2" "tqdm<5" \
    "requests<3" "toml<1" "natsort>=8,<9"
"$VENV/bin/python" - <<'PY'
import scmidas, scvi, torch, remadom.eval  # noqa: F401
print(f"midas venv ok: scmidas {scmidas.__version__}, scvi-tools {scvi.__version__}, torch {torch.__version__}")
PY

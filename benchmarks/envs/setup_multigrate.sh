#!/usr/bin/env bash
# Creates (or completes) benchmarks/.venvs/multigrate, the interpreter benchmarks/run.py uses for
# the Multigrate adapter: Python 3.12 + torch 2.13.0 + scvi-tools 1.5.1 + multigrate 1.0.1 +
# REMADOM[eval] (the worker imports remadom.eval for the metrics). Idempotent: re-running only
# installs what is missing.
#
#   bash benchmarks/envs/setup_multigrate.sh            # PYTHON312=/path/to/python3.12 to choose it
#
# Why a separate venv: multigrate 1.0.1 and scvi-tools 1.5.1 require Python >= 3.12, the main
# venv is Python 3.11 with scvi-tools 1.4.2.
# torch: PyPI has no CPU-only Linux wheel of torch 2.13.0 for Python 3.12, so this installs the
# PyPI wheel (CUDA 13 build; with its nvidia-* libraries the venv is ~6 GB); it runs on the CPU too.
# It is installed first and pinned, so that nothing later pulls another torch.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# REMADOM_BENCH_VENV_DIR: where the venvs go (default benchmarks/.venvs); outside the checkout they
# survive its removal; then point run.py at them with REMADOM_BENCH_PYTHON_MULTIGRATE=<dir>/multigrate/bin/python
VENV="${REMADOM_BENCH_VENV_DIR:-$ROOT/benchmarks/.venvs}/multigrate"
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

find_python312() {
    local cand
    for cand in "${PYTHON312:-}" /root/.pyenv/shims/python3.12 python3.12; do
        [[ -n "$cand" ]] || continue
        if "$cand" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1; then
            echo "$cand"
            return 0
        fi
    done
    if command -v pyenv >/dev/null 2>&1; then
        for cand in "$(pyenv root)"/versions/3.12*/bin/python3.12; do
            if [[ -x "$cand" ]]; then
                echo "$cand"
                return 0
            fi
        done
    fi
    return 1
}

if [[ ! -x "$VENV/bin/python" ]]; then
    PY=$(find_python312) || {
        echo "No Python 3.12 found (set PYTHON312=/path/to/python3.12, or: pyenv install 3.12)" >&2
        exit 1
    }
    echo "creating $VENV with $PY"
    mkdir -p "$(dirname "$VENV")"
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check)
PIN="$VENV/multigrate-pins.txt"
# anndata<0.13: multigrate 1.0.1's organize_multimodal_anndatas calls AnnData(X, dtype=...), an
# argument anndata 0.13 removed (it declares only anndata>=0.12)
printf 'torch==%s\nanndata>=0.12,<0.13\n' "$TORCH_VERSION" >"$PIN"

"${PIP[@]}" "torch==$TORCH_VERSION"
"${PIP[@]}" -c "$PIN" "scvi-tools==1.5.1"
# not editable: the venv must not depend on this checkout staying where it is; run.py puts the
# running checkout's src/ first on PYTHONPATH for the worker, so the REMADOM in use is always its own
"${PIP[@]}" -c "$PIN" "$ROOT[eval]"
# --ignore-requires-python is a no-op on 3.12 (multigrate asks >=3.12); --no-deps so that nothing
# re-resolves torch. Its real imports (torch, numpy, pandas, scipy, anndata, matplotlib, scvi) are
# there by now; of its other declared deps (jax, scanpy, requests, session-info2) only requests is
# missing, installed so that `pip check` is clean (its code imports none of these four).
"${PIP[@]}" --no-deps --ignore-requires-python "multigrate==1.0.1"
"${PIP[@]}" -c "$PIN" requests
"$VENV/bin/python" - <<'PY'
import multigrate, scvi, torch, remadom.eval  # noqa: F401
print(f"multigrate venv ok: multigrate {multigrate.__version__}, scvi-tools {scvi.__version__}, torch {torch.__version__}")
PY

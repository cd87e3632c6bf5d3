#!/usr/bin/env bash
# One short script with every GPU measurement of issue #14 (about 5-8 minutes on one H100/H200-class GPU).
#   bash benchmarks/gpu_check.sh [OUT_DIR]
# 1. throughput at 100k peaks (synthetic paired 100k cells x 2k genes x 100k peaks), REMADOM fp32 vs bf16-mixed,
#    full vs sampled ATAC likelihood: cells/s per epoch, final validation ELBO (bf16 must match fp32 within ~1 %);
# 2. out of core: 200 steps from the file on disk vs in memory (benchmarks/out_of_core.py): cells/s and peak RSS;
# 3. DDP scaling on 2 GPUs (if two are visible): same data, strategy=ddp, batch per device = batch / 2.
# Results: JSON lines + a log under OUT_DIR. Needs the package importable (PYTHONPATH=src or installed).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${1:-${OUT:-$HERE/results/gpu}}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
export PYTHONPATH="${PYTHONPATH:-$HERE/../src}"
N="${GPU_CHECK_CELLS:-100000}"
EPOCHS="${GPU_CHECK_EPOCHS:-3}"
BATCH="${GPU_CHECK_BATCH:-1024}"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt" || true
# data: streamed to disk once (cached; ~2-3 min on 16 cores for 100k x 100k peaks at 3 %)
$PY -c "
from pathlib import Path
import sys; sys.path.insert(0, '$HERE')
from scale import _synthetic
print(_synthetic('synth', $N, 100000, Path('$OUT/data')))
"
run() {  # name, remadom kwargs json, extra scale.py args
  local name="$1" kw="$2"; shift 2
  timeout 900 $PY "$HERE/scale.py" --data "synth:$N" --methods remadom --epochs "$EPOCHS" --batch-size "$BATCH" \
    --threads 8 --n-peaks 100000 --accelerator gpu --cache-dir "$OUT/data" --out "$OUT/scale_$name.jsonl" \
    --remadom-kwargs "$kw" "$@" 2>&1 | tee "$OUT/$name.log" | tail -n 12
}
# precision: train() defaults to bf16-mixed on GPUs with bf16; fp32 forced for the comparison
run fp32 '{}' --precision 32 || true
run bf16 '{}' || true
run bf16_sampled10 '{"negative_sampling": 0.1}' || true
run multivi_ref '{}' --methods remadom multivi || true
# out of core: the same file read minibatch by minibatch from disk (remadom.data.read_h5ad_backed) vs in memory
for mode in "" "--in-memory"; do
  timeout 600 $PY "$HERE/out_of_core.py" run "$OUT/data/synth_${N}_100000.h5ad" --steps 200 --batch-size "$BATCH" \
    --threads 8 --accelerator gpu --out "$OUT/out_of_core.jsonl" $mode 2>&1 | tail -n 3 || true
done
# DDP scaling: 2 GPUs, same global batch as the 1-GPU bf16 run
if [ "$(nvidia-smi -L 2>/dev/null | wc -l)" -ge 2 ]; then
  run ddp2 '{}' --devices 2 --strategy ddp || true
  $PY - "$OUT" <<'PYEOF' | tee "$OUT/ddp_scaling.txt"
import json, sys
out = sys.argv[1]
one = json.loads(open(f"{out}/scale_bf16.jsonl").readlines()[-1])
two = json.loads(open(f"{out}/scale_ddp2.jsonl").readlines()[-1])
print(f"DDP 2-GPU scaling efficiency: {two['cells_per_s'] / (2 * one['cells_per_s']):.2f} (target >= 0.80)")
PYEOF
else
  echo "one GPU visible: DDP scaling not measured" | tee "$OUT/ddp_scaling.txt"
fi
for f in "$OUT"/scale_*.jsonl; do tail -n 1 "$f"; done | $PY -c "
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print(f\"{r['data']:>14} {r['method']:>8} precision={r.get('precision')} devices={r.get('devices')} \"
          f\"{r['cells_per_s']:>10.0f} cells/s  val ELBO {r['final_elbo_validation']:.2f}  (GPU target 100k cells/s)\")
"
echo "results in $OUT"

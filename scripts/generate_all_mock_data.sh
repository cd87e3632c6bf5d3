#!/usr/bin/env bash
# Write the six mock scenarios to examples/mock/*.h5ad and their configs to configs/examples/.
# Run from the project root. Extra arguments (e.g. --cells 300 --seed 1) go to every call.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
declare -A FILES=(
  [paired]=mock_paired_cite
  [unpaired]=mock_unpaired_rna_atac
  [bridge]=mock_bridge_rna_atac
  [mosaic]=mock_mosaic_multiome
  [prediction]=mock_prediction_rna_to_atac
  [hierarchical]=mock_hierarchical_multistudy
)
for problem in paired unpaired bridge mosaic prediction hierarchical; do
  "$PY" scripts/make_mock_multimodal.py --problem "$problem" \
    --out "examples/mock/${FILES[$problem]}.h5ad" \
    --config-out "configs/examples/mock_${problem}.yaml" \
    --cells 600 --genes 2000 --peaks 60000 --proteins 30 --seed 0 "$@"
done

#!/usr/bin/env bash
# One short GPU measurement (issue 12), for a CUDA machine that is only lent for minutes:
#   - `mmer analyze` real-time factor on CUDA (benchmarks/analyze_speed.py: warm RTF of the shared
#     clips, cold start of the sample clip), fp32 and bf16 network;
#   - training samples/s and inference samples/s of LAMB and LDDU at their paper configs, aligned and
#     unaligned MOSEI shapes, fp32 vs bf16 (benchmarks/throughput.py);
#   - the hardware (nvidia-smi) into benchmarks/results/gpu_cuda.md next to analyze_cuda*.md and
#     throughput_cuda.md.
#
#   benchmarks/gpu.sh                            # on the CUDA machine, from the repository root
#   benchmarks/gpu.sh --device cpu --dry-run     # check the whole path here: one tiny step per case
#                                                # (aligned shapes only, batch 2; the sample clips),
#                                                # results in a temporary folder (printed at the end)
# PYTHON=/path/to/python overrides the interpreter. Exit status: non-zero when any part failed.
set -euo pipefail

DEVICE=cuda
DRY_RUN=0
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    *) echo "gpu.sh: unknown argument $1 (use --device cuda|cpu, --dry-run)" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
OUT=benchmarks/results
THROUGHPUT=(--shapes aligned unaligned --warmup-steps 2 --train-steps 5 --infer-batches 3 --threads 4)
ANALYZE=(--parts warm cold --clip-set all --long-loops 6 --repeats 2)
if [ "$DRY_RUN" = 1 ]; then
  OUT="$(mktemp -d)"
  THROUGHPUT=(--shapes aligned --warmup-steps 0 --train-steps 1 --infer-batches 1 --threads 1 --batch-size 2)
  ANALYZE=(--parts warm --clip-set sample --long-loops 1 --repeats 1)
fi
mkdir -p "$OUT"
status=0

{
  echo "# GPU benchmark machine ($DEVICE)"
  echo
  echo "Written by \`benchmarks/gpu.sh\` on $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse HEAD 2>/dev/null || echo unknown)."
  echo
  echo '```'
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  else
    echo "nvidia-smi: not found (no NVIDIA GPU)"
  fi
  "$PY" -c 'import os, platform, torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "| CPU:", platform.processor() or platform.machine(), os.cpu_count(), "logical CPUs")'
  echo '```'
  echo
  echo "Results: analyze_${DEVICE}.md (fp32 network), analyze_${DEVICE}_bf16.md, throughput_${DEVICE}.md."
} > "$OUT/gpu_${DEVICE}.md"

"$PY" benchmarks/throughput.py --device "$DEVICE" --models lamb lddu \
  --precisions fp32 bf16 "${THROUGHPUT[@]}" --out-dir "$OUT" || status=1
for precision in fp32 bf16; do
  tag=""; [ "$precision" = fp32 ] || tag="_$precision"
  "$PY" benchmarks/analyze_speed.py --device "$DEVICE" --precision "$precision" "${ANALYZE[@]}" \
    --out-dir "$OUT" --tag "$tag" || status=1
done

echo "gpu.sh: results in $OUT (status $status)"
ls "$OUT"
exit $status

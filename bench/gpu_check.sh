#!/usr/bin/env bash
# Run the benchmarks on a CUDA GPU in bf16 and print one table (a few minutes on one GPU).
# Run from anywhere:  bash bench/gpu_check.sh [--json results.json]
# Every option of `python -m bench.gpu_check --help` passes through; PYTHON selects the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python || command -v python3)}

if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "bench/gpu_check.sh: CUDA is not available on this machine; the CPU benchmarks are" \
         "python -m bench.refresh, bench.step, bench.memory and bench.end_to_end" >&2
    exit 2
fi
exec "$PYTHON" -m bench.gpu_check "$@"

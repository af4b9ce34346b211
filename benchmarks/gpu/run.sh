#!/usr/bin/env bash
# The GPU benchmark of issue 16, in one command (≤ 8 minutes on one H100, no network):
#
#   benchmarks/gpu/run.sh [DATA_DIR] [--device cuda|cpu] [--quick]
#
# Uses the machine's own python and torch with PYTHONPATH=src (nothing is installed). MNIST and
# Fashion-MNIST are read from DATA_DIR (default: shared/data, then ../shared/data, then
# $TICKETLAB_DATA). Writes benchmarks/gpu/results-<date>.md with the GPU's name and prints the table.
# `--device cpu --quick` checks the script on a CPU at reduced sizes (its figures are not the
# benchmark's).
#
# The benchmark does not need mnist1d (it trains on MNIST); the gpu-marked tests do. On a machine
# without network, bring it as a wheel prepared beforehand, on a machine with network:
#   pip download --no-deps -d .whl mnist1d==0.0.2.post1
# and install it there with `python -m pip install --no-deps --no-index .whl/mnist1d-*.whl`
# (where the wheel is missing, the tests that need it fail and the table says so).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-python3}"
DATA=""
ARGS=()
for a in "$@"; do
  case "$a" in
    --*|cpu|cuda|cuda:*|auto|mps) ARGS+=("$a") ;;
    *) if [ -z "$DATA" ] && [ -d "$a" ]; then DATA="$a"; else ARGS+=("$a"); fi ;;
  esac
done
if [ -z "$DATA" ]; then
  for d in shared/data ../shared/data "${TICKETLAB_DATA:-}"; do
    if [ -n "$d" ] && [ -d "$d/mnist" ]; then DATA="$d"; break; fi
  done
fi
[ -n "$DATA" ] || { echo "run.sh: no data folder with mnist/ found; pass one" >&2; exit 2; }
export PYTHONPATH=src TICKETLAB_DATA="$DATA"
if [ -d .whl ] && ! "$PY" -c "import mnist1d" 2>/dev/null; then
  "$PY" -m pip install -q --no-deps --no-index .whl/mnist1d-*.whl || true
fi
TESTS="pytest not available"
if "$PY" -c "import pytest" 2>/dev/null; then
  # the gpu-marked tests: on a machine without CUDA they are skipped, with the reason
  TESTS=$(timeout 120 "$PY" -m pytest -q -p no:cacheprovider -m gpu -rs tests/test_device.py tests/test_precision.py tests/test_domains_device.py tests/test_stacked_conv.py tests/test_sparse_train.py tests/test_sparse.py 2>&1 | tail -n 1 || true)
fi
echo "gpu-marked tests: $TESTS"
timeout 360 "$PY" benchmarks/gpu/bench.py --data-dir "$DATA" --tests-summary "$TESTS" "${ARGS[@]}"

#!/usr/bin/env bash
# ticketlab's CPU test suite under another Python and torch than the pinned set-up (issue 16,
# *Dependencies*: the library runs with the torch a GPU machine already has; pyproject.toml says
# torch>=2.4, constraints.txt pins the CPU set-up only).
#
#   benchmarks/compat/run.sh PYTHON TORCH_VERSION [VENV]
#   benchmarks/compat/run.sh python3.12 2.11.0          # the GPU machine's stack: torch 2.11, CUDA 13
#   benchmarks/compat/run.sh python3.11 2.4.1           # the oldest torch pyproject.toml allows
#
# Makes a fresh virtual environment (default /tmp/ticketlab-compat-<torch>), installs torch at that
# version from the package index (on Linux the CUDA wheel and its CUDA packages, several GB) and
# ticketlab with every extra, with torch held at that version, then runs the default test run (`make
# test`'s selection) against ../shared/data. On a machine without a GPU the CUDA tests are skipped, with
# the reason. Prints the versions and pytest's closing line; exits with pytest's status.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 2 ] || { echo "usage: $0 PYTHON TORCH_VERSION [VENV]" >&2; exit 2; }
PY="$1"; TORCH="$2"; VENV="${3:-/tmp/ticketlab-compat-$TORCH}"
rm -rf "$VENV"
"$PY" -m venv "$VENV"
CONSTRAINT="$(mktemp)"
echo "torch==$TORCH" > "$CONSTRAINT"
"$VENV/bin/python" -m pip install -q --upgrade pip
PIP_CONSTRAINT="$CONSTRAINT" "$VENV/bin/python" -m pip install -q -c "$CONSTRAINT" -e ".[dev,dist,rl,nlp,integrations]"
"$VENV/bin/python" -c "import sys, numpy, torch; print(f'python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}), numpy {numpy.__version__}, CUDA available: {torch.cuda.is_available()}')"
export OMP_NUM_THREADS=1 TICKETLAB_DATA="${TICKETLAB_DATA:-$(cd .. && pwd)/shared/data}"
export TICKETLAB_CACHE="$VENV/cache"  # its own calibration and parsed-data cache
"$VENV/bin/python" -m pytest -q -p no:cacheprovider

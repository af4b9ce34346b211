#!/usr/bin/env bash
# Prepare the GPU run on a machine with the package index and ../shared/data (a developer's), so that
# the GPU machine (no network, no ../shared) needs nothing else. Puts into the repository root, both
# ignored through .git/info/exclude so that they travel to the GPU machine only where carried:
#   .whl/      the mnist1d wheel (the gpu-marked tests train on MNIST-1D; the GPU machine lacks it)
#   .gpudata/  MNIST and Fashion-MNIST, copied from ../shared/data (≈41 MB)
# Then prints the one command to run there (benchmarks/gpu/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA="${1:-../shared/data}"
for d in mnist fashion-mnist; do
  [ -d "$DATA/$d" ] || { echo "prepare.sh: $DATA/$d is missing; pass the folder that holds mnist/ and fashion-mnist/" >&2; exit 2; }
done
mkdir -p .git/info
touch .git/info/exclude
for p in /.whl/ /.gpudata/; do grep -qxF "$p" .git/info/exclude || echo "$p" >> .git/info/exclude; done
rm -rf .whl .gpudata
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 -d .whl "mnist1d==0.0.2.post1"
mkdir -p .gpudata
cp -r "$DATA/mnist" "$DATA/fashion-mnist" .gpudata/
du -sh .whl .gpudata
echo 'on the GPU machine (carry: .whl, .gpudata):'
echo '  bash benchmarks/gpu/run.sh .gpudata --out "$OUT/results-$(date +%F).md"'

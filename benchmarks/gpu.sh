#!/usr/bin/env bash
# The GPU rows of docs/performance.md in one go, on a machine with a CUDA GPU and jax[cuda] (from the
# repository root):   bash benchmarks/gpu.sh
# PyTorch columns are left out: they are CPU references, meaningful on the laptop CPU only.
set -euo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
python3 -m benchmarks.ops --no-torch --repeats 50
python3 -m benchmarks.mnist_step --no-torch --rounds 5 --steps 20
python3 benchmarks/tcn.py --no-torch --batch 100 --steps 20 --rounds 3
python3 -m benchmarks.facedet --configs v2_3 v2_4 --image-size 512 --repeats 50

#!/usr/bin/env bash
# The GPU runs of docs/results.md for Tables 5-6: the Single-block TCN on Sequential and Permuted MNIST,
# trained side by side on one GPU with the paper's schedule scaled to STEPS (100 000 / 200 000 = the paper's).
#
#     bash experiments/tcn_gpu_runs.sh STEPS_SEQMNIST STEPS_PMNIST [ROOT=runs/gpu]
#
# Each run writes ROOT/<name>/ (results.json, metrics.jsonl, curves.png, checkpoints/) and ROOT/<name>.log;
# started again with the same arguments, a run resumes from its last checkpoint.
set -euo pipefail
S=$1 P=$2 ROOT=${3:-runs/gpu}
mkdir -p "$ROOT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.4
python3 -m cnnlab train seqmnist --block single --schedule scaled --steps "$S" --no-progress \
  --out "$ROOT/single_seqmnist" >>"$ROOT/single_seqmnist.log" 2>&1 &
python3 -m cnnlab train seqmnist --block single --permuted --schedule scaled --steps "$P" --no-progress \
  --out "$ROOT/single_pmnist" >>"$ROOT/single_pmnist.log" 2>&1 &
wait

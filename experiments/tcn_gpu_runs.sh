#!/usr/bin/env bash
# The GPU runs of docs/results.md for Tables 5-6: the Single-block TCN on Sequential and Permuted MNIST,
# trained side by side on one GPU with the paper's schedule scaled to STEPS (100 000 / 200 000 = the paper's).
#
#     bash experiments/tcn_gpu_runs.sh STEPS_SEQMNIST STEPS_PMNIST [ROOT=runs/gpu]
#
# Each run writes ROOT/<name>/ (results.json, metrics.jsonl, curves.png, checkpoints/) and ROOT/<name>.log.
# Started again with the same arguments, a run resumes from its last checkpoint (every 1 000 steps); a run
# whose results.json exists is finished and is not started again; a run still training is left alone.
#
# Leases shorter than the runs (the device tool: 10 minutes a call, 30 a session) — two settings:
#     WAIT_S=N     return after N seconds; the runs are started in their own process session (setsid), so
#                  they go on training between calls for as long as the machine is held
#     ARCHIVE=F    on return, pack ROOT into the tarball F (checkpoints, metrics and logs), e.g.
#                  ARCHIVE=$OUT/tcn_gpu.tgz; unpack it here and carry ROOT to the next machine to go on there
#     TCN_ARGS="..." more `cnnlab train seqmnist` flags for both runs, e.g. "--dilation exponential" (with
#                  another ROOT)
# The whole procedure for the paper's schedules is in docs/results.md ("Finishing the paper's schedules").
set -euo pipefail
S=$1 P=$2 ROOT=${3:-runs/gpu}
mkdir -p "$ROOT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.4

alive() {  # alive NAME: its recorded pid is a live process training into ROOT/NAME (not a stale pid from an
  # unpacked archive that another process now has)
  local pid
  pid=$(cat "$ROOT/$1.pid" 2>/dev/null) || return 1
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- "--out $ROOT/$1 "
}

start() {  # start NAME STEPS [--permuted]: unless finished or already running
  local name=$1 steps=$2; shift 2
  if [[ -f $ROOT/$name/results.json ]]; then echo "$name: finished"; return; fi
  if alive "$name"; then
    echo "$name: still training"; return
  fi
  # shellcheck disable=SC2086  # TCN_ARGS is a list of flags
  setsid python3 -m cnnlab train seqmnist --block single "$@" --schedule scaled --steps "$steps" --no-progress \
    ${TCN_ARGS:-} --out "$ROOT/$name" >>"$ROOT/$name.log" 2>&1 </dev/null &
  echo $! >"$ROOT/$name.pid"
  echo "$name: started (pid $!), log $ROOT/$name.log"
}

running() {  # true while either run is alive
  alive single_seqmnist || alive single_pmnist
}

start single_seqmnist "$S"
start single_pmnist "$P" --permuted
deadline=$((SECONDS + ${WAIT_S:-1000000000}))
while running && ((SECONDS < deadline)); do sleep 10; done
for name in single_seqmnist single_pmnist; do
  echo "$name: $(grep -o '"step": [0-9]*' "$ROOT/$name/metrics.jsonl" 2>/dev/null | tail -1 || true)"
done
if [[ -n ${ARCHIVE:-} ]]; then
  # Orbax writes a step's files into a temporary folder and renames it when complete: packing while a run
  # trains can only catch a folder that the resume ignores.
  # tar exits 1 when a file changed while it was read (metrics.jsonl, a log): the archive is still good.
  tar -czf "$ARCHIVE" -C "$(dirname "$ROOT")" "$(basename "$ROOT")" || (($? == 1))
  echo "packed $ROOT into $ARCHIVE ($(du -h "$ARCHIVE" | cut -f1))"
fi

#!/usr/bin/env bash
# The fast TCN recipe (`--schedule fast`) against the paper's schedule scaled to the same wall-clock budget,
# on Sequential and Permuted MNIST, three seeds, on one CPU machine (docs/results.md, "fast recipe").
#
#     bash experiments/tcn_cpu_recipes.sh PAPER_STEPS [FAST_STEPS=6000] [ROOT=runs/cpu_recipes] [FLAG ...]
#
# FAST_STEPS: the fast recipe's length (`--schedule fast --steps`); 6 000 fit in 42-44 min on a 2-core AMD
# EPYC Zen 5, where a 2-core Intel Xeon host trained ~2.7x slower (docs/results.md): fit it to the hour on the
# CPU at hand. PAPER_STEPS: the steps of the paper's schedule (`--schedule scaled`) that take as long as one
# fast run on this CPU. The fast recipe has no dropout, so its steps are cheaper than the paper recipe's
# (dropout 0.05): take the fast run's wall time and the paper run's sequences/s from a short run of each.
# FLAGs go to every run (e.g. `--microbatch 20`, faster on CPUs whose caches do not hold a batch of 100);
# the environment variable FAST_FLAGS holds flags for the fast recipe's runs only (e.g.
# FAST_FLAGS="--time-budget 60" fits each fast run to the hour on the CPU at hand, FAST_STEPS then being the
# most steps; FAST_FLAGS="--set weight_decay=0" runs it without its weight decay).
#
# The runs go one at a time, each alone on the machine (its wall time is part of the result), in the order
# of the RUNS list below. Started again with the same arguments, finished runs (results.json) are skipped and
# an interrupted one resumes from its last checkpoint. At the end: one line per finished run (test accuracy,
# engine wall minutes) and ROOT/seqmnist.png, ROOT/pmnist.png with every run's validation curves against
# steps and minutes (`cnnlab plot`).
set -euo pipefail
PAPER_STEPS=$1 FAST_STEPS=${2:-6000} ROOT=${3:-runs/cpu_recipes}
EXTRA=("${@:4}")
read -r -a FAST_EXTRA <<<"${FAST_FLAGS:-}"
TIME=()
[[ -x /usr/bin/time ]] && TIME=(/usr/bin/time -v)  # wall clock and peak memory of the whole command
mkdir -p "$ROOT"

RUNS="fast_seqmnist_s0 paper_seqmnist_s0 fast_pmnist_s0 paper_pmnist_s0
      fast_seqmnist_s1 paper_seqmnist_s1 fast_pmnist_s1 paper_pmnist_s1
      fast_seqmnist_s2 paper_seqmnist_s2 fast_pmnist_s2 paper_pmnist_s2"

for name in $RUNS; do
  IFS=_ read -r recipe task seed <<<"$name"
  if [[ -f $ROOT/$name/results.json ]]; then continue; fi
  flags=(--seed "${seed#s}" --no-progress --out "$ROOT/$name" "${EXTRA[@]}")
  [[ $task == pmnist ]] && flags+=(--permuted)
  if [[ $recipe == fast ]]; then
    flags+=(--schedule fast --steps "$FAST_STEPS" "${FAST_EXTRA[@]}")
  else
    flags+=(--block single --schedule scaled --steps "$PAPER_STEPS")
  fi
  echo "$name: started $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$ROOT/$name.log"
  echo "python3 -m cnnlab train seqmnist ${flags[*]}" >>"$ROOT/$name.log"
  "${TIME[@]}" python3 -m cnnlab train seqmnist "${flags[@]}" >>"$ROOT/$name.log" 2>&1
  echo "$name: finished $(date -u +%FT%TZ)" | tee -a "$ROOT/$name.log"
done

for task in seqmnist pmnist; do
  finished=()
  for name in $RUNS; do
    [[ $name == *_${task}_* && -f $ROOT/$name/results.json ]] && finished+=("$ROOT/$name")
  done
  ((${#finished[@]})) && python3 -m cnnlab plot "${finished[@]}" --title "$task: fast vs paper recipe" \
    --out "$ROOT/$task.png"
done
python3 - "$ROOT" $RUNS <<'EOF'
import collections, json, statistics, sys
from pathlib import Path
root = Path(sys.argv[1])
groups = collections.defaultdict(list)
for name in sys.argv[2:]:
    path = root / name / "results.json"
    if path.exists():
        r = json.loads(path.read_text())
        groups[name.rsplit("_", 1)[0]].append(100 * r["test_accuracy"])
        print(f"{name:20} test accuracy {100 * r['test_accuracy']:.2f} %  {r['steps']} steps  "
              f"{r['wall_seconds'] / 60:.1f} min  {r['examples_per_second']:.0f} sequences/s")
for group, accs in groups.items():
    print(f"{group:17} {len(accs)} seed(s): mean {statistics.mean(accs):.2f} %, "
          f"min {min(accs):.2f} %, max {max(accs):.2f} %")
EOF

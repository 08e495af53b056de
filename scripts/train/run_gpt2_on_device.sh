#!/usr/bin/env bash
# The GPU-box command for gpt2-co and gpt2-both (scripts/train/train_gpt2_tasks.py co|both): trains several
# variants of TASK in parallel on one GPU (each with its own time cap CAP seconds), ranks them by held-out
# accuracy (train_gpt2_tasks.py rank: co by the Colored Objects top-1, both first by whether every IOI and CO
# target is met) and writes under $OUT: gpt2-TASK_<variant>.tar for the best two (the folder gpt2-TASK/
# without tokenizer.json, which is tests/data/trained/gpt2-ioi/tokenizer.json), summary.txt and logs.txt.
#   run: CAP=400 OUT=out/co bash scripts/train/run_gpt2_on_device.sh co      (from the repository root)
#        CAP=370 OUT=out/both bash scripts/train/run_gpt2_on_device.sh both
#   VARIANTS="name: --args; name2: --args" overrides the task's list below.
set -uo pipefail
TASK=${1:-}
case "$TASK" in
  co) DEFAULT_CAP=420
      DEFAULT="plain: ;
plain_fast: --lr 2e-3 --tokens-per-step 8192 --warmup 500;
plain_l6: --layers 6;
plain_curr: --early-shots 0:1 --early-frac 0.3 --lr 2e-3;
aux: --aux-weight 0.5;
aux_lr2: --aux-weight 0.5 --lr 2e-3;
aux_anneal: --aux-weight 0.5 --aux-until 0.6;
aux_8k: --aux-weight 0.5 --tokens-per-step 8192" ;;
  both) DEFAULT_CAP=370
      DEFAULT="f3: --ioi-frac 0.3 --aux-weight 0.5;
f4: --ioi-frac 0.4 --aux-weight 0.5;
f5: --ioi-frac 0.5 --aux-weight 0.5;
f4_lr2: --ioi-frac 0.4 --aux-weight 0.5 --lr 2e-3;
f4_s7: --ioi-frac 0.4 --aux-weight 0.5 --seed 7;
f5_8k_lr2: --ioi-frac 0.5 --aux-weight 0.5 --tokens-per-step 8192 --lr 2e-3" ;;
  *) echo "usage: [CAP=s] [OUT=dir] [VARIANTS='name: --args; ...'] $0 co|both" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/../.." || exit
OUT=${OUT:-out/$TASK}
WORK=${WORK:-/tmp/$TASK}
CAP=${CAP:-$DEFAULT_CAP}
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
IFS=';' read -r -a specs <<< "$(echo "${VARIANTS:-$DEFAULT}" | tr '\n' ' ')"
names=(); pids=()
for s in "${specs[@]}"; do
  n=$(echo "${s%%:*}" | xargs); a="${s#*:}"
  [ -z "$n" ] && continue
  names+=("$n")
  # shellcheck disable=SC2086
  ( timeout $((CAP + 170)) python3 scripts/train/train_gpt2_tasks.py "$TASK" --out "$WORK/$n" --time-cap "$CAP" \
      --eval-every 2000 --log-every 500 --threads 2 $a > "$WORK/log_$n.txt" 2>&1
    echo "$n finished with exit code $?" ) &
  pids+=($!)
done
while kill -0 "${pids[@]}" 2>/dev/null; do
  sleep 30
  for n in "${names[@]}"; do echo "== $n: $(grep -E 'step [0-9]+ k|eval step' "$WORK/log_$n.txt" | tail -1 | cut -c1-150)"; done
done
for p in "${pids[@]}"; do wait "$p"; done
for n in "${names[@]}"; do echo "######## $n"; cat "$WORK/log_$n.txt"; done > "$OUT/logs.txt"
python3 scripts/train/train_gpt2_tasks.py rank "$TASK" "$WORK" "$OUT" "${names[@]}" | tee "$OUT/summary.txt"
ls -la "$OUT"

#!/usr/bin/env bash
# The GPU-box command for gpt2-both (scripts/train/train_both_model.py): trains several variants in parallel
# on one GPU (each with its own time cap CAP seconds), ranks them by held-out accuracy on both tasks (first
# whether every target is met: IOI top-1 and IO > S >= 0.95 on the 1,000 generated prompts and on
# ioi_dataset.jsonl's 40, Colored Objects top-1 >= 0.9 on the 1,000 generated and co_dataset.jsonl's 40; then
# the smallest of those accuracies; then the sum of the two tasks' mean logit differences) and writes under
# $OUT: gpt2-both_<variant>.tar for the best two (the folder gpt2-both/ without tokenizer.json, which is
# tests/data/trained/gpt2-ioi/tokenizer.json), summary.txt and logs.txt.
#   run: CAP=370 OUT=out/both bash scripts/train/run_both_on_device.sh      (from the repository root)
#   VARIANTS="name: --args; name2: --args" overrides the list below.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-out/both}
WORK=${WORK:-/tmp/both}
CAP=${CAP:-370}
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
DEFAULT="f3: --ioi-frac 0.3 --aux-weight 0.5;
f4: --ioi-frac 0.4 --aux-weight 0.5;
f5: --ioi-frac 0.5 --aux-weight 0.5;
f4_lr2: --ioi-frac 0.4 --aux-weight 0.5 --lr 2e-3;
f4_s7: --ioi-frac 0.4 --aux-weight 0.5 --seed 7;
f5_8k_lr2: --ioi-frac 0.5 --aux-weight 0.5 --tokens-per-step 8192 --lr 2e-3"
IFS=';' read -r -a specs <<< "$(echo "${VARIANTS:-$DEFAULT}" | tr '\n' ' ')"
names=(); pids=()
for s in "${specs[@]}"; do
  n=$(echo "${s%%:*}" | xargs); a="${s#*:}"
  [ -z "$n" ] && continue
  names+=("$n")
  # shellcheck disable=SC2086
  ( timeout $((CAP + 150)) python3 scripts/train/train_both_model.py --out "$WORK/$n" --time-cap "$CAP" \
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
python3 - "$WORK" "$OUT" "${names[@]}" <<'PY' | tee "$OUT/summary.txt"
import json, os, subprocess, sys
work, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
res = []
for n in names:
    p = os.path.join(work, n, "gpt2-both", "training.json")
    if not os.path.exists(p):
        print(f"{n}: no result"); continue
    t = json.load(open(p))
    h = t["held_out"]
    ig, idd = h["ioi_generated_1000"], h["ioi_dataset_40"]
    cg, cd = h["co_generated_1shot_1000"], h["co_dataset_40_clean"]
    ioi_min = min(ig["top1"], ig["io_beats_s"], idd["top1"], idd["io_beats_s"])
    co_min = min(cg["top1"], cd["top1"])
    ok = ioi_min >= 0.95 and co_min >= 0.9 and ig["mean_logit_diff"] > 0 and idd["mean_logit_diff"] > 0
    res.append((ok, min(ioi_min, co_min), ig["mean_logit_diff"] + cg["mean_logit_diff"], n))
    print(f"{n}: steps {t['steps']} targets met {ok}\n  IOI gen1000 {json.dumps(ig)}\n  IOI ds40 {json.dumps(idd)}"
          f"\n  CO gen1000 {json.dumps(cg)}\n  CO ds40 {json.dumps(cd)}")
    for e in t["evals_during_training"]:
        r = e[2]
        print(f"    step {e[0]} ({e[1]} s): IOI gen top1 {r['ioi_generated_1000']['top1']} ds {r['ioi_dataset_40']['top1']}"
              f"; CO gen top1 {r['co_generated_1shot_1000']['top1']} ds {r['co_dataset_40_clean']['top1']}")
res.sort(reverse=True)
for r in res[:2]:
    subprocess.run(["tar", "-C", os.path.join(work, r[3]), "--exclude", "tokenizer.json", "-cf",
                    os.path.join(out, f"gpt2-both_{r[3]}.tar"), "gpt2-both"], check=True)
print("ranking:", res)
PY
ls -la "$OUT"

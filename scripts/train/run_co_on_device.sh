#!/usr/bin/env bash
# The GPU-box command for gpt2-co (scripts/train/train_co_model.py): trains several variants in parallel
# on one GPU (each with its own time cap CAP seconds), ranks them by held-out Colored Objects accuracy
# (min of the 1,000 generated prompts' and co_dataset.jsonl's top-1, then mean logit difference) and writes
# under $OUT: gpt2-co_<variant>.tar for the best two (the folder gpt2-co/ without tokenizer.json, which is
# tests/data/trained/gpt2-ioi/tokenizer.json), summary.txt and logs.txt.
#   run: OUT=out/co bash scripts/train/run_co_on_device.sh      (from the repository root)
#   VARIANTS="name: --args; name2: --args" overrides the list below.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-out/co}
WORK=${WORK:-/tmp/co}
CAP=${CAP:-420}
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
DEFAULT="plain: ;
plain_fast: --lr 2e-3 --tokens-per-step 8192 --warmup 500;
plain_l6: --layers 6;
plain_curr: --early-shots 0:1 --early-frac 0.3 --lr 2e-3;
aux: --aux-weight 0.5;
aux_lr2: --aux-weight 0.5 --lr 2e-3;
aux_anneal: --aux-weight 0.5 --aux-until 0.6;
aux_8k: --aux-weight 0.5 --tokens-per-step 8192"
IFS=';' read -r -a specs <<< "$(echo "${VARIANTS:-$DEFAULT}" | tr '\n' ' ')"
names=(); pids=()
for s in "${specs[@]}"; do
  n=$(echo "${s%%:*}" | xargs); a="${s#*:}"
  [ -z "$n" ] && continue
  names+=("$n")
  # shellcheck disable=SC2086
  ( timeout $((CAP + 170)) python3 scripts/train/train_co_model.py --out "$WORK/$n" --time-cap "$CAP" \
      --eval-every 2000 --log-every 500 --threads 2 $a > "$WORK/log_$n.txt" 2>&1
    echo "$n finished with exit code $?" ) &
  pids+=($!)
done
while kill -0 "${pids[@]}" 2>/dev/null; do
  sleep 20
  for n in "${names[@]}"; do echo "== $n: $(grep -E 'step [0-9]+ k' "$WORK/log_$n.txt" | tail -1 | cut -c1-120)"; done
done
for p in "${pids[@]}"; do wait "$p"; done
for n in "${names[@]}"; do echo "######## $n"; cat "$WORK/log_$n.txt"; done > "$OUT/logs.txt"
python3 - "$WORK" "$OUT" "${names[@]}" <<'EOF' | tee "$OUT/summary.txt"
import json, os, subprocess, sys
work, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
res = []
for n in names:
    p = os.path.join(work, n, "gpt2-co", "training.json")
    if not os.path.exists(p):
        print(f"{n}: no result"); continue
    t = json.load(open(p))
    h = t["held_out"]
    g, d = h["generated_1shot_1000"], h["co_dataset_40_clean"]
    res.append((min(g["top1"], d["top1"]), g["mean_logit_diff"], n))
    print(f"{n}: steps {t['steps']} gen1000 {json.dumps(g)} ds40 {json.dumps(d)} corrupted {json.dumps(h['co_dataset_40_corrupted_answer_is_incorrect'])}")
    for e in t["evals_during_training"]:
        print(f"    step {e[0]} ({e[1]} s): gen top1 {e[2]['generated_1shot_1000']['top1']} ds top1 {e[2]['co_dataset_40_clean']['top1']}")
res.sort(reverse=True)
for r in res[:2]:
    subprocess.run(["tar", "-C", os.path.join(work, r[2]), "--exclude", "tokenizer.json", "-cf",
                    os.path.join(out, f"gpt2-co_{r[2]}.tar"), "gpt2-co"], check=True)
print("ranking:", res)
EOF
ls -la "$OUT"

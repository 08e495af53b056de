#!/usr/bin/env bash
# GPU-box benchmark of edge attribution (issue #22, docs/benchmarks.md "Edge attribution (issue #22)"):
# builds mechscope-cli + bench_eap (scripts/device/gpu_build.sh), writes a GPT-2-small-shaped random model
# (synth --preset gpt2-small, fp32) with the GPT-2 tokenizer, generates IOI prompt pairs, then times on the GPU
#   - mechscope-cli eap --method eap|eap-ig --steps 30 (cold process: its `timing:` line and the wall time),
#   - bench_eap in-process (warm: EAP, EAP-IG, the one-forward-per-edge loop and batched exact patching on a
#     sample of edges, extrapolated to every edge) in fp32 and bf16,
#   - the Python port scripts/reference/eap_ref.py --fast on the same model, prompts and GPU.
#   OUT=... [DATASET=ioi_32.jsonl | N=32] [SAMPLE=64] [DTYPES="fp32 bf16"] STAGES="build cli bench python refcheck cpu" scripts/device/eap_bench.sh
# Needs the -dev .debs in .deps/debs (README); DATASET: a JSONL made here (`mechscope-cli dataset ioi --n 32
# --seed 0`), so every machine runs the same prompts. The working tree sent to the device must stay under
# 64 MiB with .deps carried: docs/benchmarks.md "Edge attribution (issue #22)" says how it was run.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$ROOT/out}
STAGES=${STAGES:-"build cli bench python refcheck"}
N=${N:-32}
R=$OUT; mkdir -p $R  # summary.txt only (the device returns at most 8 files); logs and JSON in $L
export PREFIX=/tmp/msdeps
export LD_LIBRARY_PATH="$PREFIX/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
B=$ROOT/build-gpu; CLI=$B/bin/mechscope-cli; W=/tmp/eapbench; L=$W/logs; mkdir -p $L
log() { echo "$*" | tee -a $R/summary.txt; }
has() { [[ " $STAGES " == *" $1 "* ]]; }
t0=$SECONDS
log "$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader) | torch $(python3 -c 'import torch;print(torch.__version__)') | $(nproc) cores"
if has build; then
  # bench_eap needs the engine and analyses only; the CLI comes second so that a CLI error leaves the bench.
  TARGETS="bench_eap" bash "$ROOT/scripts/device/gpu_build.sh" "$B" > $L/build.log 2>&1
  log "build bench_eap rc=$? $((SECONDS-t0)) s"
  cmake --build "$B" -j "$(nproc)" --target mechscope-cli >> $L/build.log 2>&1
  log "build mechscope-cli rc=$? $((SECONDS-t0)) s"; grep -E "error" $L/build.log | head -20 >> $R/summary.txt
fi
M=$W/gpt2-small
if [ ! -f $M/config.json ] && [ -x $CLI ]; then
  $CLI synth --family gpt2 --preset gpt2-small --dtype fp32 --seed 1 --out $M > /dev/null
fi
if [ ! -f $M/config.json ]; then  # no CLI: the same GPT-2-small shape written here (N(0, 0.02) weights, unit norms)
  mkdir -p $M && cp "$ROOT/.deps/gpt2-small-config.json" $M/config.json
  python3 - $M <<'PY'
import sys, torch
from safetensors.torch import save_file
g = torch.Generator().manual_seed(1); r = lambda *s: torch.randn(*s, generator=g) * 0.02
d, L, V = 768, 12, 50257
w = {"transformer.wte.weight": r(V, d), "transformer.wpe.weight": r(1024, d),
     "transformer.ln_f.weight": torch.ones(d), "transformer.ln_f.bias": torch.zeros(d)}
for l in range(L):
    p = f"transformer.h.{l}."
    w.update({p + "ln_1.weight": torch.ones(d), p + "ln_1.bias": torch.zeros(d), p + "ln_2.weight": torch.ones(d), p + "ln_2.bias": torch.zeros(d),
              p + "attn.c_attn.weight": r(d, 3 * d), p + "attn.c_attn.bias": torch.zeros(3 * d), p + "attn.c_proj.weight": r(d, d),
              p + "attn.c_proj.bias": torch.zeros(d), p + "mlp.c_fc.weight": r(d, 4 * d), p + "mlp.c_fc.bias": torch.zeros(4 * d),
              p + "mlp.c_proj.weight": r(4 * d, d), p + "mlp.c_proj.bias": torch.zeros(d)})
save_file(w, sys.argv[1] + "/model.safetensors", metadata={"format": "pt"})
PY
  log "model written by python (no CLI)"
fi
cp "$ROOT/tests/data/trained/gpt2-ioi/tokenizer.json" $M/
D=${DATASET:-$W/ioi_$N.jsonl}
[ -f $D ] || $CLI dataset ioi --model $M --n $N --seed 0 --out $D > $L/dataset.log 2>&1
log "dataset: $(wc -l < $D) prompt pairs, lengths $(python3 -c "import json,collections;print(dict(sorted(collections.Counter(len(json.loads(l)['clean_ids']) for l in open('$D')).items())))")"
DTYPES=${DTYPES:-"fp32 bf16"}
if has cli; then
  for dt in $DTYPES; do
    for m in eap eap-ig; do
      s=$(date +%s.%N)
      $CLI eap --model $M --dataset $D --method $m --steps 30 --device cuda --dtype $dt --json $L/cli_${m}_$dt.json > $L/cli_${m}_$dt.log 2>&1
      rc=$?
      log "cli $m cuda $dt rc=$rc wall $(python3 -c "print(round($(date +%s.%N)-$s,2))") s | $(grep -h '^timing:' $L/cli_${m}_$dt.log)"
      [ $rc = 0 ] || tail -3 $L/cli_${m}_$dt.log >> $R/summary.txt
    done
  done
fi
if has bench; then
  for dt in $DTYPES; do
    timeout 200 $B/bench/bench_eap $M $D cuda $dt ${SAMPLE:-64} 30 256 > $L/bench_$dt.log 2>&1; log "bench_eap cuda $dt rc=$?"
    tail -8 $L/bench_$dt.log >> $R/summary.txt
  done
fi
if has python; then
  python3 "$ROOT/scripts/reference/eap_ref.py" --model $M --dataset $D --n $N --steps 30 --device cuda --fast --no-validate --warmup \
    --out $W/ref_cuda.json > $L/python_cuda.log 2>&1
  log "eap_ref.py --fast cuda rc=$? | $(tr '\n' ' ' < $L/python_cuda.log)"
  python3 - $W/ref_cuda.json $L/cli_eap-ig_fp32.json $L/cli_eap_fp32.json <<'PY' 2>&1 | tee -a $R/summary.txt
import json, sys  # the top edges of the CLI's JSON against the port's scores (same model, same prompts)
ref = json.load(open(sys.argv[1]))
fwd = {n: i for i, n in enumerate(ref["forward_nodes"])}
rec = {}
for i, r in enumerate(ref["receivers"]):
    rec[(r["node"], r["receiver"])] = i
for path, key in ((sys.argv[2], "scores_eap_ig"), (sys.argv[3], "scores_eap")):
    try:
        cli = json.load(open(path))
    except OSError:
        continue
    worst = max(abs(e["score"] - ref[key][fwd[e["upstream"]]][rec[(e["downstream"], e["receiver"])]]) for e in cli["edges"])
    top = max(abs(e["score"]) for e in cli["edges"])
    print(f"{key}: top-{len(cli['edges'])} edges, max |cli - python| {worst:.3g} (largest |score| {top:.3g})")
PY
fi
if has refcheck; then  # --fast on the GPU against the port's default path on the CPU (trained gpt2-ioi, 4 prompts, 3 steps)
  T=$ROOT/tests/data/trained
  python3 "$ROOT/scripts/reference/eap_ref.py" --model $T/gpt2-ioi --dataset $T/references/ioi_dataset.jsonl --n 4 --steps 3 --out $W/chk_slow.json > /dev/null 2>&1
  python3 "$ROOT/scripts/reference/eap_ref.py" --model $T/gpt2-ioi --dataset $T/references/ioi_dataset.jsonl --n 4 --steps 3 --device cuda --fast \
    --out $W/chk_fast.json > /dev/null 2>&1
  python3 -c "
import json, torch
a, b = json.load(open('$W/chk_slow.json')), json.load(open('$W/chk_fast.json'))
for k in ('scores_eap', 'scores_eap_ig'):
    x, y = torch.tensor(a[k]), torch.tensor(b[k])
    print(f'refcheck {k}: max |fast cuda - default cpu| {(x - y).abs().max().item():.3g} (max |score| {x.abs().max().item():.3g})')
" 2>&1 | tee -a $R/summary.txt
fi
if has cpu; then
  for m in eap eap-ig; do
    s=$(date +%s.%N)
    $CLI eap --model $M --dataset $D --method $m --steps 30 --device cpu --json $L/cpu_$m.json > $L/cpu_$m.log 2>&1
    log "cli $m device-cpu rc=$? wall $(python3 -c "print(round($(date +%s.%N)-$s,2))") s | $(grep -h '^timing:' $L/cpu_$m.log)"
  done
  python3 "$ROOT/scripts/reference/eap_ref.py" --model $M --dataset $D --n $N --steps 30 --device cpu --fast --no-validate \
    --out $W/ref_cpu.json > $L/python_cpu.log 2>&1
  log "eap_ref.py --fast device-cpu rc=$? | $(tr '\n' ' ' < $L/python_cpu.log)"
fi
log "total $((SECONDS-t0)) s"

#!/usr/bin/env bash
# Issue #24, "patching at scale": a Llama-2-7B-shaped random bf16 model (`synth --preset llama-7b`), one prompt pair
# of N (1,024) random tokens (the corrupted prompt differs in its middle third), on the H200:
#   - mechscope-cli patch --component head_out (all 1,024 heads, all positions; exact, batched, shared prefix)
#   - mechscope-cli patch --method attribution --per-position (heads × positions by attribution patching)
#   - mechscope-cli patch --method both (attribution next to exact, per head: their agreement)
#   - Hugging Face: a forward-pre-hook loop on o_proj (one patched forward per head) over a sample of heads,
#     extrapolated to all heads; its patched LDs against mechscope's on the same heads.
#   OUT=… [N=1024] [SAMPLE=64] scripts/device/patching_7b.sh
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$ROOT/out}; N=${N:-1024}; SAMPLE=${SAMPLE:-64}
B=$ROOT/build-gpu; CLI=$B/bin/mechscope-cli; M=/tmp/llama7b; W=/tmp/p7b; mkdir -p "$OUT" $W
export PREFIX=/tmp/msdeps LD_LIBRARY_PATH="/tmp/msdeps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
log() { echo "$*" | tee -a "$OUT/summary.txt"; }
t0=$SECONDS
[ -x $CLI ] || { TARGETS=mechscope-cli bash "$ROOT/scripts/device/gpu_build.sh" "$B" >"$OUT/build.log" 2>&1; log "build rc=$? $((SECONDS - t0)) s"; }
[ -f $M/config.json ] || { $CLI synth --family llama --preset llama-7b --dtype bf16 --seed 1 --out $M >"$OUT/synth.log" 2>&1; log "synth rc=$? $((SECONDS - t0)) s $(du -sh $M | cut -f1)"; }
python3 - $N $W <<'PY'
import json, random, sys
n, w = int(sys.argv[1]), sys.argv[2]
random.seed(0)
c = [random.randrange(3, 32000) for _ in range(n)]; x = list(c)
for i in range(n // 3, 2 * n // 3): x[i] = random.randrange(3, 32000)
json.dump([c], open(f"{w}/clean.json", "w")); json.dump([x], open(f"{w}/corrupt.json", "w"))
PY
common="--model $M --clean-ids $W/clean.json --corrupt-ids $W/corrupt.json --answer-ids 5,6 --device cuda --dtype bf16 --component head_out"
for run in "exact:--method exact" "attr_pos:--method attribution --per-position" "both:--method both"; do
  name=${run%%:*}; args=${run#*:}
  /usr/bin/time -f "wall %e s, max RSS %M KB" $CLI patch $common $args --max-batch-rows ${ROWS:-32} --json $W/$name.json >"$OUT/patch_$name.log" 2>&1
  log "patch $name rc=$? | $(grep -hE '^timing|wall' "$OUT/patch_$name.log" | tr '\n' ' ')"
done
python3 - $M $W $SAMPLE <<'PY' 2>&1 | tee -a "$OUT/summary.txt"
import json, sys, time, torch
from transformers import AutoModelForCausalLM
M, W, S = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = time.time()
m = AutoModelForCausalLM.from_pretrained(M, dtype=torch.bfloat16).cuda().eval()
print(f"hf load {time.time() - t:.1f} s")
clean = torch.tensor(json.load(open(f"{W}/clean.json")), device="cuda")
corrupt = torch.tensor(json.load(open(f"{W}/corrupt.json")), device="cuda")
L, H, dh = m.config.num_hidden_layers, m.config.num_attention_heads, m.config.hidden_size // m.config.num_attention_heads
def ld(logits): return (logits[0, -1, 5] - logits[0, -1, 6]).float().item()
saved = {}
def rec(l):
    def f(mod, args): saved[l] = args[0].detach().clone()
    return f
hs = [m.model.layers[l].self_attn.o_proj.register_forward_pre_hook(rec(l)) for l in range(L)]
with torch.no_grad():
    ld_clean = ld(m(clean, logits_to_keep=1).logits)
for h in hs: h.remove()
with torch.no_grad():
    ld_corrupt = ld(m(corrupt, logits_to_keep=1).logits)
mine = json.load(open(f"{W}/exact.json"))
mp = mine["metric_patched"]
heads = [(l, h) for l in range(L) for h in range(H)][:: max(1, (L * H) // S)][:S]
res = []
torch.cuda.synchronize(); t = time.time()
for (l, h) in heads:
    def patch(mod, args, l=l, h=h):
        x = args[0].clone(); x[..., h * dh:(h + 1) * dh] = saved[l][..., h * dh:(h + 1) * dh]; return (x,)
    hook = m.model.layers[l].self_attn.o_proj.register_forward_pre_hook(patch)
    with torch.no_grad():
        res.append(ld(m(corrupt, logits_to_keep=1).logits))
    hook.remove()
torch.cuda.synchronize(); dt = (time.time() - t) / len(heads)
diff = max(abs(r - mp[l][h][0]) for r, (l, h) in zip(res, heads))
print(f"hf hook loop: {len(heads)} heads, {dt:.4f} s per patched forward -> all {L * H} heads {dt * L * H:.1f} s; "
      f"LD clean {ld_clean:.3f} corrupt {ld_corrupt:.3f} (mechscope {mine['metric_clean']:.3f} / {mine['metric_corrupt']:.3f}); "
      f"max |HF - mechscope| patched LD over those heads {diff:.3g}")
both = json.load(open(f"{W}/both.json"))
ex, at = torch.tensor(both["scores"]).flatten(), torch.tensor(both["attribution_scores"]).flatten()
top = ex.abs().argsort(descending=True)[:20]
print(f"attribution vs exact (per head, all positions): corr {torch.corrcoef(torch.stack([ex, at]))[0, 1]:.3f}, "
      f"top-20 exact cells: max |attr - exact| {(at[top] - ex[top]).abs().max():.3g} (max |exact| {ex.abs().max():.3g}), "
      f"sign agreement {(at[top].sign() == ex[top].sign()).float().mean():.2f}")
PY
# Cold-process overhead reported apart (issue #24): sinks and waad-fai at 8K on the qwen3-0.6b shape, CLI timing line.
Q=/tmp/q06; [ -f $Q/config.json ] || $CLI synth --family qwen3 --preset qwen3-0.6b --dtype bf16 --seed 1 --out $Q >/dev/null 2>&1
python3 -c "import json, random; random.seed(1); print(json.dumps([[random.randrange(3, 150000) for _ in range(8192)]]))" >$W/ids8k.json
for a in sinks waad-fai; do
  s=$(date +%s.%N)
  $CLI $a --model $Q --token-ids $W/ids8k.json --no-prepend-bos --device cuda --dtype bf16 --json $W/$a.json >$W/$a.log 2>&1
  log "$a 8K cold process rc=$? wall $(python3 -c "print(round($(date +%s.%N) - $s, 2))") s | $(grep -h '^timing:' $W/$a.log)"
done
log "total $((SECONDS - t0)) s"

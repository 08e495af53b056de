#!/usr/bin/env bash
# Everything left to check on a GPU box after stop 31 (no device was lent that session), in stages that each
# fit one 10-minute call. Run them in order, each call one or two stages:
#   build     engine, core, analysis tests, bench_probe, bench_gpu_forward, mechscope-cli (gpu_build.sh)
#   ratios    issue #24's ratios in one pass: ModelNormCuda.*, ProbeCuda.*, then sinks / waad-fai / constraint-attention /
#             retrieval's prefill at RATIO_LENGTH (131072) with their defaults and HF's sdpa forward on the same model and ids,
#             and all four in-process at 8K against the 8K sdpa forward
#   eightk    the four attention analyses at 8K in-process against HF's 8K sdpa forward (the ratios stage's 8K half)
#   opcount   the ATen ops each attention analysis dispatches at 8K on CUDA, per layer and per named range
#             (bench_gpu_forward with MECHSCOPE_BENCH_OPCOUNT=1; the host's share of a run)
#   machine   what the box is: OS, glibc, cores, disks, which shared libraries a carried HDF5 would need
#   others    constraint-attention and retrieval's prefill at RATIO_LENGTH only
#   farsums   issue #24: the probe's far-sums CUDA kernel: FarSumsCuda.* and ProbeCuda.*, waad-fai at 8K in-process and at
#             128K by the CLI with the kernel and without (MECHSCOPE_PROBE_KERNEL=0), JSON agreement, HF's sdpa at both
#   kernelbench  the far-sums kernel's block shapes timed alone on random bf16 (nvcc build of scripts/device/far_sums_bench.cu)
#   shapes    waad-fai at 8K in-process with each block shape of the far-sums kernel (1: 8 warps × 16 keys, 2: 4 × 32, 3: 8 × 32)
#   quick     waad-fai only (ProbeCuda, 8K in-process, 128K CLI, HF sdpa at both), for a call with little device time left
#   trace     issue #24: Kineto traces (bench_gpu_trace) of sinks and waad-fai at 8K and waad-fai at 128K (TRACES="a:n …"),
#             summed by scripts/device/trace_summary.py; the traces come back gzipped
#   split     issue #23: DevicePlan* and DevicePlanCuda.* (one GPU against the split), every analysis on cuda:0
#             against the split (tests/cli/split_devices.sh), a synth Llama-7B run (split_devices.sh)
#   probe     issue #24: ProbeCuda.* (Moments' flash path against the fp64 pattern), bench_probe WaadFai
#   waadfai   issue #24: waad-fai / sinks / constraint-attention / retrieval's prefill at 8K, 32K, 128K on synth qwen3-0.6b (bf16), LseFirst (MECHSCOPE_PROBE_MOMENTS=0)
#             against Moments (the default on CUDA): JSON agreement and timings; the HF sdpa forward at each length
#   families  RecomputedAttentionCuda, the family tests on CUDA and the LibTorch-2 CPU suites (the relaxed
#             EdgePatching test among them): session_families_eap.sh "parity families"
#   gemm      issue #24: bench_gpu_forward llama-1b bf16 8K against the GEMM rate; scripts/device/sdpa_backends.py
#   kernels   issue #24: ModelNormCuda.*; bench_gpu_forward (llama-1b and qwen3-0.6b, bf16, 8K) with the fused RMSNorm and
#             SDPA's own grouped-query heads each on and off (MECHSCOPE_FUSED_RMSNORM / MECHSCOPE_SDPA_GQA); waad-fai and
#             sinks at 128K with cuDNN's narrow-value normalisers on and off (MECHSCOPE_PROBE_NARROW_V), JSON agreement
#   memory    a load refused for lack of GPU memory: another process holds all but ~20 GiB, then a fp32 7B
#             load must exit 2 before reading weights, and a bf16 one (13.5 GB) must load
#   cpucache  issue #24's CPU caching target on this box's 16 cores and disk: bench_forward (build-gpu reconfigured with the
#             carried .deps/hdf5, see the stage) for CPUCACHE="MODEL:THREADS:ROUNDS …"; CPUCACHE_SUBSETS=no-maps,… adds
#             bench_forward's --read-subsets to the rounds
# 2026-12-06 (sixth session, H100): STAGES="machine build eightk opcount cpucache", then "cpucache", then "ratios" ran
# (docs/benchmarks.md, "H100, 2026-12-06"). Seventh session (H100): BUILD_TARGETS="mechscope_tests_core
# mechscope_tests_engine mechscope-cli" FARSUMS_128K=0 STAGES="build farsums": FarSumsCuda, NearBandCuda (6e21aad's
# per-layer plan), LogitStatsCuda (corrected reference) and ProbeCuda pass; then CPUCACHE="gpt2-small:2:4"
# STAGES="cpucache" (carry .deps/hdf5) timed the sixth caching pass (docs/benchmarks.md). Next: CPUCACHE with more
# rounds and qwen3-0.6b at 2 threads ("qwen3-0.6b:2:3", about 4 minutes), and the in-process 8K ratios again.
# Eighth session (H100): rm -rf build-gpu, then BUILD_TARGETS=mechscope-cli CPUCACHE="qwen3-0.6b:2:3"
# CPUCACHE_VARIANTS=async,fp16 CPUCACHE_TIMEOUT=400 STAGES="build cpucache" (carry .deps/hdf5 AND .deps/debs; cpucache
# needs the build stage first on a fresh box), then "qwen3-0.6b:2:5" async and "gpt2-small:2:8" async,fp16 (seventh
# caching pass in docs/benchmarks.md), then "qwen3-0.6b:2:7" async and, with BUILD_TARGETS=mechscope_core (enough for
# cpucache, 61 s), "qwen3-0.6b:2:3" async,async-tiles. Round medians +17.5 / +22.1 % on two boxes, +33.2 / +35.7 % on
# two whose disk wrote 1.2–1.4 GB/s. Next: masked tiles write one 256 KiB chunk per synchronous O_DIRECT call; coalescing
# consecutive chunk writes in the direct VFD is the lead for making them pay on disk-bound boxes.
# Ninth session (H100, fresh box each time but one): BUILD_TARGETS=mechscope_core STAGES="build cpucache" with
# CPUCACHE="qwen3-0.6b:2:3" CPUCACHE_VARIANTS=async,async-tiles (masked tiles now 4 heads per 1 MiB chunk: still slower,
# the tile copies cost the writer more than the bytes saved); CPUCACHE="gpt2-small:2:8" CPUCACHE_SUBSETS=no-maps,no-result,maps
# (the read's cost: maps ~2/3, hook_result ~1/4); then CPUCACHE_VARIANTS=async,async-wholelogits with "gpt2-small:2:8
# qwen3-0.6b:2:2", "gpt2-small:2:10" and "qwen3-0.6b:2:4" (streamed logits: docs/benchmarks.md, eighth caching pass).
# Next: more qwen3-0.6b rounds on quiet boxes; GPT-2 small's every-hook read (+15 … +21 % against the fused forward) is
# what keeps it above +25 %.
# Tenth session (2026-12-06): the cached attention maps are formed beside the forward when ≥ 2 CPUs are spare
# (MapsPlacement::Auto, bench_forward's -hookedmaps forms them in it), and a dataset's chunks go to the disk 4 at a
# time (-serial: 1). CPUCACHE_VARIANTS=async,async-hookedmaps with "gpt2-small:2:8 qwen3-0.6b:2:2"; the dd line
# now also writes 4 streams at once.
# Earlier plan: STAGES="build kernels", "waadfai probe", "families gemm" (forward switches, cuDNN's normalisers,
# the CUDA family tests).
#   OUT=… STAGES="build split" scripts/device/session_pending.sh
# Eleventh session (H100, two boxes): BUILD_TARGETS=mechscope_core CPUCACHE="gpt2-small:2:8" CPUCACHE_VARIANTS=async,
# async-densemaps,fp16 STAGES="build cpucache", then CPUCACHE="qwen3-0.6b:2:2" CPUCACHE_VARIANTS=async,async-densemaps
# STAGES="cpucache"; on a second box "gpt2-small:2:10" with async,async-densemaps,async-hookedmaps,fp16, then
# "gpt2-small:2:12"; on a third box "gpt2-small:2:10" async,async-densemaps,fp16 (docs/benchmarks.md, tenth pass).
set -uo pipefail
STAGES=${STAGES:-"build split"}
# shellcheck source=scripts/device/stage_lib.sh
source "$(dirname "$0")/stage_lib.sh"
CLI=$B/bin/mechscope-cli
W=/tmp/pending; mkdir -p $W
L1=/tmp/synth-llama-1b Q=$W/qwen3-0.6b  # the synth models the stages time (bf16, seed 1), made on first use
synth() {  # synth DIR FAMILY PRESET
  [ -f "$1/config.json" ] || $CLI synth --family "$2" --preset "$3" --dtype bf16 --seed 1 --out "$1" >/dev/null
}
ids() {  # ids N: N random token ids (seed 0) in $W/ids_N.json
  [ -f $W/ids_$1.json ] || python3 -c "import json,random;random.seed(0);print(json.dumps([[random.randrange(1,150000) for _ in range($1)]]))" >$W/ids_$1.json
}
analysis() {  # analysis NAME N TAG [ENV=…]: one CLI run with the default settings ($W/NAME-N-TAG.json), its timing line logged
  local a=$1 n=$2 t=$3; shift 3; local s=$SECONDS
  env "$@" timeout 300 $CLI $a --model $Q --token-ids $W/ids_$n.json --device cuda --dtype bf16 --json $W/$a-$n-$t.json >$W/$a-$n-$t.log 2>&1
  log "$a n=$n $* rc=$? wall $((SECONDS - s)) s | $(grep -h '^timing:' $W/$a-$n-$t.log) $(grep -h 'differs' $W/$a-$n-$t.log | head -1)"
}
other_analyses() {  # other_analyses N: constraint-attention and retrieval's prefill, the two issue #24 names beside sinks and waad-fai
  local n=$1 s; ids $n; s=$SECONDS
  # constraint-attention: a 40-token constraint, the last 64 positions the response.
  timeout 300 $CLI constraint-attention --model $Q --token-ids $W/ids_$n.json --device cuda --dtype bf16 --constraint-tokens 10:50 \
    --response-start $((n - 64)) --json $W/constraint-$n.json >$W/constraint-$n.log 2>&1
  log "constraint-attention n=$n rc=$? wall $((SECONDS - s)) s | $(grep -h '^timing:' $W/constraint-$n.log)"
  # retrieval's prefill: one test, the needle span at 40 % depth, one decoding step (n − 1 prompt tokens: the step must
  # fit the context, 131,072 for this shape).
  s=$SECONDS; ids $((n - 1))
  timeout 300 $CLI retrieval --model $Q --token-ids $W/ids_$((n - 1)).json --device cuda --dtype bf16 --needle-span $((n * 2 / 5)):$((n * 2 / 5 + 12)) \
    --max-new-tokens 1 --json $W/retrieval-$n.json >$W/retrieval-$n.log 2>&1
  log "retrieval prefill + 1 step n=$n rc=$? wall $((SECONDS - s)) s | $(grep -h '^timing:' $W/retrieval-$n.log)"
}
hf_sdpa() {  # hf_sdpa N: Hugging Face's sdpa forward on the same model and ids, the ratios' denominator
  timeout 300 python3 "$ROOT/scripts/device/attention_bench.py" $Q $W/ids_$1.json --device cuda --impl sdpa >$W/hf_sdpa_$1.log 2>&1
  log "hf sdpa forward n=$1 rc=$? $(tail -1 $W/hf_sdpa_$1.log)"
}
in_process_8k() {  # the 8K target is in-process (warm, best of 5), against the same sdpa forward
  local a
  for a in sinks waad-fai constraint-attention retrieval; do
    timeout 200 "$B/bench/bench_gpu_forward" $Q 8192 cuda bf16 5 $a >"$OUT/inproc_$a.log" 2>&1
    log "in-process 8K $a rc=$? | $(grep -E '^(forward|'"$a"') ' "$OUT/inproc_$a.log" | tr '\n' ' ')"
  done
}
if has build; then
  TARGETS=${BUILD_TARGETS:-"mechscope_tests_engine mechscope_tests_core mechscope_tests_analysis bench_probe bench_gpu_forward mechscope-cli bench_gpu_trace"} \
    bash "$ROOT/scripts/device/gpu_build.sh" "$B" >"$OUT/build.log" 2>&1
  log "build rc=$? $((SECONDS - t0)) s"
  grep -E "error" "$OUT/build.log" | head -20 | tee -a "$OUT/summary.txt"
fi
if has ratios; then  # issue #24's ratios in one pass: every attention analysis with its defaults at 128K and HF's sdpa
  # forward on the same model and ids, then the 8K ones in-process (the waadfai stage also times the old paths)
  "$B/tests/mechscope_tests_engine" --gtest_filter='ModelNormCuda*:ForwardLse*' >"$OUT/model_norm_cuda.log" 2>&1
  log "ModelNormCuda*:ForwardLse* rc=$? $(grep -E '^\[  (PASSED|FAILED|SKIPPED) |Failure|largest error' "$OUT/model_norm_cuda.log" | tr '\n' ' ')"
  "$B/tests/mechscope_tests_core" --gtest_filter='ProbeCuda*' >"$OUT/probe_cuda.log" 2>&1
  log "ProbeCuda* rc=$? $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$OUT/probe_cuda.log" | tr '\n' ' ')"
  synth $Q qwen3 qwen3-0.6b
  n=${RATIO_LENGTH:-131072}; ids $n; ids 8192
  hf_sdpa $n
  analysis sinks $n default; analysis waad-fai $n default
  other_analyses $n
  hf_sdpa 8192
  in_process_8k
  # Moments (the CUDA default) against LseFirst at 8K: the same JSON within the probe's precision
  for a in sinks waad-fai; do
    analysis $a 8192 default; analysis $a 8192 lsefirst MECHSCOPE_PROBE_MOMENTS=0
    python3 "$ROOT/scripts/device/json_max_diff.py" "$W/$a-8192-lsefirst.json" "$W/$a-8192-default.json" "moments vs lsefirst 8K" 2>&1 | tee -a "$OUT/summary.txt"
  done
  # The forward's own normalisers (attn.hook_lse) against the probe computing them: same numbers, one call per layer
  # (COMPARE_LSE=0 skips it: 2026-12-05 found the JSON identical)
  [ "${COMPARE_LSE:-1}" = 1 ] && for a in sinks waad-fai; do
    analysis $a $n probe-lse MECHSCOPE_FORWARD_LSE=0
    python3 "$ROOT/scripts/device/json_max_diff.py" "$W/$a-$n-probe-lse.json" "$W/$a-$n-default.json" "forward lse vs probe lse" 2>&1 | tee -a "$OUT/summary.txt"
  done
fi
if has farsums; then  # issue #24: the probe's far-sums kernel: its CUDA tests, its registers, waad-fai with it and without
  grep -E "farSumsKernel|registers|spill" "$OUT/build.log" 2>/dev/null | grep -B1 -A1 -E "registers" | head -12 | tee -a "$OUT/summary.txt"
  "$B/tests/mechscope_tests_core" --gtest_filter='FarSumsCuda*:NearBandCuda*:LogitStatsCuda*:ProbeCuda*' >"$OUT/far_sums_cuda.log" 2>&1
  log "FarSumsCuda*:NearBandCuda*:LogitStatsCuda*:ProbeCuda* rc=$? $(grep -E '^\[  (PASSED|FAILED|SKIPPED) |Failure|Expected|Which is|actual' "$OUT/far_sums_cuda.log" | head -12 | tr '\n' ' ')"
  synth $Q qwen3 qwen3-0.6b
  ids 8192; ids 131072
  grep -h "largest error" "$OUT/far_sums_cuda.log" | sort | uniq -c | sort -rn | head -8 | tee -a "$OUT/summary.txt"
  for kn in 1 0; do
    MECHSCOPE_PROBE_KERNEL=$kn MECHSCOPE_LOGIT_KERNEL=$kn timeout 200 "$B/bench/bench_gpu_forward" $Q 8192 cuda bf16 5 waad-fai >"$OUT/inproc_waad_k$kn.log" 2>&1
    log "in-process 8K waad-fai kernel=$kn rc=$? | $(grep -E '^(forward|waad-fai) ' "$OUT/inproc_waad_k$kn.log" | tr '\n' ' ')"
  done
  hf_sdpa 8192
  analysis waad-fai 8192 default; analysis waad-fai 8192 nokernel MECHSCOPE_PROBE_KERNEL=0 MECHSCOPE_LOGIT_KERNEL=0
  python3 "$ROOT/scripts/device/json_max_diff.py" "$W/waad-fai-8192-nokernel.json" "$W/waad-fai-8192-default.json" "kernel vs passes 8K" 2>&1 | tee -a "$OUT/summary.txt"
  [ "${FARSUMS_128K:-1}" = 1 ] && analysis waad-fai 131072 default && hf_sdpa 131072
  if [ "${KERNEL_OFF_128K:-1}" = 1 ]; then
    analysis waad-fai 131072 nokernel MECHSCOPE_PROBE_KERNEL=0 MECHSCOPE_LOGIT_KERNEL=0
    python3 "$ROOT/scripts/device/json_max_diff.py" "$W/waad-fai-131072-nokernel.json" "$W/waad-fai-131072-default.json" "kernel vs passes 128K" 2>&1 | tee -a "$OUT/summary.txt"
  fi
fi
if has kernelbench; then  # the far-sums kernel's block shapes timed alone (scripts/device/far_sums_bench.sh)
  bash "$ROOT/scripts/device/far_sums_bench.sh" "$OUT" 2>&1 | tee -a "$OUT/summary.txt"
  rm -f "$OUT/far_sums_bench"
fi
if has shapes; then  # waad-fai at 8K in-process with each block shape of the far-sums kernel (MECHSCOPE_FAR_SUMS_SHAPE)
  synth $Q qwen3 qwen3-0.6b
  for sh in 1 2 3; do
    MECHSCOPE_FAR_SUMS_SHAPE=$sh timeout 200 "$B/bench/bench_gpu_forward" $Q 8192 cuda bf16 5 waad-fai >"$OUT/inproc_waad_shape$sh.log" 2>&1
    log "in-process 8K waad-fai far-sums shape $sh rc=$? | $(grep -E '^(forward|waad-fai) ' "$OUT/inproc_waad_shape$sh.log" | tr '\n' ' ')"
  done
fi
if has quick; then  # waad-fai alone, most telling first (the call may be cut short): ProbeCuda, 8K in-process and HF, 128K and HF
  "$B/tests/mechscope_tests_core" --gtest_filter='ProbeCuda*' >"$OUT/probe_cuda.log" 2>&1
  log "ProbeCuda* rc=$? $(grep -E '^\[  (PASSED|FAILED|SKIPPED) |largest error' "$OUT/probe_cuda.log" | tr '\n' ' ')"
  synth $Q qwen3 qwen3-0.6b
  ids 8192; ids 131072
  timeout 200 "$B/bench/bench_gpu_forward" $Q 8192 cuda bf16 5 waad-fai >"$OUT/inproc_waad-fai.log" 2>&1
  log "in-process 8K waad-fai rc=$? | $(grep -E '^(forward|waad-fai) ' "$OUT/inproc_waad-fai.log" | tr '\n' ' ')"
  hf_sdpa 8192
  analysis waad-fai 131072 default
  hf_sdpa 131072
fi
if has eightk; then  # the 8K half of the ratios stage alone
  synth $Q qwen3 qwen3-0.6b
  ids 8192
  hf_sdpa 8192
  in_process_8k
fi
if has opcount; then  # the host's work: ATen ops per layer and per range of each analysis at 8K on CUDA
  synth $Q qwen3 qwen3-0.6b
  for a in waad-fai sinks; do
    MECHSCOPE_BENCH_OPCOUNT=1 timeout 200 "$B/bench/bench_gpu_forward" $Q 8192 cuda bf16 1 $a >"$OUT/opcount_$a.log" 2>&1
    log "op count 8K $a rc=$?"; grep -E '^(forward alone|'"$a"'), ops|^  in ' "$OUT/opcount_$a.log" | tee -a "$OUT/summary.txt"
  done
fi
if has machine; then  # what the box is, for a CPU-side benchmark on it
  { head -4 /etc/os-release; ldd --version | head -1; nproc; free -g | head -2; df -h /tmp /dev/shm | tail -2
    ls /usr/lib/x86_64-linux-gnu 2>/dev/null | grep -E '^lib(curl|ssl|crypto|sz|aec|hdf5|z)\.so' | tr '\n' ' '; echo
    lscpu | grep -E 'Model name|^CPU\(s\)|Thread|MHz' ; } 2>&1 | tee -a "$OUT/summary.txt"
fi
if has cpucache; then  # issue #24's CPU caching target on this box's CPUs and disk (no emulated virtio disk sharing 2 cores)
  # The box has no HDF5: .deps/hdf5 carries Debian bookworm's libhdf5 1.10.8 (headers, libhdf5_serial.so.103 and
  # the shared libraries it needs, none above GLIBC_2.34: scripts/device/carry_hdf5.sh).
  H=$ROOT/.deps/hdf5; export LD_LIBRARY_PATH="$H/lib:$LD_LIBRARY_PATH"; mkdir -p /tmp/cpucache
  cmake -S "$ROOT" -B "$B" -DMECHSCOPE_HDF5=ON -DHDF5_ROOT="$H" -DHDF5_NO_FIND_PACKAGE_CONFIG_FILE=ON \
    -DHDF5_C_COMPILER_EXECUTABLE=HDF5_C_COMPILER_EXECUTABLE-NOTFOUND >"$OUT/cpucache_cmake.log" 2>&1
  s=$SECONDS; cmake --build "$B" -j "$(nproc)" --target bench_forward >"$OUT/cpucache_build.log" 2>&1
  log "cpucache build rc=$? $((SECONDS - s)) s; disk: $(df -h /tmp | tail -1)"
  for bs in 256K 1M; do  # the disk's O_DIRECT rate at a masked tile's old (one head) and new (four heads) chunk size
    log "dd O_DIRECT bs=$bs: $(dd if=/dev/zero of=/tmp/cpucache/dd bs=$bs count=$((1 << 30 >> $([ $bs = 1M ] && echo 20 || echo 18))) oflag=direct 2>&1 | tail -1)"
    rm -f /tmp/cpucache/dd
  done
  # Four streams at once, as CacheOptions::directWriteThreads' default queues a dataset's chunks (1 GiB in all).
  s=$(date +%s.%N); for i in 1 2 3 4; do dd if=/dev/zero of=/tmp/cpucache/dd$i bs=1M count=256 oflag=direct status=none & done; wait
  log "dd O_DIRECT bs=1M, 4 streams at once: $(python3 -c "print(f'{1.073741824/($(date +%s.%N)-$s):.2f} GB/s')")"; rm -f /tmp/cpucache/dd?
  for spec in ${CPUCACHE:-gpt2-small:2:6 gpt2-small:16:6 qwen3-0.6b:16:3}; do  # MODEL:THREADS:ROUNDS
    IFS=: read -r m th r <<<"$spec"
    MECHSCOPE_THREADS=$th timeout ${CPUCACHE_TIMEOUT:-240} "$B/bench/bench_forward" --models $m --reps 2 --no-eager --dir $W/fwd \
      --cache-dir /tmp/cpucache --cache-variants ${CPUCACHE_VARIANTS:-async,fp16,async-buffered} --rounds $r ${CPUCACHE_SUBSETS:+--read-subsets $CPUCACHE_SUBSETS} >"$OUT/cpucache_${m}_$th.log" 2>&1
    log "cpucache $m threads $th rc=$?"; grep -E -i '^threads|^forward|hook|round|matmul|achieved' "$OUT/cpucache_${m}_$th.log" | head -24 | tee -a "$OUT/summary.txt"
  done
fi
if has others; then  # constraint-attention and retrieval's prefill alone at RATIO_LENGTH (the ratios stage runs them too)
  synth $Q qwen3 qwen3-0.6b
  other_analyses ${RATIO_LENGTH:-131072}
fi
if has trace; then  # where the analyses' time goes: one run each under Kineto (bench_gpu_trace), summed per kernel and range
  synth $Q qwen3 qwen3-0.6b
  for spec in ${TRACES:-sinks:8192 waad-fai:8192 waad-fai:131072}; do
    a=${spec%%:*} n=${spec##*:} t=$W/trace_${a}_$n.json
    MECHSCOPE_BENCH_TRACE=$t timeout 300 "$B/bench/bench_gpu_trace" $Q $n cuda bf16 1 $a >"$OUT/trace_${a}_$n.log" 2>&1
    log "trace $a n=$n rc=$? | $(grep -E '^'"$a"' ' "$OUT/trace_${a}_$n.log")"
    python3 "$ROOT/scripts/device/trace_summary.py" $t --top 25 >"$OUT/trace_${a}_$n.txt" 2>&1
    head -70 "$OUT/trace_${a}_$n.txt" | tee -a "$OUT/summary.txt"
    gzip -c $t >"$OUT/trace_${a}_$n.json.gz"
  done
fi
if has split; then
  OUT=$OUT/split STAGES="engine cli big" bash "$ROOT/scripts/device/split_devices.sh"
  cat "$OUT/split/summary.txt" >>"$OUT/summary.txt"
fi
if has probe; then
  "$B/tests/mechscope_tests_core" --gtest_filter='ProbeCuda*:ProbeMoments*' >"$OUT/probe_cuda.log" 2>&1
  log "ProbeCuda/ProbeMoments rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$OUT/probe_cuda.log" | tr '\n' ' ')"
  grep -E 'flash attention|Failure|relErr' "$OUT/probe_cuda.log" | head -10 | tee -a "$OUT/summary.txt"
  MECHSCOPE_BENCH_DEVICE=cuda timeout 150 "$B/bench/bench_probe" --benchmark_filter=WaadFai >"$OUT/bench_probe.log" 2>&1
  log "bench_probe WaadFai rc=$?"; grep -E '^BM_' "$OUT/bench_probe.log" | tee -a "$OUT/summary.txt"
fi
if has waadfai; then
  synth $Q qwen3 qwen3-0.6b
  for n in ${LENGTHS:-8192 32768 131072}; do
    ids $n
    for a in waad-fai sinks; do
      for mode in lsefirst moments; do
        env=(MECHSCOPE_PROBE_MOMENTS=1); [ $mode = lsefirst ] && env=(MECHSCOPE_PROBE_MOMENTS=0)
        s=$SECONDS
        env "${env[@]}" timeout 300 $CLI $a --model $Q --token-ids $W/ids_$n.json --device cuda --dtype bf16 \
          --json $W/$a-$mode-$n.json >$W/$a-$mode-$n.log 2>&1
        log "$a $mode n=$n rc=$? wall $((SECONDS - s)) s | $(grep -h '^timing:' $W/$a-$mode-$n.log)"
      done
      python3 "$ROOT/scripts/device/json_max_diff.py" "$W/$a-lsefirst-$n.json" "$W/$a-moments-$n.json" "lsefirst vs moments" 2>&1 | tee -a "$OUT/summary.txt"
    done
    other_analyses $n
    hf_sdpa $n
    [ "$n" = 8192 ] && in_process_8k
  done
fi
if has gemm; then  # issue #24: GPU forward >= 60 % of the GEMM rate at 8K (llama-1b bf16), and the SDPA back ends
  synth $L1 llama llama-1b
  "$B/bench/bench_gpu_forward" $L1 8192 cuda bf16 5 >"$OUT/gpu_forward.log" 2>&1
  log "bench_gpu_forward llama-1b 8K rc=$?"; tail -4 "$OUT/gpu_forward.log" | tee -a "$OUT/summary.txt"
  timeout 120 python3 "$ROOT/scripts/device/sdpa_backends.py" >"$OUT/sdpa_backends.log" 2>&1
  log "sdpa back ends rc=$?"; tee -a "$OUT/summary.txt" <"$OUT/sdpa_backends.log"
fi
if has kernels; then  # issue #24: each new forward/probe kernel path against the old one, same process and GPU
  "$B/tests/mechscope_tests_engine" --gtest_filter='ModelNorm*' >"$OUT/model_norm.log" 2>&1
  log "ModelNorm* rc=$? $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$OUT/model_norm.log" | tr '\n' ' ')"
  synth $L1 llama llama-1b
  synth $Q qwen3 qwen3-0.6b
  for m in $L1 $Q; do
    for sw in ${SWITCHES:-11 01 10 00}; do  # fused RMSNorm, SDPA's grouped heads: 1 on, 0 off
      f=${sw:0:1} g=${sw:1:1}
      MECHSCOPE_FUSED_RMSNORM=$f MECHSCOPE_SDPA_GQA=$g "$B/bench/bench_gpu_forward" $m 8192 cuda bf16 5 >"$OUT/fwd_$(basename $m)_$sw.log" 2>&1
      log "bench_gpu_forward $(basename $m) 8K fused_rmsnorm=$f sdpa_gqa=$g rc=$? | $(tail -2 "$OUT/fwd_$(basename $m)_$sw.log" | tr '\n' ' ')"
    done
  done
  n=131072
  ids $n
  for a in waad-fai sinks; do
    for nv in 1 0; do
      s=$SECONDS
      MECHSCOPE_PROBE_NARROW_V=$nv timeout 200 $CLI $a --model $Q --token-ids $W/ids_$n.json --device cuda --dtype bf16 \
        --json $W/$a-nv$nv.json >$W/$a-nv$nv.log 2>&1
      log "$a n=$n narrow_v=$nv rc=$? wall $((SECONDS - s)) s | $(grep -h '^timing:' $W/$a-nv$nv.log) $(grep -h 'cuDNN' $W/$a-nv$nv.log | head -1)"
    done
    python3 "$ROOT/scripts/device/json_max_diff.py" "$W/$a-nv0.json" "$W/$a-nv1.json" "narrow v off vs on" 2>&1 | tee -a "$OUT/summary.txt"
  done
fi
if has families; then
  OUT=$OUT/families STAGES="parity families" bash "$ROOT/scripts/device/session_families_eap.sh"
  cat "$OUT/families/summary.txt" >>"$OUT/summary.txt"
fi
if has memory; then
  M7=/tmp/llama7b   # the split stage's, when it ran in this machine
  [ -f $M7/config.json ] || $CLI synth --family llama --preset llama-7b --dtype bf16 --out $M7 >/dev/null
  python3 - <<'PY' &
import time, torch
free, total = torch.cuda.mem_get_info()
hold = torch.empty(int(free - 20 * 2**30), dtype=torch.uint8, device="cuda")  # leave ~20 GiB
open("/tmp/pending/holding", "w").write(str(hold.numel()))
time.sleep(120)
PY
  holder=$!
  for _ in $(seq 60); do [ -f $W/holding ] && break; sleep 1; done
  python3 -c "import json;print(json.dumps([[1,2,3]]))" >$W/ids3.json
  $CLI run --model $M7 --token-ids $W/ids3.json --device cuda --dtype fp32 >$W/mem_fp32.log 2>&1
  log "7b fp32 with ~20 GiB free rc=$? (want 2): $(tail -1 $W/mem_fp32.log)"
  $CLI run --model $M7 --token-ids $W/ids3.json --device cuda --dtype bf16 >$W/mem_bf16.log 2>&1
  log "7b bf16 with ~20 GiB free rc=$? (want 0): $(tail -1 $W/mem_bf16.log)"
  kill $holder 2>/dev/null
fi
log "done $((SECONDS - t0)) s"
# At most 8 files come back from a device call: every log and sub-stage folder goes into one archive.
(cd "$OUT" && rest=$(ls -A | grep -vx -e summary.txt -e logs.tgz) && [ -n "$rest" ] && tar czf logs.tgz --remove-files $rest)

#!/usr/bin/env bash
# Faults around `mechscope-cli run --cache` with a real model forward (a synthesized tiny GPT-2):
#  1. out-of-memory risk: a run whose estimate exceeds the memory available (MemAvailable, or RLIMIT_AS under
#     prlimit) is refused with the estimate and exit 2 before any work; `sinks --materialize` too.
#  2. disk space: a cache bigger than the free space is refused with both numbers unless --force.
#  3. disk full (a 4 MiB tmpfs when we can mount one, and always RLIMIT_FSIZE with SIGXFSZ ignored): a
#     clear error naming the file, exit 2, no NAME.h5, no NAME.h5.partial, an older NAME.h5 byte-identical.
#  4. SIGKILL mid-write: no NAME.h5 appears, the older NAME.h5 is byte-identical and still opens, the
#     .partial is refused by cache-info; Ctrl-C (SIGINT) exits 130 and leaves neither file.
#  5. hostile caches (the isolated check, store/isolation/): a file that makes libhdf5 1.10.8 loop is refused
#     within the time limit with one line naming it; a missing checker is a clear error.
# Args: $1 = mechscope-cli, $2 = shared dir (unused). Exit 77 = skipped (no HDF5 store in this build).
set -uo pipefail
cli=$1
"$cli" cache-selftest --help >/dev/null 2>&1 || { echo "no HDF5 store in this build: skipped"; exit 77; }
tmp=$(mktemp -d)
mnt=""
cleanup() { [ -n "$mnt" ] && umount "$mnt" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
# expect RC NEEDLE... -- cmd: exit code RC and every NEEDLE in stderr.
expect() {
  local want=$1; shift
  local needles=()
  while [ "$1" != "--" ]; do needles+=("$1"); shift; done
  shift
  "$@" >"$tmp/out.txt" 2>"$tmp/err.txt"; local rc=$?
  if [ "$rc" != "$want" ]; then bad "'$*' exited $rc, want $want: $(tail -3 "$tmp/err.txt")"; return 1; fi
  for n in "${needles[@]}"; do
    grep -qF -- "$n" "$tmp/err.txt" || { bad "'$*' stderr lacks '$n': $(cat "$tmp/err.txt")"; return 1; }
  done
  return 0
}
ids() {  # ids N FILE: one row of N token ids < 1000
  awk -v n="$1" 'BEGIN { printf "[["; for (i = 0; i < n; i++) printf "%s%d", (i ? "," : ""), (i * 37 + 11) % 1000; print "]]" }' >"$2"
}

"$cli" synth --family gpt2 --preset tiny --out "$tmp/m" >/dev/null || { bad "synth"; exit 1; }
ids 8 "$tmp/ids8.json"; ids 512 "$tmp/ids512.json"; ids 2048 "$tmp/ids2048.json"; ids 32768 "$tmp/ids32k.json"

# ---- 1. memory estimate: refused with the numbers, exit 2, nothing written ----
# (not under AddressSanitizer: its shadow memory needs terabytes of address space, so no RLIMIT_AS can apply,
# and without the cap the refusal would depend on the machine's RAM)
if ldd "$cli" 2>/dev/null | grep -q libasan; then
  echo "skipped under AddressSanitizer: the memory-estimate cases (they need an address-space limit)"
else
# The 32K cases run under a 16 GiB address-space cap so the refusal does not depend on the machine's RAM
# (the estimate is ≈ 48 GiB); the message must name memory even when the disk is also too small.
cap16=(prlimit --as=$((16 << 30)))
if expect 2 "run: a forward pass of 1×32768 tokens needs ≈" "one layer" "is available" "--force" -- \
  "${cap16[@]}" "$cli" run --model "$tmp/m" --token-ids "$tmp/ids32k.json" --hooks '*' --cache "$tmp/big.h5"; then
  [ ! -e "$tmp/big.h5" ] && [ ! -e "$tmp/big.h5.partial" ] && ok "run --cache of 32768 tokens refused: $(cat "$tmp/err.txt")" \
    || bad "the refused run left a file"
fi
expect 2 "(RLIMIT_AS)" "--force" -- prlimit --as=$((3 << 30)) \
  "$cli" run --model "$tmp/m" --token-ids "$tmp/ids32k.json" --hooks '*.hook_pattern' \
  && ok "under prlimit --as the address-space limit is the bound named: $(cat "$tmp/err.txt")"
expect 2 "sinks: --materialize on 1×32768 tokens needs ≈" "--force" -- \
  "${cap16[@]}" "$cli" sinks --model "$tmp/m" --token-ids "$tmp/ids32k.json" --materialize --json "$tmp/s.json" \
  && ok "sinks --materialize refused: $(cat "$tmp/err.txt")"
fi
# The same small input runs fine (the estimate is not a blanket refusal).
expect 0 -- "$cli" run --model "$tmp/m" --token-ids "$tmp/ids512.json" --hooks '*' --cache "$tmp/small.h5" \
  && [ -f "$tmp/small.h5" ] && ok "a 512-token cache of every hook is not refused"

# ---- 2 + 3. disk: estimate refusal, then a real ENOSPC with --force ----
disk_full_case() {  # disk_full_case DIR LABEL [wrapper...]: DIR already holds old.h5
  local dir=$1 label=$2; shift 2
  cp "$dir/old.h5" "$tmp/old.keep"
  if expect 2 "writing the cache $dir/old.h5 failed" "nothing was left behind" -- \
    "$@" "$cli" run --model "$tmp/m" --token-ids "$tmp/ids512.json" --hooks '*' --cache "$dir/old.h5" --force; then
    ok "$label: $(cat "$tmp/err.txt")"
  fi
  [ ! -e "$dir/old.h5.partial" ] || bad "$label: a .partial was left behind"
  cmp -s "$dir/old.h5" "$tmp/old.keep" || bad "$label: the older old.h5 changed"
  "$cli" cache-info "$dir/old.h5" >/dev/null 2>&1 || bad "$label: the older old.h5 no longer opens"
  grep -q "the disk is full" "$tmp/err.txt" || bad "$label: the message does not say the disk is full"
}

mnt="$tmp/mnt"
mkdir -p "$mnt"
if mount -t tmpfs -o size=4m tmpfs "$mnt" 2>/dev/null; then
  "$cli" run --model "$tmp/m" --token-ids "$tmp/ids8.json" --hooks 'blocks.0.hook_resid_pre' --cache "$mnt/old.h5" >/dev/null 2>&1 \
    || bad "tmpfs: could not write the small old.h5"
  if expect 2 "$mnt/new.h5 will take ≈" "free" "--force" -- \
    "$cli" run --model "$tmp/m" --token-ids "$tmp/ids512.json" --hooks '*' --cache "$mnt/new.h5"; then
    ok "tmpfs 4 MiB: refused before writing: $(cat "$tmp/err.txt")"
  fi
  [ ! -e "$mnt/new.h5" ] && [ ! -e "$mnt/new.h5.partial" ] || bad "tmpfs: the refused run left a file"
  disk_full_case "$mnt" "tmpfs 4 MiB, --force (ENOSPC)"
  [ "$(ls "$mnt")" = "old.h5" ] || bad "tmpfs holds more than old.h5: $(ls "$mnt")"
  umount "$mnt" && mnt=""
else
  mnt=""
  echo "skipped: cannot mount a tmpfs (not root?): the RLIMIT_FSIZE case below still runs"
fi
# RLIMIT_FSIZE: writes past 4 MiB fail with EFBIG (SIGXFSZ ignored, as a shell can arrange for any job).
mkdir -p "$tmp/fs"
"$cli" run --model "$tmp/m" --token-ids "$tmp/ids8.json" --hooks 'blocks.0.hook_resid_pre' --cache "$tmp/fs/old.h5" >/dev/null 2>&1
(trap '' XFSZ; disk_full_case "$tmp/fs" "prlimit --fsize=4MiB (EFBIG)" prlimit --fsize=$((4 << 20)); exit $fail) || fail=1
[ "$(ls "$tmp/fs")" = "old.h5" ] || bad "fsize: the folder holds more than old.h5: $(ls "$tmp/fs")"

# ---- 4. SIGKILL mid-write of a real forward; Ctrl-C ----
cp "$tmp/small.h5" "$tmp/keep.h5"
wait_partial() {  # wait_partial FILE PID: until FILE exceeds 1 MiB (mid-write) or PID exits
  for _ in $(seq 1 1200); do
    [ "$(stat -c %s "$1" 2>/dev/null || echo 0)" -gt $((1 << 20)) ] && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
"$cli" run --model "$tmp/m" --token-ids "$tmp/ids2048.json" --hooks '*' --cache "$tmp/small.h5" >/dev/null 2>&1 &
pid=$!
if wait_partial "$tmp/small.h5.partial" "$pid"; then
  size=$(stat -c %s "$tmp/small.h5.partial")
  kill -KILL "$pid"; wait "$pid" 2>/dev/null
  cmp -s "$tmp/small.h5" "$tmp/keep.h5" && ok "SIGKILL after $size bytes of the new cache: the older small.h5 is byte-identical" \
    || bad "SIGKILL changed the existing small.h5"
  "$cli" cache-info "$tmp/small.h5" >/dev/null 2>&1 || bad "the older small.h5 no longer opens"
  expect 2 ".partial" -- "$cli" cache-info "$tmp/small.h5.partial" && ok "the killed run's .partial is refused by cache-info"
else
  bad "the writer finished or failed before it could be killed mid-write"; kill -KILL "$pid" 2>/dev/null
fi
rm -f "$tmp/fresh.h5"
"$cli" run --model "$tmp/m" --token-ids "$tmp/ids2048.json" --hooks '*' --cache "$tmp/fresh.h5" >/dev/null 2>&1 &
pid=$!
if wait_partial "$tmp/fresh.h5.partial" "$pid"; then
  kill -KILL "$pid"; wait "$pid" 2>/dev/null
  [ ! -e "$tmp/fresh.h5" ] && ok "SIGKILL with no older file: no fresh.h5 appears" || bad "SIGKILL left a complete-looking fresh.h5"
fi
"$cli" run --model "$tmp/m" --token-ids "$tmp/ids2048.json" --hooks '*' --cache "$tmp/int.h5" >/dev/null 2>&1 &
pid=$!
if wait_partial "$tmp/int.h5.partial" "$pid"; then
  kill -INT "$pid"; wait "$pid"; rc=$?
  [ "$rc" = 130 ] && [ ! -e "$tmp/int.h5" ] && [ ! -e "$tmp/int.h5.partial" ] && ok "Ctrl-C mid-write: exit 130, no file, no .partial" \
    || bad "Ctrl-C mid-write: exit $rc, files: $(ls "$tmp" | grep int.h5)"
fi
# After all that, the same run completes and the cache opens.
expect 0 -- "$cli" run --model "$tmp/m" --token-ids "$tmp/ids2048.json" --hooks '*' --cache "$tmp/fresh.h5" \
  && [ ! -e "$tmp/fresh.h5.partial" ] && "$cli" cache-info "$tmp/fresh.h5" >/dev/null && ok "a rerun completes: fresh.h5 opens"

# 5. A cache that makes libhdf5 loop forever: cache-info and sinks --cache refuse it in about a second.
hang="$(cd "$(dirname "$0")/../.." && pwd)/fuzz/known_upstream/hdf5_cache/libhdf5-1.10.8-hang-vlen-attribute-global-heap"
if [ -f "$hang" ]; then
  cp "$hang" "$tmp/hostile.h5"
  start=$(date +%s)
  expect 2 "$tmp/hostile.h5" "still reading it after 1 s" -- env MECHSCOPE_H5CHECK_TIMEOUT=1 "$cli" cache-info "$tmp/hostile.h5" \
    && [ $(( $(date +%s) - start )) -lt 10 ] && [ "$(wc -l <"$tmp/err.txt")" -le 2 ] \
    && ok "a libhdf5-hanging cache: exit 2 in $(( $(date +%s) - start )) s, one line naming it"
  expect 2 "MECHSCOPE_H5CHECK='$tmp/none' is not an executable file" -- \
    env MECHSCOPE_H5CHECK="$tmp/none" "$cli" cache-info "$tmp/fresh.h5" && ok "a missing checker: a clear error"
fi

[ $fail = 0 ] && echo "cli faults OK"
exit $fail

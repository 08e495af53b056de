#!/usr/bin/env bash
# mechscope-cli cache-info / cache-export as processes, on caches made by the hidden cache-selftest:
# provenance and dataset listing, CSV/.npy slices (checked against h5py when present), clear errors with
# exit code 2, Ctrl-C (exit 130, no file left) and SIGKILL (an older file stays byte-identical).
# Args: $1 = mechscope-cli, $2 = shared dir (unused). Exit 77 = skipped (no HDF5 in this build).
set -euo pipefail
cli=$1
"$cli" cache-selftest --help >/dev/null 2>&1 || { echo "no HDF5 store in this build: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
expect_rc() {  # expect_rc RC NEEDLE cmd...: exit code RC and NEEDLE in stderr
  local want=$1 needle=$2; shift 2
  set +e
  "$@" >"$tmp/out.txt" 2>"$tmp/err.txt"; local rc=$?
  set -e
  [ "$rc" = "$want" ] || fail "'$*' exited $rc, want $want: $(cat "$tmp/err.txt")"
  grep -qF -- "$needle" "$tmp/err.txt" || fail "'$*' stderr lacks '$needle': $(cat "$tmp/err.txt")"
}

# ---- a cache and its listing ----
"$cli" cache-selftest --out "$tmp/a.h5" --layers 2 --batch 2 --pos 8 --heads 4 --d-model 32 >/dev/null 2>&1
[ -f "$tmp/a.h5" ] && [ ! -e "$tmp/a.h5.partial" ] || fail "selftest did not produce a.h5"
"$cli" cache-info "$tmp/a.h5" >"$tmp/info.txt"
grep -q '^Schema version: 1$' "$tmp/info.txt" || fail "cache-info: no schema version"
grep -qE '^  family +synthetic$' "$tmp/info.txt" || fail "cache-info: no family"
grep -qE '^  created_utc +[0-9]{4}-[0-9]{2}-[0-9]{2}T' "$tmp/info.txt" || fail "cache-info: no creation time"
grep -qE '/activations/blocks\.1\.attn\.hook_pattern +\[2, 4, 8, 8\] +float32 +\[1, 1, 8, 8\] +none' "$tmp/info.txt" \
  || fail "cache-info: pattern line wrong: $(grep hook_pattern "$tmp/info.txt")"
grep -qE '/activations/blocks\.0\.attn\.hook_q +\[2, 8, 4, 8\]' "$tmp/info.txt" || fail "cache-info: q line wrong"
[ "$(grep -c '^  /activations/' "$tmp/info.txt")" = 33 ] || fail "cache-info: expected 33 activations"

# ---- CSV: one head of one batch row is an 8×8 causal, row-stochastic matrix ----
"$cli" cache-export "$tmp/a.h5" --hook blocks.1.attn.hook_pattern --slice "1,3" --csv "$tmp/head.csv" 2>/dev/null
[ "$(wc -l <"$tmp/head.csv")" = 8 ] || fail "csv: want 8 rows"
awk -F, 'NF != 8 { print "bad field count " NF; exit 1 }
         { s = 0; for (i = 1; i <= NF; i++) { s += $i; if (i > NR && $i != 0) { print "not causal"; exit 1 } }
           if (s < 0.99999 || s > 1.00001) { print "row sum " s; exit 1 } }' "$tmp/head.csv" || fail "csv content"
"$cli" cache-export "$tmp/a.h5" --hook /tokens --csv - >"$tmp/tokens.csv"
[ "$(head -1 "$tmp/tokens.csv")" = "0,1,2,3,4,5,6,7" ] || fail "tokens csv: $(head -1 "$tmp/tokens.csv")"
[ "$(sed -n 2p "$tmp/tokens.csv")" = "8,9,10,11,12,13,14,15" ] || fail "tokens csv row 2"

# ---- .npy: equal to h5py's read of the same slice ----
"$cli" cache-export "$tmp/a.h5" --hook blocks.0.hook_resid_pre --slice "0,2:6" --npy "$tmp/r.npy" 2>/dev/null
head -c 6 "$tmp/r.npy" | od -c | grep -q 'N   U   M   P   Y' || fail "npy magic"
if /usr/bin/python3 -c 'import h5py, numpy' 2>/dev/null; then
  /usr/bin/python3 - "$tmp/a.h5" "$tmp/r.npy" "$tmp/head.csv" <<'PY' || fail "npy/csv differ from h5py"
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
a = np.load(sys.argv[2])
want = f["activations/blocks.0.hook_resid_pre"][0, 2:6]
assert a.dtype == np.float32 and a.shape == (4, 32) and np.array_equal(a, want), (a.shape, a.dtype)
csv = np.loadtxt(sys.argv[3], delimiter=",", dtype=np.float32)
assert np.array_equal(csv, f["activations/blocks.1.attn.hook_pattern"][1, 3])  # shortest round-trip text
PY
fi

# ---- errors: exit 2, one line naming the problem ----
expect_rc 2 "no such file" "$cli" cache-info "$tmp/missing.h5"
echo "not hdf5" >"$tmp/text.h5"
expect_rc 2 "not an HDF5 file" "$cli" cache-info "$tmp/text.h5"
cp "$tmp/a.h5" "$tmp/b.h5.partial"
expect_rc 2 ".partial" "$cli" cache-info "$tmp/b.h5.partial"
head -c 3000 "$tmp/a.h5" >"$tmp/cut.h5"
expect_rc 2 "truncated" "$cli" cache-info "$tmp/cut.h5"
expect_rc 2 "no dataset 'blocks.7.attn.hook_pattern'" \
  "$cli" cache-export "$tmp/a.h5" --hook blocks.7.attn.hook_pattern --csv "$tmp/x.csv"
expect_rc 2 "out of range" "$cli" cache-export "$tmp/a.h5" --hook blocks.0.attn.hook_pattern --slice "5" --csv "$tmp/x.csv"
expect_rc 2 "expected an integer" "$cli" cache-export "$tmp/a.h5" --hook blocks.0.attn.hook_pattern --slice "x" --csv "$tmp/x.csv"
expect_rc 2 "exactly one of" "$cli" cache-export "$tmp/a.h5" --hook blocks.0.attn.hook_pattern

# ---- Ctrl-C cancels cleanly: exit 130, neither file nor .partial ----
"$cli" cache-selftest --out "$tmp/c.h5" --layers 100 --sleep-ms 100 >/dev/null 2>"$tmp/c.err" &
pid=$!
for _ in $(seq 1 600); do grep -q 'layer 1 written' "$tmp/c.err" 2>/dev/null && break; sleep 0.05; done
kill -INT "$pid"
set +e; wait "$pid"; rc=$?; set -e
[ "$rc" = 130 ] || fail "Ctrl-C gave exit $rc, want 130"
[ ! -e "$tmp/c.h5" ] && [ ! -e "$tmp/c.h5.partial" ] || fail "Ctrl-C left a file behind"

# ---- SIGKILL mid-write: the older file is byte-identical, no new file appears ----
cp "$tmp/a.h5" "$tmp/keep.h5"
"$cli" cache-selftest --out "$tmp/a.h5" --layers 100 --sleep-ms 100 >/dev/null 2>"$tmp/k.err" &
pid=$!
for _ in $(seq 1 600); do grep -q 'layer 1 written' "$tmp/k.err" 2>/dev/null && break; sleep 0.05; done
kill -KILL "$pid"
set +e; wait "$pid" 2>/dev/null; set -e
cmp -s "$tmp/a.h5" "$tmp/keep.h5" || fail "SIGKILL changed the existing a.h5"
[ -e "$tmp/a.h5.partial" ] || fail "expected the killed run's .partial"
"$cli" cache-info "$tmp/a.h5" >/dev/null || fail "the old a.h5 no longer opens"
echo "cli cache OK"

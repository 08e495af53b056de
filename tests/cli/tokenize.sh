#!/usr/bin/env bash
# `mechscope-cli tokenize` as a process: JSON output against the Hugging Face references, --text-file,
# --json-lines, --add-special-tokens, and exit code 2 with a clear message on a bad tokenizer.
# $1: path of mechscope-cli, $2: the shared dir (exit 77 = skipped when its fixtures are missing).
set -u
CLI="$1"
SHARED="${2:-}"
TOK="$SHARED/fixtures/tokenizers"
[ -f "$TOK/reference_encodings.json" ] || { echo "skip: $TOK missing"; exit 77; }
PY=/usr/bin/python3
"$PY" -c 'import json' 2>/dev/null || PY=python3
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
fail=0
check() { if [ "$1" != "$2" ]; then echo "FAIL: $3"; echo "  expected: $2"; echo "  got:      $1"; fail=1; else echo "ok: $3"; fi; }

# 1. --text --json on Qwen3 (model folder) equals the reference ids/offsets for "Hello world".
out="$("$CLI" tokenize --tokenizer "$TOK/qwen3" --text "Hello world" --json)" || { echo "FAIL: qwen3 run"; exit 1; }
want="$("$PY" - "$TOK" <<'PYEOF'
import json, sys
ref = json.load(open(sys.argv[1] + "/reference_encodings.json"))["qwen3"]
r = next(r for r in ref if r["text"] == "Hello world")
print(json.dumps({"ids": r["ids"], "offsets": r["offsets"]}, separators=(",", ":")))
PYEOF
)"
got="$("$PY" -c 'import json,sys; d=json.loads(sys.stdin.read()); print(json.dumps({"ids": d["ids"], "offsets": d["offsets"]}, separators=(",", ":")))' <<<"$out")"
check "$got" "$want" "qwen3 --text --json matches reference"

# 2. --text-file --json-lines: every reference text of every tokenizer, one object per line, ids + offsets match.
for name in gpt2 llama2 llama3 qwen3; do
  "$PY" - "$TOK" "$name" "$TMP/$name.jsonl" "$TMP/$name.want" <<'PYEOF'
import json, sys
ref = json.load(open(sys.argv[1] + "/reference_encodings.json"))[sys.argv[2]]
with open(sys.argv[3], "w") as f, open(sys.argv[4], "w") as w:
    for r in ref:
        f.write(json.dumps(r["text"]) + "\n")
        w.write(json.dumps([r["ids_special"], r["offsets"]]) + "\n")
PYEOF
  "$CLI" tokenize --tokenizer "$TOK/$name/tokenizer.json" --text-file "$TMP/$name.jsonl" --json-lines --json --add-special-tokens \
    > "$TMP/$name.out" || { echo "FAIL: $name run"; fail=1; continue; }
  res="$("$PY" - "$TMP/$name.out" "$TMP/$name.want" <<'PYEOF'
import json, sys
got = [json.loads(l) for l in open(sys.argv[1])]
want = [json.loads(l) for l in open(sys.argv[2])]
bad = 0
for g, (ids, offs) in zip(got, want):
    # with special tokens the post-processor adds (0, 0) spans; compare the text tokens' spans
    plain = [o for o, i in zip(g["offsets"], g["ids"])]
    if g["ids"] != ids or len(g["tokens"]) != len(ids):
        bad += 1
    elif [o for o in plain if o != [0, 0]] != [o for o in offs if o != [0, 0]]:
        bad += 1
print(f"{len(got)}/{len(want)} lines, {bad} mismatches")
PYEOF
)"
  n="$(wc -l < "$TMP/$name.want" | tr -d ' ')"
  check "$res" "$n/$n lines, 0 mismatches" "$name --text-file --json-lines --add-special-tokens"
done

# 3. Plain --text-file: one encoding per line, readable table.
printf 'Hello world\nsecond line\n' > "$TMP/plain.txt"
lines="$("$CLI" tokenize --tokenizer "$TOK/gpt2" --text-file "$TMP/plain.txt" --json | wc -l | tr -d ' ')"
check "$lines" "2" "--text-file encodes each line"
table="$("$CLI" tokenize --tokenizer "$TOK/gpt2" --text " the")"
case "$table" in *"␣the"*) echo "ok: plain table shows ␣the";; *) echo "FAIL: plain table: $table"; fail=1;; esac

# 4. A malformed tokenizer: exit 2 and a message naming the file and the component.
echo '{"model": {"type": "Unigram", "vocab": []}}' > "$TMP/bad.json"
msg="$("$CLI" tokenize --tokenizer "$TMP/bad.json" --text x 2>&1)"; rc=$?
check "$rc" "2" "malformed tokenizer exits 2"
case "$msg" in *bad.json*model*Unigram*) echo "ok: error names file and component";; *) echo "FAIL: message: $msg"; fail=1;; esac
"$CLI" tokenize --tokenizer "$TMP/missing.json" --text x >/dev/null 2>&1; rc=$?
check "$rc" "2" "missing tokenizer exits 2"

exit $fail

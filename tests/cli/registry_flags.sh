#!/usr/bin/env bash
# Issue #21: analysis/common/registry.hpp is the one table of analyses. Every analysis it names is a
# mechscope-cli subcommand, and every CLI option its parameter table names (the batch plans' keys turn
# into these options) exists in that subcommand's --help, so the table and the commands cannot drift.
set -euo pipefail
cli=$1
py=/usr/bin/python3
[ -x "$py" ] || { echo "no /usr/bin/python3: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$cli" list --json > "$tmp/registry.json"
"$py" - "$tmp/registry.json" > "$tmp/names.txt" <<'PY'
import json, sys
for a in json.load(open(sys.argv[1])):
    print(a["name"])
PY
[ "$(wc -l < "$tmp/names.txt")" -ge 11 ] || { echo "the registry lists fewer than 11 analyses"; cat "$tmp/names.txt"; exit 1; }
while read -r name; do
  "$cli" "$name" --help > "$tmp/help_$name.txt" 2>&1 || { echo "'$name' is in the registry but not a mechscope-cli subcommand"; exit 1; }
done < "$tmp/names.txt"
"$py" - "$tmp" <<'PY'
import json, re, sys, os
t = sys.argv[1]
missing = []
for a in json.load(open(f"{t}/registry.json")):
    help_text = open(f"{t}/help_{a['name']}.txt").read()
    options = set(re.findall(r"--[a-z0-9][a-z0-9-]*", help_text))
    for p in a["params"]:
        if p["flag"] and p["flag"] not in options:
            missing.append(f"{a['name']}: {p['key']} -> {p['flag']}")
assert not missing, "registry options missing from --help:\n  " + "\n  ".join(missing)
print(f"{sum(len(a['params']) for a in json.load(open(f'{t}/registry.json')))} registry parameters found in --help")
PY
echo "registry flags OK"

#!/usr/bin/env bash
# mechscope-cli basics: --version, list, --help on every subcommand, unknown subcommand → exit 2.
set -euo pipefail
cli=$1
"$cli" --version | grep -q '^mechscope [0-9]'
"$cli" list | grep -q '^Analyses:'
for sub in $("$cli" --help | awk '/^SUBCOMMANDS:/{f=1;next} f && NF {print $1}'); do
  "$cli" "$sub" --help >/dev/null || { echo "--help failed for $sub"; exit 1; }
done
set +e
"$cli" no-such-command >/dev/null 2>&1; rc=$?
set -e
[ "$rc" = 2 ] || { echo "unknown subcommand gave exit $rc, want 2"; exit 1; }
echo "cli basics OK"

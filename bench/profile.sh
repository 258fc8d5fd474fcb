#!/usr/bin/env bash
# Profile zoo's proxy hot path with callgrind (user-space instructions per
# keep-alive GET /small, the guard's measurement) and print the top costs.
#   bench/profile.sh [out-dir [irperreq.py options...]]   (default /tmp/zoo-profile)
#   e.g. bench/profile.sh /tmp/p --route replicas   (an app with two instances, issue 18)
# Builds a profiling binary (release + line tables, not stripped) into
# ${CARGO_TARGET_DIR:-target}-prof so file:line shows up, then runs
# lib/irperreq.py with --keep. Open the result with callgrind_annotate or kcachegrind.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-/tmp/zoo-profile}"
target="${CARGO_TARGET_DIR:-$here/../target}-prof"
(cd "$here/.." && CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_PROFILE_RELEASE_STRIP=none \
  CARGO_TARGET_DIR="$target" cargo build --release --quiet)
rm -rf "$out"
python3 "$here/lib/irperreq.py" --zoo "$target/release/zoo" -n 1000 --keep "$out" "${@:2}" 2>/dev/null | tail -1
f="$out/callgrind.zoo.out"
echo "--- inclusive (per 1000 requests) ---"
callgrind_annotate --inclusive=yes "$f" 2>/dev/null | sed -n '/file:function/,$p' | head -60 | cut -c1-200
echo "--- self ---"
callgrind_annotate "$f" 2>/dev/null | sed -n '/file:function/,$p' | head -40 | cut -c1-200
echo "profile: $f (callgrind_annotate --tree=caller $f for callers)"

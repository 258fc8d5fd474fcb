#!/usr/bin/env bash
# CI regression guard for zoo's proxy hot path (~7-15 s; needs valgrind + nginx,
# i.e. bench/setup.sh, and a release build).
#
#   bench/guard.sh [path/to/zoo]     (default: ${CARGO_TARGET_DIR:-target}/release/zoo)
#   ZOO_ENGINE=hyper bench/guard.sh (hyper's HTTP/1.1 server and client; default: the config default, zoo's)
#
# Counts user-space instructions per proxied keep-alive `GET /small` under
# valgrind's callgrind, for zoo and for nginx (same private upstream, see
# lib/irperreq.py), and fails when zoo/nginx exceeds the committed ceiling in
# bench/guard-baseline.json. Instruction counts do not move with machine load
# (two runs agree within ~0.5%), unlike req/s on shared CI machines. Dividing by
# nginx's count cancels valgrind/libc/kernel-version drift.
# When zoo gets faster, lower "max_ratio" in the same commit (ratchet).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
zoo="${1:-${CARGO_TARGET_DIR:-$here/../target}/release/zoo}"
[ -x "$zoo" ] || { echo "guard: no $zoo (cargo build --release)" >&2; exit 2; }
py="$(command -v python3)"
out="$("$py" "$here/lib/irperreq.py" --zoo "$zoo" ${ZOO_ENGINE:+--engine "$ZOO_ENGINE"} -n 1000 --warmup 200 2>/dev/null | tail -1)"
"$py" - "$out" "$here/guard-baseline.json" <<'PY'
import json, sys
got = json.loads(sys.argv[1]); base = json.load(open(sys.argv[2]))
ratio, ceiling = got["ratio"], base["max_ratio"]
print(f"guard: zoo {got['zoo']:,} instructions/request, nginx {got['nginx']:,}: "
      f"ratio {ratio:.3f} (ceiling {ceiling:.3f}, baseline {base['baseline_ratio']:.3f})")
if ratio > ceiling:
    print("guard: FAIL: zoo's hot path got more expensive; profile with bench/profile.sh",
          file=sys.stderr)
    sys.exit(1)
print("guard: ok")
PY

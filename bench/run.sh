#!/usr/bin/env bash
# Run the reverse-proxy benchmark. Usage: run.sh [proxy...]
#   proxies: direct nginx haproxy caddy go-seed zoo (default: all available;
#   direct is always measured). zoo: ZOO_CMD, or by default the release
#   binary (${CARGO_TARGET_DIR:-<repo>/target}/release/zoo, build it first with
#   `cargo build --release`) with bench/conf/zoo.toml; skipped if absent.
# Options (or env): --rounds N (BENCH_ROUNDS, 3), --duration S (BENCH_DURATION, 8),
#   --warmup S (BENCH_WARMUP, 2), --scenarios a,b (BENCH_SCENARIOS),
#   --no-pin (BENCH_PIN=0), --proxy-cpus 1, --load-cpus 0.
# See README.md. Needs setup.sh to have run once.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="$(command -v python3)"
if [ -z "${ZOO_CMD:-}" ]; then
  zoo_bin="${CARGO_TARGET_DIR:-$here/../target}/release/zoo"
  if [ -x "$zoo_bin" ]; then
    zoo_bin="$(cd "$(dirname "$zoo_bin")" && pwd)/zoo"
    export ZOO_CMD="$zoo_bin --config $here/conf/zoo.toml"
  else
    echo "run.sh: no $zoo_bin (cargo build --release): the zoo row is skipped" >&2
  fi
fi
# Raise the fd limit for wrk and the proxies (no-op if already high).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec "$py" "$here/lib/bench.py" "$@"

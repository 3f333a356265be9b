#!/usr/bin/env bash
# Counts the instructions the bench server executes per request, in user space,
# under valgrind's callgrind: the same figure for the same binary and load on any
# run, however noisy the machine, so small changes to the layer show.
#
#   bench/instructions.sh                      # bare, layer, layer-router
#   bench/instructions.sh --modes "bare layer" --measure 10
#
# Each mode: start the server under callgrind with instrumentation off, send
# --warmup seconds of bench/load.lua load (every member is seen and written),
# switch instrumentation on, send --measure seconds, stop the server. The
# measured window ends well inside the de-dup resolution (30 s), so it is the
# steady state of compare.sh's measured runs: no member falls due in it.
# Kernel time (the socket calls) is not counted: these are user-space figures.
set -euo pipefail
cd "$(dirname "$0")/.."

modes="bare layer layer-router"
warmup=6 measure=8
visitors=10000 users=1000
port=3961
build=1

while [ $# -gt 0 ]; do
  case "$1" in
    --modes) modes=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --measure) measure=$2; shift 2 ;;
    --visitors) visitors=$2; shift 2 ;;
    --users) users=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --no-build) build=; shift ;;
    -h | --help)
      sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
      echo "options: --modes \"A B\" --warmup S --measure S --visitors N --users M --port P --no-build"
      exit 0
      ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
for tool in wrk valgrind; do
  if ! command -v "$tool" >/dev/null; then
    echo "== installing $tool"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$tool"
  fi
done
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}

if [ -n "$build" ]; then
  echo "== building the bench server (release)"
  cargo build --release --example bench_server
fi
bin="${CARGO_TARGET_DIR:-target}/release/examples/bench_server"

work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

load() { wrk -t1 -c8 -d"${1}s" -s bench/load.lua "http://127.0.0.1:$port/" -- "$visitors" "$users"; }

: >"$work/results"
for mode in $modes; do
  port=$((port + 1))
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/$mode.out" \
    "$bin" --mode "$mode" --bind "127.0.0.1:$port" --threads 1 2>"$work/$mode.log" &
  server_pid=$!
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/$mode.log" >&2; exit 1; }
    sleep 0.1
  done
  load "$warmup" >/dev/null
  callgrind_control -i on "$server_pid" >/dev/null 2>&1
  requests=$(load "$measure" | sed -n 's/^RESULT requests=\([0-9]*\).*/\1/p')
  kill -TERM "$server_pid"
  wait "$server_pid" || true
  server_pid=
  total=$(sed -n 's/^summary: //p' "$work/$mode.out")
  echo "$mode $requests $total" | tee -a "$work/results" |
    awk '{ printf "   %-12s %7d requests  %6.0f instructions/request\n", $1, $2, $3 / $2 }'
done

echo
echo "== user-space instructions per request (callgrind), ratio to bare in ()"
awk '
  { per[$1] = $3 / $2; order[++n] = $1 }
  END {
    for (i = 1; i <= n; i++) {
      m = order[i]
      if ("bare" in per)
        printf "%-12s %8.0f (%.3fx, %+.0f)\n", m, per[m], per[m] / per["bare"], per[m] - per["bare"]
      else
        printf "%-12s %8.0f\n", m, per[m]
    }
  }' "$work/results"

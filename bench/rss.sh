#!/usr/bin/env bash
# Peak memory (VmHWM) of the bench server when a flood of distinct visitors
# arrives: each of --visitors addresses sends one request, in one pass.
#
#   bench/rss.sh                       # 1,000,000 visitors, layer and bare
#   bench/rss.sh --visitors 200000 --modes layer
#
# Prints, per mode: requests/s of the pass, peak and final RSS, and for the
# layer what its counters say (reports queued and dropped, members written) and
# how many visitors Redis holds afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

visitors=1000000 modes="bare layer" port=3902 conns=32 build=1
server_cpu=1 load_cpu=0
usage() {
  echo "usage: bench/rss.sh [--visitors N] [--modes \"bare layer\"] [--port P] [--connections C] [--no-build]"
}
while [ $# -gt 0 ]; do
  case "$1" in
    --visitors) visitors=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --no-build) build=; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

command -v wrk >/dev/null || {
  echo "wrk is needed: bench/compare.sh installs it, or apt-get install wrk" >&2
  exit 1
}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
rcli() { redis-cli -u "$REDIS_URL" "$@"; }
[ -n "$build" ] && cargo build --release --example bench_server
bin="${CARGO_TARGET_DIR:-target}/release/examples/bench_server"
pin_server=() pin_load=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  pin_server=(taskset -c "$server_cpu")
  pin_load=(taskset -c "$load_cpu")
fi

server_pid= wrk_pid=
log=$(mktemp)
trap '[ -n "$wrk_pid" ] && kill "$wrk_pid" 2>/dev/null; [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -f "$log" "$log.wrk"' EXIT

kib() { awk -v f="$2" '$1 == f":" { print $2 }' "/proc/$1/status"; }

printf "%-6s %10s %10s %8s %14s %14s  %s\n" mode visitors req/s "p99 ms" "peak RSS MiB" "final RSS MiB" "notes"
for mode in $modes; do
  prefix="whos_bench_rss_$(date +%s)_$$_$mode"
  "${pin_server[@]}" "$bin" --mode "$mode" --bind "127.0.0.1:$port" --prefix "$prefix" 2>"$log" &
  server_pid=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.05
  done
  start_kib=$(kib "$server_pid" VmRSS)
  marker=$(mktemp -u)
  "${pin_load[@]}" wrk -t1 -c"$conns" -d600s -s bench/flood.lua \
    "http://127.0.0.1:$port/" -- "$visitors" "$marker" >"$log.wrk" &
  wrk_pid=$!
  until [ -e "$marker" ] || ! kill -0 "$wrk_pid" 2>/dev/null; do sleep 0.2; done
  kill -INT "$wrk_pid" 2>/dev/null || true
  wait "$wrk_pid" || true
  wrk_pid=
  rm -f "$marker"
  out=$(cat "$log.wrk")
  sleep 2 # one flush interval and then some: the last batch is written
  peak=$(kib "$server_pid" VmHWM)
  final=$(kib "$server_pid" VmRSS)
  kill -TERM "$server_pid"
  wait "$server_pid" || true
  server_pid=
  notes="RSS at start $((start_kib / 1024)) MiB"
  if [ "$mode" = layer ]; then
    stats=$(grep '^STATS' "$log" | cut -d' ' -f3- || true)
    held=$(rcli zcard "{$prefix}:visitors")
    notes="$notes; $stats; visitors in Redis: $held"
  fi
  rcli --scan --pattern "{$prefix}*" | xargs -r redis-cli -u "$REDIS_URL" unlink >/dev/null
  line=$(grep '^RESULT' <<<"$out")
  awk -v mode="$mode" -v peak="$peak" -v final="$final" -v notes="$notes" '{
      for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      printf "%-6s %10d %10.0f %8.2f %14.1f %14.1f  %s\n", mode, v["requests"],
        v["requests"] / (v["duration_us"] / 1e6), v["p99_us"] / 1000, peak / 1024, final / 1024, notes
    }' <<<"$line"
done

#!/usr/bin/env bash
# Compares one "hello world" axum app served bare, with the whos-online layer
# (around the router, and through Router::layer), and with a per-request ZADD
# middleware ("naive"), under the same wrk load against the same Redis, and
# prints one table with each row's ratio to bare.
#
#   bench/compare.sh                      # defaults: 10,000 visitors, 1,000 users
#   bench/compare.sh --visitors 50000 --users 5000 --duration 10
#
# The modes run round-robin (bare, layer, naive, bare, ...) for --rounds rounds
# and the table shows each column's median over the rounds, so drift on the
# machine hits every mode alike. The server is pinned to one CPU and wrk to
# another (--server-cpu / --load-cpu; with fewer than two CPUs nothing is pinned).
# See bench/README.md for what each column means.
set -euo pipefail
cd "$(dirname "$0")/.."

visitors=10000 users=1000
duration=3 warmup=2 rounds=5 write_phase=32
threads=1 conns=32
server_cpu=1 load_cpu=0
port=3901
modes="bare layer layer-router naive"
build=1
private_redis=
nice_level=-10

usage() {
  cat <<EOF
usage: bench/compare.sh [options]
  --visitors N       distinct visitors in the rotation (default $visitors)
  --users M          distinct users in the rotation (default $users)
  --duration S       measured seconds per run (default $duration)
  --warmup S         unmeasured seconds before each run (default $warmup)
  --rounds R         runs per mode, round-robin; medians are shown (default $rounds)
  --write-phase S    measured seconds of the run that counts Redis commands for
                     layer and naive; at least the resolution (30 s) plus a flush,
                     so that the layer's steady state is in it (default $write_phase)
  --threads T        wrk threads (default $threads)
  --connections C    wrk connections (default $conns)
  --server-cpu N     CPU the server is pinned to (default $server_cpu)
  --load-cpu N       CPU wrk is pinned to (default $load_cpu)
  --port P           server port (default $port)
  --modes "A B"      modes to run, of bare, noop, layer, layer-router, naive,
                     footer (layer + a page rendering the footer from the view),
                     footer-reads (the same page reading Redis per request),
                     bare-footer (the same page from constants, no crate),
                     routes (the layer on a router of 32 routes, added with
                     Router::layer; each member requests a page of its own) and
                     places (routes, with the MatchedPath place hook)
                     (default "$modes"; layer-router's Redis columns are
                     layer's, whose writes are the same)
  --private-redis P  start a throwaway redis-server on port P and use it (keeps
                     other clients of a shared Redis out of the command counts)
  --nice N           run server and wrk at this nice level when root (default $nice_level:
                     other work on the machine then disturbs less; 0 to leave as is)
  --no-build         use the binary already built
Environment: REDIS_URL (default redis://127.0.0.1:6379), CARGO_TARGET_DIR.
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --visitors) visitors=$2; shift 2 ;;
    --users) users=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --write-phase) write_phase=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --server-cpu) server_cpu=$2; shift 2 ;;
    --load-cpu) load_cpu=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --private-redis) private_redis=$2; shift 2 ;;
    --nice) nice_level=$2; shift 2 ;;
    --no-build) build=; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v wrk >/dev/null; then
  echo "== installing wrk"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq wrk
fi
command -v redis-cli >/dev/null || {
  echo "redis-cli is needed (apt-get install redis-tools)" >&2
  exit 1
}

work=$(mktemp -d)
server_pid= redis_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

if [ -n "$private_redis" ]; then
  redis-server --port "$private_redis" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize no --logfile "$work/redis.log" &
  redis_pid=$!
  REDIS_URL="redis://127.0.0.1:$private_redis"
fi
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
rcli() { redis-cli -u "$REDIS_URL" "$@"; }
for _ in $(seq 50); do rcli ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
rcli ping | grep -q PONG || { echo "Redis does not answer at $REDIS_URL" >&2; exit 1; }

if [ -n "$build" ]; then
  echo "== building the bench server (release)"
  cargo build --release --example bench_server
fi
bin="${CARGO_TARGET_DIR:-target}/release/examples/bench_server"
[ -x "$bin" ] || { echo "no $bin; run without --no-build" >&2; exit 1; }

pin_server=() pin_load=()
if [ "$(id -u)" = 0 ] && [ "$nice_level" != 0 ]; then
  pin_server=(nice -n "$nice_level")
  pin_load=(nice -n "$nice_level")
fi
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  pin_server+=(taskset -c "$server_cpu")
  pin_load+=(taskset -c "$load_cpu")
fi

# Sum of calls and of usec over every command but the INFO calls we make.
redis_totals() {
  rcli info commandstats | tr -d '\r' | awk -F'[:,=]' '
    /^cmdstat_/ && $1 != "cmdstat_info" { calls += $3; usec += $5 }
    END { printf "%d %d\n", calls, usec }'
}
# CPU time of a process so far, in nanoseconds, summed over its threads.
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ t += $1 } END { printf "%d\n", t }'; }

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    kill -0 "$server_pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

load() { # seconds [routes]
  "${pin_load[@]}" wrk -t"$threads" -c"$conns" -d"${1}s" -s bench/load.lua \
    "http://127.0.0.1:$port/" -- "$visitors" "$users" "${2:-0}"
}

# Runs one server under load; appends to $2:
# mode rps p50_ms p99_ms redis_cmds_per_1k redis_usec_per_1k server_cpu_us_per_req errors
run_one() { # mode results-file seconds
  local mode=$1 file=$2 seconds=$3 prefix out line r0 r1 c0 c1 routes=0
  # The router of 32 routes: each member on a page of its own.
  case "$mode" in routes | places) routes=32 ;; esac
  prefix="whos_bench_$(date +%s)_$$_${mode}_$RANDOM"
  "${pin_server[@]}" "$bin" --mode "$mode" --bind "127.0.0.1:$port" --prefix "$prefix" \
    2>"$work/server.log" &
  server_pid=$!
  wait_port || { cat "$work/server.log" >&2; exit 1; }
  load "$warmup" "$routes" >/dev/null
  r0=$(redis_totals)
  c0=$(cpu_ns "$server_pid")
  out=$(load "$seconds" "$routes")
  c1=$(cpu_ns "$server_pid")
  r1=$(redis_totals)
  kill -TERM "$server_pid"
  wait "$server_pid" || true
  server_pid=
  rcli --scan --pattern "{$prefix}*" | xargs -r redis-cli -u "$REDIS_URL" unlink >/dev/null
  line=$(grep '^RESULT' <<<"$out") || { echo "$out" >&2; exit 1; }
  awk -v mode="$mode" -v r0="$r0" -v r1="$r1" -v c0="$c0" -v c1="$c1" '
    {
      for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      split(r0, a, " "); split(r1, b, " ")
      req = v["requests"]
      printf "%s %.0f %.3f %.3f %.4f %.2f %.3f %d\n", mode,
        req / (v["duration_us"] / 1e6), v["p50_us"] / 1000, v["p99_us"] / 1000,
        (b[1] - a[1]) * 1000 / req, (b[2] - a[2]) * 1000 / req,
        (c1 - c0) / 1000 / req, v["errors"]
    }' <<<"$line" | tee -a "$file" |
    awk '{ printf "   %-12s %7d req/s  p50 %.3f ms  p99 %.3f ms  %.3f us CPU/req  %.3f Redis cmds/1k req\n", $1, $2, $3, $4, $7, $5 }'
}

results="$work/results" writes="$work/writes"
: >"$results"
: >"$writes"
echo "== $rounds round(s) x ($modes), ${warmup}s warm-up + ${duration}s each;" \
  "wrk -t$threads -c$conns; $visitors visitors + $users users; Redis $REDIS_URL"
echo "   server: ${pin_server[*]:-(not pinned)}; wrk: ${pin_load[*]:-(not pinned)}"
echo "   load average at start: $(cut -d' ' -f1 /proc/loadavg) (anything else running skews the figures)"
start=$(date +%s)
for round in $(seq "$rounds"); do
  echo "-- round $round"
  for mode in $modes; do run_one "$mode" "$results" "$duration"; done
done
redis_modes=$(tr ' ' '\n' <<<"$modes" | grep -E '^(layer|naive|footer|footer-reads|routes|places)$' | tr '\n' ' ' || true)
if [ -n "$redis_modes" ] && [ "$write_phase" -gt 0 ]; then
  echo "-- Redis commands in steady state: ${write_phase}s run each"
  for mode in $redis_modes; do
    # naive's and footer-reads' counts per request are the same in any run; a
    # short one does.
    case "$mode" in naive | footer-reads) secs=$duration ;; *) secs=$write_phase ;; esac
    run_one "$mode" "$writes" "$secs"
  done
fi
elapsed=$(($(date +%s) - start))

echo
echo "== medians over $rounds round(s); Redis columns from the steady-state runs;" \
  "ratio to bare in (); $elapsed s of load runs"
awk -v writes="$writes" '
  function median(list,   n, arr, i, j, t) {
    n = split(list, arr, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
      if (arr[j] + 0 < arr[i] + 0) { t = arr[i]; arr[i] = arr[j]; arr[j] = t }
    return n % 2 ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
  }
  FILENAME == writes { w5[$1] = $5; w6[$1] = $6; next }
  {
    if (!($1 in seen)) { seen[$1] = 1; order[++count] = $1 }
    r = ++runs[$1]; rps_r[$1, r] = $2; p99_r[$1, r] = $4; cpu_r[$1, r] = $7
    for (c = 2; c <= 8; c++) col[$1, c] = col[$1, c] " " $c
  }
  END {
    for (k = 1; k <= count; k++) {
      m = order[k]
      for (c = 2; c <= 8; c++) med[m, c] = median(col[m, c])
      if (m in w5) { med[m, 5] = w5[m]; med[m, 6] = w6[m] }
      # The same writes whichever way the layer is added: the figures of layer.
      else if (m == "layer-router" && ("layer" in w5)) { med[m, 5] = w5["layer"]; med[m, 6] = w6["layer"] }
    }
    hb = "bare" in seen
    printf "%-12s %17s %16s %26s %19s %14s %17s %6s\n", "mode", "req/s", "p50 ms",
      "p99 ms (diff)", "server CPU us/req", "Redis cmds", "Redis us", "errors"
    printf "%-12s %17s %16s %26s %19s %14s %17s %6s\n", "", "", "", "", "",
      "per 1k req", "per 1k req", ""
    for (k = 1; k <= count; k++) {
      m = order[k]
      rps = sprintf("%.0f", med[m, 2])
      p50 = sprintf("%.3f", med[m, 3])
      p99 = sprintf("%.3f", med[m, 4])
      cpu = sprintf("%.2f", med[m, 7])
      if (hb) {
        rps = rps sprintf(" (%.3fx)", med[m, 2] / med["bare", 2])
        p50 = p50 sprintf(" (%.2fx)", med[m, 3] / med["bare", 3])
        p99 = p99 sprintf(" (%.2fx, %+.3f)", med[m, 4] / med["bare", 4], med[m, 4] - med["bare", 4])
        cpu = cpu sprintf(" (%.3fx)", med[m, 7] / med["bare", 7])
      }
      printf "%-12s %17s %16s %26s %19s %14.3f %17.2f %6d\n", m, rps, p50, p99, cpu,
        med[m, 5], med[m, 6], med[m, 8]
    }
    if (hb && count > 1) {
      # Each mode against the bare run of the same round (minutes apart at most):
      # steadier than the ratio of medians when the machine drifts.
      printf "\nper-round ratios to the bare run of the same round (median, and range over %d rounds):\n", runs["bare"]
      for (k = 1; k <= count; k++) {
        m = order[k]
        if (m == "bare") continue
        rl = ""; cl = ""; pl = ""
        for (r = 1; r <= runs[m] && r <= runs["bare"]; r++) {
          rl = rl " " rps_r[m, r] / rps_r["bare", r]
          cl = cl " " cpu_r[m, r] / cpu_r["bare", r]
          pl = pl " " p99_r[m, r] - p99_r["bare", r]
        }
        n = split(rl, a, " "); lo = 1e18; hi = -1e18
        for (i = 1; i <= n; i++) { if (a[i] + 0 < lo) lo = a[i] + 0; if (a[i] + 0 > hi) hi = a[i] + 0 }
        printf "  %-12s req/s %.3fx (%.3f-%.3f)   CPU/req %.3fx   p99 %+.3f ms\n", m,
          median(rl), lo, hi, median(cl), median(pl)
      }
      printf "\nbest run of each (highest req/s, lowest server CPU per request):\n"
      for (k = 1; k <= count; k++) {
        m = order[k]
        n = split(col[m, 2], a, " "); best = 0
        for (i = 1; i <= n; i++) if (a[i] + 0 > best) best = a[i] + 0
        n = split(col[m, 7], a, " "); low = 1e18
        for (i = 1; i <= n; i++) if (a[i] + 0 < low) low = a[i] + 0
        bestrps[m] = best; lowcpu[m] = low
      }
      for (k = 1; k <= count; k++) {
        m = order[k]
        printf "  %-12s %8.0f req/s (%.3fx)   %6.2f us CPU/req (%+.2f us)\n", m, bestrps[m],
          bestrps[m] / bestrps["bare"], lowcpu[m], lowcpu[m] - lowcpu["bare"]
      }
    }
    if (("layer" in seen) && ("naive" in seen)) {
      if (med["layer", 5] > 0)
        printf "\nRedis commands per request: naive / layer = %.0fx\n", med["naive", 5] / med["layer", 5]
      else
        printf "\nRedis commands per request: layer sent none in its run\n"
    }
  }' "$writes" "$results"

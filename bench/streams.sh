#!/usr/bin/env bash
# The event-stream benchmark: many subscribers of GET /online/events on one
# `bench_server --mode footer`, against a private Redis.
#
#   bench/streams.sh                          # 10,000 subscribers, 20 changes
#   bench/streams.sh --subscribers 1000 --changes 10
#
# Prints Redis commands per second with no subscriber and with all of them
# connected (the same when the refresh is shared: about one pipeline a
# second), the server's extra resident memory per 1,000 subscribers, and the
# time from a request that changes the count to the first and the last
# subscriber's event (p50, p99 over the changes), and between the two.
set -euo pipefail
cd "$(dirname "$0")/.."

subscribers=10000 changes=20 port=3902 redis_port=6399 hold=10 build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --subscribers) subscribers=$2; shift 2 ;;
    --changes) changes=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --redis-port) redis_port=$2; shift 2 ;;
    --hold) hold=$2; shift 2 ;;
    --no-build) build=; shift ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

# Two sockets per subscriber on one machine (the client's and the server's).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((subscribers + 1000)) ] ||
  { echo "open files limit $(ulimit -n) is too low for $subscribers subscribers" >&2; exit 1; }

if [ -n "$build" ]; then
  cargo build --release --example bench_server --example stream_bench
fi
dir="${CARGO_TARGET_DIR:-target}/release/examples"

work=$(mktemp -d)
server_pid= redis_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
  --maxclients 20000 --daemonize no --logfile "$work/redis.log" &
redis_pid=$!
url="redis://127.0.0.1:$redis_port"
for _ in $(seq 50); do redis-cli -u "$url" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done

REDIS_URL=$url "$dir/bench_server" --mode footer --bind "127.0.0.1:$port" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done

echo "== $subscribers subscribers, $changes changes, ${hold}s Redis windows; server pid $server_pid"
out=$("$dir/stream_bench" --server "127.0.0.1:$port" --pid "$server_pid" --redis "$url" \
  --hold "$hold" --subscribers "$subscribers" --changes "$changes")
echo "$out"
grep '^RESULT' <<<"$out" | awk '{
  for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
  printf "\nRedis commands/s: %.2f with no subscriber, %.2f with %d\n",
    v["redis_per_sec_idle"], v["redis_per_sec_subscribed"], v["subscribers"]
  printf "server RSS: %.1f MiB -> %.1f MiB, %.1f KiB per subscriber (%.2f MiB per 1,000)\n",
    v["rss_before_kib"] / 1024, v["rss_after_kib"] / 1024,
    (v["rss_after_kib"] - v["rss_before_kib"]) / v["subscribers"],
    (v["rss_after_kib"] - v["rss_before_kib"]) / v["subscribers"] * 1000 / 1024
  printf "request to first event: p50 %s ms; to last: p50 %s ms, p99 %s ms (%s changes)\n",
    v["first_p50_ms"], v["last_p50_ms"], v["last_p99_ms"], v["changes"]
  printf "first to last subscriber: p50 %s ms, p99 %s ms\n", v["fanout_p50_ms"], v["fanout_p99_ms"]
}'

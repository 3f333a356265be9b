-- wrk script for bench/rss.sh: one request from each of N distinct visitors
-- (rightmost X-Forwarded-For counting up from 198.18.0.0); after the N-th
-- response it stops and creates the file MARKER, so that the caller can end wrk
-- with SIGINT (wrk itself runs for its whole -d). Prints one RESULT line like
-- bench/load.lua. Use one wrk thread.
--
--   wrk -t1 -c32 -d600s -s bench/flood.lua http://127.0.0.1:3902/ -- N MARKER

local n, marker, sent, answered = 1000000, nil, 0, 0
-- A browser's User-Agent on every request, as in bench/load.lua.
local agent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 " ..
  "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"

function init(args)
  n = tonumber(args[1] or "1000000")
  marker = args[2]
end

function request()
  local a = 0xC6120000 + sent % n
  sent = sent + 1
  return wrk.format("GET", "/", { ["x-forwarded-for"] = string.format("%d.%d.%d.%d",
    math.floor(a / 16777216) % 256, math.floor(a / 65536) % 256,
    math.floor(a / 256) % 256, a % 256), ["user-agent"] = agent })
end

-- Defining response() makes wrk hand every response to Lua: fine here, not in
-- the throughput runs.
function response(status, headers, body)
  answered = answered + 1
  if answered == n then
    if marker then
      local f = io.open(marker, "w")
      f:write("done\n")
      f:close()
    end
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d errors=%d p50_us=%.1f p99_us=%.1f\n",
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end

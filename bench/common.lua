-- What bench/load.lua and bench/flood.lua share: the browser agent every request
-- carries, the visitor addresses, and the RESULT line printed when wrk is done.
-- Loaded with dofile() from the directory of the script that uses it.

local common = {}

-- A browser's User-Agent, as real traffic sends one (wrk sends none by default),
-- so the layer's bot check does its real work.
common.agent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 " ..
  "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"

-- Visitor v's address, counting up from 198.18.0.0 (the benchmarking range of
-- RFC 2544); the addresses only ever appear inside a header.
function common.address(v)
  local a = 0xC6120000 + v
  return string.format("%d.%d.%d.%d",
    math.floor(a / 16777216) % 256, math.floor(a / 65536) % 256,
    math.floor(a / 256) % 256, a % 256)
end

-- wrk's done() hook: one machine-readable line for the calling script.
function common.done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d errors=%d p50_us=%.1f p99_us=%.1f\n",
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end

return common

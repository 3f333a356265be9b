-- wrk script for bench/rss.sh: one request from each of N distinct visitors
-- (rightmost X-Forwarded-For counting up from 198.18.0.0); after the N-th
-- response it stops and creates the file MARKER, so that the caller can end wrk
-- with SIGINT (wrk itself runs for its whole -d). Prints one RESULT line like
-- bench/load.lua. Use one wrk thread.
--
--   wrk -t1 -c32 -d600s -s bench/flood.lua http://127.0.0.1:3902/ -- N MARKER

-- bench/common.lua, next to this script whatever the working directory.
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "") .. "common.lua")

local n, marker, sent, answered = 1000000, nil, 0, 0

function init(args)
  n = tonumber(args[1] or "1000000")
  marker = args[2]
end

function request()
  local v = sent % n
  sent = sent + 1
  return wrk.format("GET", "/", {
    ["x-forwarded-for"] = common.address(v), ["user-agent"] = common.agent })
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

done = common.done

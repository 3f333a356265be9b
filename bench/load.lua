-- wrk script for bench/compare.sh: rotates among N distinct visitors (each its
-- own rightmost X-Forwarded-For address) and M logged-in users (x-bench-user),
-- spread evenly, each request with a browser's User-Agent, and prints one
-- machine-readable RESULT line when done.
--
--   wrk -t1 -c32 -d8s -s bench/load.lua http://127.0.0.1:3901/ -- N M [R]
--
-- Addresses count up from 198.18.0.0 (the benchmarking range of RFC 2544); they
-- only ever appear inside a header. Up to 200,000 members the requests are built
-- once in init(); above that each is built on the fly.

-- bench/common.lua, next to this script whatever the working directory.
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "") .. "common.lua")
local address, agent = common.address, common.agent

local n, m, total
local prebuilt = {}
local i = 0
local threads = {}

-- With a third argument R > 0, member k requests page k mod R of the bench
-- server's routes (`/`, `/forum/{id}`, `/topic/{id}`, `/r3` ... `/r31`), always
-- the same one: the `routes` and `places` modes. Without it, every request is `/`.
local routes = 0

local function path(k)
  if routes <= 0 then return "/" end
  local r = k % routes
  if r == 0 then return "/" end
  if r == 1 then return "/forum/" .. (k % 50) end
  if r == 2 then return "/topic/" .. k end
  return "/r" .. r
end

-- Member k of the rotation: users are spread evenly among the visitors.
local function build(k)
  local before = math.floor(k * m / total)
  if math.floor((k + 1) * m / total) > before then
    return wrk.format("GET", path(k), { ["x-bench-user"] = "user" .. before, ["user-agent"] = agent })
  end
  return wrk.format("GET", path(k), { ["x-forwarded-for"] = address(k - before), ["user-agent"] = agent })
end

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  n = tonumber(args[1] or "10000")
  m = tonumber(args[2] or "1000")
  routes = tonumber(args[3] or "0")
  total = n + m
  if total < 1 then error("need at least one visitor or user") end
  if total <= 200000 then
    for k = 0, total - 1 do prebuilt[k + 1] = build(k) end
  end
  -- Threads start at different points of the rotation.
  i = math.floor((id or 0) * total / 7) % total
end

function request()
  i = i + 1
  if i > total then i = 1 end
  return prebuilt[i] or build(i - 1)
end

done = common.done

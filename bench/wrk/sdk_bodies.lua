-- wrk script: POST bodies built from templates with a fresh random messageId per event.
--
--   wrk -s bench/wrk/sdk_bodies.lua URL -- TEMPLATES [static]
--
-- TEMPLATES is a file written by bench/sdk_events.py: one "<kind>\t<json>" per line, "@MID@"
-- where each messageId goes. kind "ajs" gets "ajs-next-" + 32 hex digits (analytics.js),
-- "uuid" a UUID4 (analytics-python, analytics-node), "none" has no placeholder (Crossdock makes
-- the id). With "static" every request re-sends the first template with the same ids (made
-- once): the baseline that shows what generating bodies costs wrk itself.
-- done() prints one line "WRKJSON {...}" with the counts and latency percentiles (µs).

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = os.getenv("CROSSDOCK_BENCH_AUTH") or "Basic YmVuY2gtd3JpdGUta2V5Og=="

local templates = {}
local static_request = nil
local random = math.random
local concat = table.concat
local variant = { "8", "9", "a", "b" }

local function split(text)
  local parts, start = {}, 1
  while true do
    local i, j = string.find(text, "@MID@", start, true)
    if not i then
      parts[#parts + 1] = string.sub(text, start)
      return parts
    end
    parts[#parts + 1] = string.sub(text, start, i - 1)
    start = j + 1
  end
end

local format = string.format
local MAX32 = 4294967295

local function ajs_id()
  return format("ajs-next-%08x%08x%08x%08x", random(0, MAX32), random(0, MAX32),
    random(0, MAX32), random(0, MAX32))
end

local function uuid4()
  return format("%08x-%04x-4%03x-%s%03x-%04x%08x", random(0, MAX32), random(0, 65535),
    random(0, 4095), variant[random(1, 4)], random(0, 4095), random(0, 65535), random(0, MAX32))
end

local function seed()
  local f = io.open("/dev/urandom", "rb")
  local bytes = f:read(4)
  f:close()
  local n = 0
  for k = 1, 4 do n = n * 256 + string.byte(bytes, k) end
  math.randomseed(n)
  -- LuaJIT's first draws after seeding are poorly mixed.
  for _ = 1, 16 do random() end
end

function init(args)
  seed()
  for line in io.lines(args[1]) do
    local tab = string.find(line, "\t", 1, true)
    local kind = string.sub(line, 1, tab - 1)
    local make = nil
    if kind == "ajs" then make = ajs_id elseif kind == "uuid" then make = uuid4 end
    local parts = split(string.sub(line, tab + 1))
    local length = 0
    for _, part in ipairs(parts) do length = length + #part end
    if make then length = length + (#parts - 1) * #make() end
    -- The request head once per template: every id of a kind has the same length.
    local head = { format("%s %s HTTP/1.1", wrk.method, wrk.path), "Host: " .. wrk.host }
    for name, value in pairs(wrk.headers) do
      if name ~= "Host" then head[#head + 1] = name .. ": " .. value end
    end
    head[#head + 1] = "Content-Length: " .. length
    parts[1] = concat(head, "\r\n") .. "\r\n\r\n" .. parts[1]
    templates[#templates + 1] = { parts = parts, make = make }
  end
  if args[2] == "static" then
    local first = templates[1]
    local out = { first.parts[1] }
    for i = 2, #first.parts do
      out[#out + 1] = first.make and first.make() or ""
      out[#out + 1] = first.parts[i]
    end
    static_request = concat(out)
  end
end

function request()
  if static_request then return static_request end
  local t = templates[random(1, #templates)]
  local parts, make = t.parts, t.make
  local out = { parts[1] }
  local n = 1
  for i = 2, #parts do
    out[n + 1] = make()
    out[n + 2] = parts[i]
    n = n + 2
  end
  return concat(out)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,'
      .. '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end

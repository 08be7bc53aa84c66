-- wrk script for bench/wrk.ts's loads that rotate over several paths (bench/cluster.ts: one function per
-- path, so that HAProxy's hash spreads them over the nodes): GETs to the paths in turn, every response
-- checked against the expected body byte for byte, and the run ends with wrk-check.lua's JSON line
-- (latencies in microseconds).
-- Arguments after `--`: the expected body's file, then the paths.
expected, bad, threads, paths, turn = nil, 0, {}, {}, 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  expected = f:read("*a")
  f:close()
  for i = 2, #args do table.insert(paths, args[i]) end
  assert(#paths > 0, "wrk-rotate.lua: no paths given after the expected body's file")
end

function request()
  turn = turn % #paths + 1
  return wrk.format(nil, paths[turn])
end

function response(status, headers, body)
  if status ~= 200 or body ~= expected then bad = bad + 1 end
end

function done(summary, latency, requests)
  local b = 0
  for _, t in ipairs(threads) do b = b + t:get("bad") end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"durationUs":%d,"bad":%d,"errors":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d}\n',
    summary.requests, summary.duration, b, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end

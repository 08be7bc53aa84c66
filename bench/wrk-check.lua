-- wrk script for bench/wrk.ts: every response is checked against the expected body, byte for byte,
-- and the run ends with one JSON line (latencies in microseconds).
-- Arguments after `--`: the expected body's file, then optionally the request body's file (a POST).
expected, bad, threads = nil, 0, {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  expected = f:read("*a")
  f:close()
  if args[2] then
    local b = assert(io.open(args[2], "rb"))
    wrk.method = "POST"
    wrk.body = b:read("*a")
    wrk.headers["Content-Type"] = "application/octet-stream"
    b:close()
  end
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

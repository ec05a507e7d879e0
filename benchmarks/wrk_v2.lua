-- wrk script of `python -m benchmarks` and tests/service/test_reliability_soak.py (both through
-- benchmarks/wrk.py): KServe v2 binary-tensor POSTs.
--
--   wrk ... -s benchmarks/wrk_v2.lua URL -- BODY_FILE HEADER_LENGTH [DELAY_MS]
--
-- BODY_FILE: the whole request body (JSON header, then the raw tensor bytes), sent as is;
--            "-" sends GET requests without a body (a trivial endpoint).
-- HEADER_LENGTH: the JSON header's length (Inference-Header-Content-Length).
-- DELAY_MS: wait this long before each request on a connection (0: none); paces the load
--           below saturation.
-- done() prints one line "WRK_JSON {...}" with exact percentiles, parsed by benchmarks/wrk.py.

local delay_ms = 0

function init(args)
  local body_file = args[1] or "-"
  delay_ms = tonumber(args[3] or "0") or 0
  if body_file ~= "-" then
    local f = assert(io.open(body_file, "rb"))
    wrk.body = f:read("*a")
    f:close()
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/octet-stream"
    wrk.headers["Inference-Header-Content-Length"] = args[2]
  else
    wrk.method = "GET"
  end
  -- defined here, not at the top: wrk only takes the per-request hook (a timer per request)
  -- when a run asks for it. No response limit: wrk's main thread sleeps the whole -d anyway.
  if delay_ms > 0 then
    delay = function() return delay_ms end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,' ..
    '"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p99.9":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end

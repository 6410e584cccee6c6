-- wrk script: POST pre-signed webhook deliveries, each body at most once.
--
-- Environment:
--   BENCH_POOL   file with one request per line: "<signature>\t<body>"
--   BENCH_PATH   request path, for example /hooks/bench-hmac
--   BENCH_HEADER signature header name (default x-signature)
--   BENCH_THREADS   the wrk -t value, so each thread takes its own lines
--   BENCH_DELAY_MS  pause before each request on a connection (default 0), which
--                   gives an offered rate of about connections * 1000 / delay.
--
-- Thread i of n sends lines i, i + n, i + 2n, ... so no two threads send the same
-- body. A thread that runs out of lines starts again at its first line and counts
-- the wrap: those requests are redeliveries (answered 200) and the caller must
-- treat a run with wraps as invalid.

local threads = {}
local counter = 1

function setup(thread)
  thread:set("index", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local thread_count = tonumber(os.getenv("BENCH_THREADS") or "1")
  pool = {}
  local path = os.getenv("BENCH_POOL")
  local route_path = os.getenv("BENCH_PATH")
  local header = os.getenv("BENCH_HEADER") or "x-signature"
  delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
  local line_number = 0
  for line in io.lines(path) do
    if (line_number % thread_count) == (index - 1) then
      local tab = string.find(line, "\t", 1, true)
      local signature = string.sub(line, 1, tab - 1)
      local body = string.sub(line, tab + 1)
      local headers = {}
      headers["Content-Type"] = "application/json"
      headers[header] = signature
      table.insert(pool, wrk.format("POST", route_path, headers, body))
    end
    line_number = line_number + 1
  end
  position = 0
  wraps = 0
  non_202 = 0
end

function request()
  position = position + 1
  if position > #pool then
    position = 1
    wraps = wraps + 1
  end
  return pool[position]
end

-- Defined only when a delay is set, because wrk routes every request through a
-- timer once a delay() function exists.
if tonumber(os.getenv("BENCH_DELAY_MS") or "0") > 0 then
  function delay()
    return delay_ms
  end
end

function response(status, headers, body)
  if status ~= 202 then
    non_202 = non_202 + 1
  end
end

function done(summary, latency, requests)
  local wrapped = 0
  local unexpected = 0
  for _, thread in ipairs(threads) do
    wrapped = wrapped + (thread:get("wraps") or 0)
    unexpected = unexpected + (thread:get("non_202") or 0)
  end
  io.write(string.format(
    "BENCH_JSON {\"requests\": %d, \"duration_us\": %d, \"bytes\": %d, " ..
    "\"errors_connect\": %d, \"errors_read\": %d, \"errors_write\": %d, " ..
    "\"errors_status\": %d, \"errors_timeout\": %d, \"non_202\": %d, " ..
    "\"wraps\": %d, \"latency_us\": {\"p50\": %d, \"p90\": %d, \"p99\": %d, " ..
    "\"max\": %d, \"mean\": %.1f}}\n",
    summary.requests, summary.duration, summary.bytes,
    summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout, unexpected, wrapped,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end

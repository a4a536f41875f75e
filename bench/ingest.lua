-- wrk script for bench/ingest.py: realistic SMS status callbacks, a distinct MessageSid each.
-- Each thread numbers its own requests; the thread id keeps the SIDs distinct across threads.
-- Any answer other than 2xx counts in errors_status (wrk's own count), so no response() hook
-- (which would cost wrk a Lua call per response).

local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

local statuses = {"queued", "sent", "delivered", "delivered", "delivered", "undelivered", "failed"}
local codes = {["undelivered"] = "30003", ["failed"] = "30008"}

function init(args)
  path = args[1] or "/callbacks/sms?campaign=spring-sale"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end

function request()
  counter = counter + 1
  local status = statuses[counter % #statuses + 1]
  local body = string.format(
    "MessageSid=SM%02d%030d&MessageStatus=%s&ErrorCode=%s"
    .. "&AccountSid=AC7f2c14a8e6b94d0fa1c3e5b7d9f0a2c4&From=%%2B15550001111&To=%%2B1555%07d"
    .. "&Body=Spring+sale%%3A+20%%25+off+everything+this+weekend.+Reply+STOP+to+opt+out"
    .. "&NumMedia=0&NumSegments=1&ApiVersion=2010-04-01",
    tid, counter, status, codes[status] or "", counter % 10000000)
  return wrk.format("POST", path, nil, body)
end

function done(summary, latency, requests)
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "errors_connect": %d, '
    .. '"errors_read": %d, "errors_write": %d, "errors_status": %d, "errors_timeout": %d, '
    .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end

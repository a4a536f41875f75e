-- wrk script for bench/ingest.py: realistic status callbacks, a distinct SID each, in one
-- provider format (the second argument): compat (the Compatibility form, the default),
-- signalwire-rest (SignalWire's REST messaging status JSON), swml (an SWML call state
-- event) or event-streams (a Twilio Event Streams batch of one CloudEvent).
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

local call_states = {"created", "ringing", "answered", "ended", "ended", "ended"}
local end_reasons = {"hangup", "hangup", "busy", "no_answer"}

function init(args)
  format = args[2] or "compat"
  local default = "/callbacks/sms?campaign=spring-sale"
  if format == "swml" then default = "/callbacks/voice?campaign=spring-sale" end
  path = args[1] or default
  if format == "compat" then
    wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  else
    wrk.headers["Content-Type"] = "application/json"
  end
end

local function compat(status)
  return string.format(
    "MessageSid=SM%02d%030d&MessageStatus=%s&ErrorCode=%s"
    .. "&AccountSid=AC7f2c14a8e6b94d0fa1c3e5b7d9f0a2c4&From=%%2B15550001111&To=%%2B1555%07d"
    .. "&Body=Spring+sale%%3A+20%%25+off+everything+this+weekend.+Reply+STOP+to+opt+out"
    .. "&NumMedia=0&NumSegments=1&ApiVersion=2010-04-01",
    tid, counter, status, codes[status] or "", counter % 10000000)
end

local function rest(status)
  local code = codes[status]
  return string.format(
    '{"id":"%02d000000-e5f6-7890-abcd-%012d","project_id":"b2c3d4e5-f6a7-8901-bcde-f12345678901",'
    .. '"status":"%s","to":"+1555%07d","from":"+15550001111",'
    .. '"body":"Spring sale: 20%% off everything this weekend. Reply STOP to opt out",'
    .. '"number_of_segments":1,"timestamp":"2026-03-17T22:26:57Z","error_code":%s,'
    .. '"error_message":null}',
    tid, counter, status, counter % 10000000, code or "null")
end

local function swml()
  local state = call_states[counter % #call_states + 1]
  local reason = "null"
  if state == "ended" then reason = '"' .. end_reasons[counter % #end_reasons + 1] .. '"' end
  return string.format(
    '{"event_type":"calling.call.state","event_channel":"swml:bench",'
    .. '"timestamp":1640000000.123,"project_id":"b2c3d4e5-f6a7-8901-bcde-f12345678901",'
    .. '"space_id":"a1b2c3d4-e5f6-7890-abcd-ef1234567890","params":{'
    .. '"call_id":"%02d000000-da60-4998-90ad-%012d","node_id":"n-1","call_state":"%s",'
    .. '"direction":"outbound","device":{"type":"phone","params":{'
    .. '"from_number":"+15550001111","to_number":"+1555%07d"}},"end_reason":%s}}',
    tid, counter, state, counter % 10000000, reason)
end

local function event_streams(status)
  local code = ""
  if codes[status] then code = ',"errorCode":' .. codes[status] end
  return string.format(
    '[{"specversion":"1.0","type":"com.twilio.messaging.message.%s",'
    .. '"source":"/2010-04-01/Accounts/AC7f2c14a8e6b94d0fa1c3e5b7d9f0a2c4/Messages",'
    .. '"id":"EV%02d%030d","dataschema":"https://events-schemas.twilio.com/Messaging.MessageStatus/7",'
    .. '"datacontenttype":"application/json","time":"2026-03-17T22:26:57.123Z","data":{'
    .. '"messageSid":"SM%02d%030d","timestamp":"2026-03-17T22:26:57.123Z",'
    .. '"accountSid":"AC7f2c14a8e6b94d0fa1c3e5b7d9f0a2c4","from":"+15550001111",'
    .. '"to":"+1555%07d","messageStatus":"%s",'
    .. '"body":"Spring sale: 20%% off everything this weekend. Reply STOP to opt out",'
    .. '"numberOfSegments":1%s}}]',
    status, tid, counter, tid, counter, counter % 10000000, string.upper(status), code)
end

function request()
  counter = counter + 1
  local status = statuses[counter % #statuses + 1]
  local body
  if format == "signalwire-rest" then
    body = rest(status)
  elseif format == "swml" then
    body = swml()
  elseif format == "event-streams" then
    body = event_streams(status)
  else
    body = compat(status)
  end
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

-- Paid-path wrk run: every request carries a different pre-generated payment.
-- args: <file prefix> <header name> <path>; thread N reads "<prefix>.N.txt" (one base64 payment a line)
-- and uses each line once. If a thread runs out it starts over, and those replays are counted.
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

function init(args)
  payments = {}
  local f = assert(io.open(args[1] .. "." .. id .. ".txt", "r"))
  for line in f:lines() do
    if #line > 0 then payments[#payments + 1] = line end
  end
  f:close()
  npay = #payments
  header = args[2]
  path = args[3]
  index = 0
  wrapped = 0
  ok = 0
  not_ok = 0
end

function request()
  index = index + 1
  if index > #payments then
    index = 1
    wrapped = wrapped + 1
  end
  local headers = {}
  headers[header] = payments[index]
  return wrk.format("GET", path, headers)
end

function response(status, headers, body)
  if status == 200 then ok = ok + 1 else not_ok = not_ok + 1 end
end

function done(summary, latency, requests)
  local ok_total, not_ok_total, sent, available, wrapped_total = 0, 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    ok_total = ok_total + thread:get("ok")
    not_ok_total = not_ok_total + thread:get("not_ok")
    sent = sent + thread:get("index") + thread:get("wrapped") * thread:get("npay")
    available = available + thread:get("npay")
    wrapped_total = wrapped_total + thread:get("wrapped")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"mean_us":%.1f,"status_errors":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,' ..
    '"ok":%d,"not_ok":%d,"payments_sent":%d,"payments_available":%d,"wrapped":%d}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.status, e.connect, e.read, e.write, e.timeout,
    ok_total, not_ok_total, sent, available, wrapped_total))
end

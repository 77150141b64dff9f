-- A new text on every request, each one named: X-Request-ID "<run>-<thread>-<n>" is part of the
-- text, the app echoes it back, and each thread keeps "<id> <status> <error code>" per response.
-- done() writes them all to BENCH_STATUS_FILE, so the orchestrator can count answers by status
-- and find the history row of every request answered 200.
local run_id = os.getenv("BENCH_RUN_ID")
local api_key = os.getenv("BENCH_API_KEY")
local counter = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_id", #threads)
end

function init(args)
  outcomes = {} -- a global of the thread's Lua state, so that done() can read it
end

function request()
  counter = counter + 1
  local id = string.format("%s-%d-%d", run_id, thread_id, counter)
  local body = string.format(
    '{"operation":"summarize","text":"Fault bench %s: the ferry left on time and the harbour'
      .. ' stayed calm."}', id)
  local headers = {["Content-Type"] = "application/json", ["X-API-Key"] = api_key,
    ["X-Request-ID"] = id}
  return wrk.format("POST", nil, headers, body)
end

function response(status, headers, body)
  local id = headers["x-request-id"] or "?"
  local code = status == 200 and "-" or (string.match(body, '"code":"([%w_]+)"') or "?")
  outcomes[#outcomes + 1] = id .. " " .. status .. " " .. code
end

function done(summary, latency, requests)
  local out = assert(io.open(os.getenv("BENCH_STATUS_FILE"), "w"))
  for _, thread in ipairs(threads) do
    for _, line in ipairs(thread:get("outcomes")) do
      out:write(line, "\n")
    end
  end
  out:close()
end

-- A POST whose text is new on every request: each one is a true cache miss (lookup, provider
-- call, cache write). `Cache-Control: no-cache` with a fixed text would not do: it skips the
-- lookup a real miss pays for, and single-flight would merge the concurrent identical requests
-- into one provider call. The run id keeps texts apart across wrk runs (the warm-up's texts are
-- cached); the thread id keeps them apart across wrk's threads (each has its own Lua state).
local run_id = os.getenv("BENCH_RUN_ID")
local api_key = os.getenv("BENCH_API_KEY")
local counter = 0
local threads_created = 0

-- Runs in the main Lua state; `thread:set` makes `thread_id` a global of that thread's state.
function setup(thread)
  threads_created = threads_created + 1
  thread:set("thread_id", threads_created)
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"operation":"sentiment","text":"Benchmark run %s, thread %d, request %d: the new release'
      .. ' is fast and reliable, and the support team was helpful."}',
    run_id, thread_id, counter)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["X-API-Key"] = api_key}, body)
end

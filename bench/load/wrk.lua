-- Every request is a distinct signed event, sent exactly as written by
-- cli/examples/load_payloads.rs into $PAYLOADS.<thread> (one file per wrk thread, each
-- request ended by a NUL byte), so that a receiver that deduplicates does real
-- work for each one and wrk spends no time building requests: the load
-- generator shares the machine with the server it measures.
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function ready_file(n)
  return os.getenv("PAYLOADS") .. ".ready." .. n
end

function init(args)
  -- wrk runs each thread's init just before starting that thread, so the
  -- first thread would send alone while the next one loads its file. Each
  -- thread says here when it has loaded, and none sends before all have
  -- (see request): the run's clock starts once every thread has started.
  files = 0
  while exists(os.getenv("PAYLOADS") .. "." .. files) do files = files + 1 end
  if id == 0 then
    for n = 0, files - 1 do os.remove(ready_file(n)) end
  end
  local f = assert(io.open(os.getenv("PAYLOADS") .. "." .. id, "rb"))
  local all = f:read("a")
  f:close()
  requests = {}
  local from = 1
  while true do
    local nul = all:find("\0", from, true)
    if nul == nil then break end
    requests[#requests + 1] = all:sub(from, nul - 1)
    from = nul + 1
  end
  sent = 0
  reused = 0
  assert(io.open(ready_file(id), "wb")):close()
  started = false
end

local function wait_for_every_thread()
  for n = 0, files - 1 do
    while not exists(ready_file(n)) do os.execute("sleep 0.01") end
  end
  started = true
end

function request()
  -- wrk calls the first thread's request() once more on its main thread,
  -- before starting the others, to check the request: that one must not wait.
  if not started and not (id == 0 and sent == 0) then wait_for_every_thread() end
  sent = sent + 1
  local r = requests[sent]
  if r == nil then
    reused = reused + 1
    r = requests[((sent - 1) % #requests) + 1]
  end
  return r
end

function done(summary, latency, requests)
  local reused_total = 0
  for _, t in ipairs(threads) do
    reused_total = reused_total + (t:get("reused") or 0)
  end
  io.write(string.format("RESULT requests=%d non2xx=%d errors=%d reused=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d\n",
    summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    reused_total, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99)))
end

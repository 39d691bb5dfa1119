-- Every request is a distinct signed event, sent exactly as written by
-- gen_payloads.py into $PAYLOADS.<thread> (one file per wrk thread, each
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

function init(args)
  -- Each thread reads only its own file: wrk runs each thread's init just
  -- before starting it, so a long init would let the first thread send alone.
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
end

function request()
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

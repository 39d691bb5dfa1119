-- Every request is a distinct signed event from $PAYLOADS.<thread> (lines of
-- "<Stripe-Signature>\t<body>", one file per wrk thread), so that a receiver
-- that deduplicates does real work for each one.
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  -- Each thread reads only its own file ($PAYLOADS.<thread>): wrk runs each
  -- thread's init just before starting it, so a long init would let the first
  -- thread send alone, outside wrk's clock, for as long as the next one loads.
  payloads = {}
  for line in io.lines(os.getenv("PAYLOADS") .. "." .. id) do
    local tab = line:find("\t", 1, true)
    payloads[#payloads + 1] = { line:sub(1, tab - 1), line:sub(tab + 1) }
  end
  sent = 0
  reused = 0
end

function request()
  sent = sent + 1
  local p = payloads[sent]
  if p == nil then
    reused = reused + 1
    p = payloads[((sent - 1) % #payloads) + 1]
  end
  return wrk.format("POST", os.getenv("TARGET_PATH") or "/webhooks/stripe",
    { ["Content-Type"] = "application/json", ["Stripe-Signature"] = p[1] }, p[2])
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

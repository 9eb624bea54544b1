-- wrk's done() hook for scripts/bench_serve.py: wrk reports in text only, so the run's summary
-- is written as one JSON object to the file named by $WRK_REPORT. Times are in microseconds,
-- from wrk's own latency histogram (one sample per response, closed loop: each connection sends
-- its next request when the last answer is in). "errors.status" counts answers that were not
-- 2xx or 3xx, which bench_serve.py refuses.
--
--   WRK_REPORT=run.json wrk -t1 -c16 -d10s -s scripts/bench_serve.lua http://127.0.0.1:8080/key

done = function(summary, latency, requests)
  local path = os.getenv("WRK_REPORT")
  if path == nil or path == "" then
    error("set WRK_REPORT to the file the summary goes to")
  end
  local errors = summary.errors
  local report = string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout
  )
  local file = assert(io.open(path, "w"))
  file:write(report)
  file:close()
end

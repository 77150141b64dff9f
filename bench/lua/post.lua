-- A fixed POST: every request carries the same body, so after the first it is a cache hit
-- (or, on the breaker-open server, the same fast failure). The request is built once per
-- thread and replayed, which keeps wrk's own cost per request as low as for a plain GET.
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = os.getenv("BENCH_API_KEY")

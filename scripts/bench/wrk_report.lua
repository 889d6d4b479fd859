-- wrk script: at the end of a run, print one line "WRKJSON {...}" with the request count,
-- errors, duration and the latency distribution (microseconds) for compare.sh.
local points = { 0, 1, 5, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 92.5, 95, 97.5, 98, 99,
	99.5, 99.75, 99.9, 99.95, 99.99, 100 }

done = function(summary, latency, requests)
	local e = summary.errors
	local dist = {}
	for _, p in ipairs(points) do
		local v = (p == 0) and latency.min or (p == 100) and latency.max or latency:percentile(p)
		dist[#dist + 1] = string.format("[%g,%d]", p, v)
	end
	io.write(string.format(
		'WRKJSON {"requests":%d,"bytes":%d,"duration_us":%d,"errors":%d,"non2xx":%d,' ..
		'"mean_us":%.1f,"p50_us":%d,"p99_us":%d,"dist":[%s]}\n',
		summary.requests, summary.bytes, summary.duration,
		e.connect + e.read + e.write + e.timeout, e.status, latency.mean,
		latency:percentile(50), latency:percentile(99), table.concat(dist, ",")))
end

#!/usr/bin/env bash
# Fairness on one worker (--workers 1): while one pod pulls large compressed JSON bodies in a
# loop (each decoded and masked, ~24 MB), another pod's small requests on the same worker stay
# fast: their median latency stays within 3x of idle (+2 ms on a noisy VM). The agent reads a
# compressed body 4 KiB per wake-up, so no wake-up decodes more than ~800 KB.
source "$(dirname "$0")/dp_lib.sh"
dp_init "$1"
dp_policy pii closed 'app-*' 'none' $DP_SPORT
dp_pod app-heavy 1
dp_pod app-probe 2
DP_AGENT_EXTRA="${DP_AGENT_EXTRA:-} --workers 1" dp_agent_start || { not_ok "agent starts"; dp_done; exit; }
check "agent listens in the probe's netns" dp_wait_listener app-probe

# probe N: the median (ms) of N sequential requests on one keep-alive connection.
probe() {
	dp_in app-probe python3 -c '
import http.client, statistics, sys, time
c = http.client.HTTPConnection("10.211.2.1", int(sys.argv[1]), timeout=10)
ts = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    c.request("GET", "/customers")
    b = c.getresponse().read()
    ts.append((time.perf_counter() - t) * 1000)
    assert b"XXX-XX-6789" in b
    time.sleep(0.01)
print("%.2f" % statistics.median(ts))' $DP_SPORT "$1"
}
probe 20 >/dev/null # warm-up
idle=$(probe 60)
dp_in app-heavy curl -s --max-time 30 --compressed -o /dev/null http://10.211.1.1:$DP_SPORT/gzbig # the server builds it once
dp_in app-heavy python3 -c '
import http.client, sys, time
c = http.client.HTTPConnection("10.211.1.1", int(sys.argv[1]), timeout=60)
end, n = time.time() + float(sys.argv[2]), 0
while time.time() < end:
    c.request("GET", "/gzbig", headers={"Accept-Encoding": "gzip"})
    n += len(c.getresponse().read())
print(n)' $DP_SPORT 8 >"$DP_DIR/heavy.txt" &
HEAVY=$!
sleep 1
busy=$(probe 60)
wait $HEAVY
echo "# probe median: idle $idle ms, beside the heavy pod $busy ms; heavy pod read $(cat "$DP_DIR/heavy.txt") bytes"
check "the heavy pod was served (compressed bodies, decoded and masked)" test "$(cat "$DP_DIR/heavy.txt")" -gt 1000000
check "the other pod's median latency within 3x of idle + 2 ms ($idle -> $busy ms)" \
	awk -v i="$idle" -v b="$busy" 'BEGIN { exit !(b <= 3 * i + 2) }'
dp_done

#!/usr/bin/env bash
# Agent failure: kill -9 mid-stream never hangs the app; while the agent is down a
# failureMode=closed destination is refused at once and a failureMode=open one passes
# unmasked (counted once the agent is back); a restarted agent reuses the pinned maps and
# links and masks again; SIGTERM shuts down cleanly.
source "$(dirname "$0")/dp_lib.sh"
dp_init "$1"
OPEN_PORT=$((DP_SPORT + 1))

dp_policy strict closed 'app-*' 'none' $DP_SPORT
dp_policy lenient open 'app-*' 'none' $OPEN_PORT
dp_pod app-a 1
dp_agent_start || { not_ok "agent starts"; dp_done; exit; }
check "agent listens in the pod's netns" dp_wait_listener app-a
orig=$DP_DIR/orig.json
ip netns exec "$DP_NS_SRV" curl -s --max-time 5 http://127.0.0.1:$DP_SPORT/customers >"$orig"
masked() { grep -q '"XXX-XX-6789"' "$1" && ! grep -q '123-45-6789' "$1"; }

dp_in app-a curl -s --max-time 5 http://10.211.1.1:$DP_SPORT/customers >"$DP_DIR/a.json"
check "closed-mode destination masked while the agent runs" masked "$DP_DIR/a.json"
dp_in app-a curl -s --max-time 5 http://10.211.1.1:$OPEN_PORT/customers >"$DP_DIR/b.json"
check "open-mode destination masked while the agent runs" masked "$DP_DIR/b.json"

# kill -9 while a response is in flight (the server sends headers, then pauses).
start=$(date +%s.%N)
dp_in app-a curl -s --max-time 25 http://10.211.1.1:$DP_SPORT/slow >/dev/null &
cpid=$!
sleep 1
dp_agent_kill
wait $cpid
rc=$?
el=$(echo "$(date +%s.%N) - $start" | bc)
check "kill -9 mid-stream: client fails (rc=$rc) instead of hanging" test $rc -ne 0 -a $rc -ne 28
check "kill -9 mid-stream: client returns within 5 s (${el}s)" test "$(echo "$el < 5" | bc)" = 1

start=$(date +%s.%N)
dp_in app-a curl -s --max-time 10 http://10.211.1.1:$DP_SPORT/customers >"$DP_DIR/c.json"
rc=$?
el=$(echo "$(date +%s.%N) - $start" | bc)
check "agent down, closed mode: connection refused (curl rc=$rc)" test $rc -eq 7
check "agent down, closed mode: refused at once (${el}s)" test "$(echo "$el < 2" | bc)" = 1
check "agent down, closed mode: nothing unmasked received" test ! -s "$DP_DIR/c.json"

sleep 3.5 # heartbeat goes stale after 3 s
dp_in app-a curl -s --max-time 10 http://10.211.1.1:$OPEN_PORT/customers >"$DP_DIR/d.json"
check "agent down, open mode: passes unmasked (original bytes)" cmp -s "$orig" "$DP_DIR/d.json"
dp_in app-a curl -s --max-time 10 http://10.211.1.1:$DP_SPORT/customers >/dev/null
check "agent down, closed mode: still refused after the heartbeat went stale" test $? -eq 7

dp_agent_start || not_ok "agent restarts"
check "restarted agent reused the pinned links" bash -c "! grep -q 'not reusable' $DP_DIR/agent.log"
check "restarted agent listens again" dp_wait_listener app-a
sleep 1.2 # one stats collection
dp_in app-a curl -s --max-time 5 http://10.211.1.1:$DP_SPORT/customers >"$DP_DIR/e.json"
check "after restart: closed-mode destination masked again" masked "$DP_DIR/e.json"
dp_in app-a curl -s --max-time 5 http://10.211.1.1:$OPEN_PORT/customers >"$DP_DIR/f.json"
check "after restart: open-mode destination masked again" masked "$DP_DIR/f.json"
passed=$(dp_metric 'meshmask_flows_passed_total.*agent_down')
refused=$(dp_metric 'meshmask_flows_refused_total.*agent_down')
check "flows passed while down are counted after restart ($passed)" test "$passed" -ge 1
check "flows refused while down (heartbeat stale) are counted after restart ($refused)" test "$refused" -ge 1

# Clean shutdown: SIGTERM stops the agent; its listeners go away.
kill -TERM $DP_AGENT_PID
for _ in $(seq 50); do kill -0 $DP_AGENT_PID 2>/dev/null || break; sleep 0.1; done
check "SIGTERM: agent exits" bash -c "! kill -0 $DP_AGENT_PID 2>/dev/null"
wait $DP_AGENT_PID
check "SIGTERM: exit status 0" test $? -eq 0
DP_AGENT_PID=
check "SIGTERM: listener closed" dp_wait_listener app-a absent
if command -v bpftool >/dev/null; then
	check "agent gone: its cgroup/getsockopt program left its cgroup with it" \
		bash -c "! bpftool cgroup show '$DP_CG_AGENT' | grep -q mm_getsockopt"
fi
dp_in app-a curl -s --max-time 10 http://10.211.1.1:$OPEN_PORT/customers >"$DP_DIR/g.json"
check "after clean shutdown, open mode passes at once (heartbeat cleared)" cmp -s "$orig" "$DP_DIR/g.json"

dp_done

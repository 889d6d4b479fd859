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

# kill -9 while a response is in flight: the server sends its head, then pauses 30 s (longer
# than curl's --max-time, so a client left hanging ends with rc 28). The agent holds a masked
# response's head, so "in flight" is the head received by the agent's upstream socket.
head_at_agent() {
	ip netns exec "mmapp-a$DP_ID" ss -Htni state established "( dport = :$DP_SPORT )" |
		grep -q 'bytes_received:[1-9]'
}
start=$(date +%s.%N)
dp_in app-a curl -s --max-time 25 http://10.211.1.1:$DP_SPORT/slow >/dev/null &
cpid=$!
check "kill -9 mid-stream: the response head reached the agent" dp_until 20 head_at_agent
dp_agent_kill
wait $cpid
rc=$?
el=$(echo "$(date +%s.%N) - $start" | bc)
check "kill -9 mid-stream: client fails (rc=$rc after ${el}s) instead of hanging" \
	test $rc -ne 0 -a $rc -ne 28

# Refused means rc 7 (a reset to the SYN): a dropped or unanswered SYN would end in rc 28.
start=$(date +%s.%N)
dp_in app-a curl -s --max-time 10 http://10.211.1.1:$DP_SPORT/customers >"$DP_DIR/c.json"
rc=$?
el=$(echo "$(date +%s.%N) - $start" | bc)
check "agent down, closed mode: connection refused (curl rc=$rc after ${el}s)" test $rc -eq 7
check "agent down, closed mode: nothing unmasked received" test ! -s "$DP_DIR/c.json"

# The heartbeat goes stale 3 s after the agent's last beat: from then on the open-mode
# destination is left alone.
open_passes() {
	dp_in app-a curl -s --max-time 10 http://10.211.1.1:$OPEN_PORT/customers >"$DP_DIR/d.json" &&
		cmp -s "$orig" "$DP_DIR/d.json"
}
check "agent down, open mode: passes unmasked (original bytes) once the heartbeat is stale" \
	dp_until 30 open_passes
dp_in app-a curl -s --max-time 10 http://10.211.1.1:$DP_SPORT/customers >/dev/null
check "agent down, closed mode: still refused after the heartbeat went stale" test $? -eq 7

dp_agent_start || not_ok "agent restarts"
check "restarted agent reused the pinned links" bash -c "! grep -q 'not reusable' $DP_DIR/agent.log"
check "restarted agent listens again" dp_wait_listener app-a
dp_in app-a curl -s --max-time 5 http://10.211.1.1:$DP_SPORT/customers >"$DP_DIR/e.json"
check "after restart: closed-mode destination masked again" masked "$DP_DIR/e.json"
dp_in app-a curl -s --max-time 5 http://10.211.1.1:$OPEN_PORT/customers >"$DP_DIR/f.json"
check "after restart: open-mode destination masked again" masked "$DP_DIR/f.json"
# The kernel's counters reach the metrics at the agent's next stats collection (every second).
down_counted() {
	passed=$(dp_metric 'meshmask_flows_passed_total.*agent_down')
	refused=$(dp_metric 'meshmask_flows_refused_total.*agent_down')
	((passed >= 1 && refused >= 1))
}
passed=0 refused=0
dp_until 30 down_counted
check "flows passed while down are counted after restart ($passed)" test "$passed" -ge 1
check "flows refused while down (heartbeat stale) are counted after restart ($refused)" test "$refused" -ge 1

# Clean shutdown: SIGTERM stops the agent; its listeners go away.
kill -TERM $DP_AGENT_PID
agent_gone() { ! kill -0 $DP_AGENT_PID 2>/dev/null; }
check "SIGTERM: agent exits" dp_until 30 agent_gone
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

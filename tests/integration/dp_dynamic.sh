#!/usr/bin/env bash
# Coverage follows the node without restarting the agent: a pod created after the agent is
# covered as soon as its first process exists (inotify, well before the 1 s rescan); a policy
# added or removed at runtime changes who is steered; a pod that goes away loses its listener.
source "$(dirname "$0")/dp_lib.sh"
dp_init "$1"
dp_policy pii closed 'app-*' 'none' $DP_SPORT
dp_agent_start || { not_ok "agent starts"; dp_done; exit; }
masked() { grep -q '"XXX-XX-6789"' <<<"$1" && ! grep -q '123-45-6789' <<<"$1"; }

# A new pod: time from its first process to the agent's listener in its netns.
t0=$(date +%s%N)
dp_pod app-new 1
dp_wait_listener app-new
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
check "new pod covered without restart" test $rc -eq 0
check "new pod covered within 700 ms of its first process (${ms} ms)" test $ms -lt 700
out=$(dp_in app-new curl -s --max-time 5 http://10.211.1.1:$DP_SPORT/customers)
check "new pod's first request is masked" masked "$out"

# An app that connects the instant its pod exists (no pause process first): failureMode
# closed means it is either masked or refused, never unmasked.
mkdir -p "$DP_CG/app-race"
ip netns add mmapp-race$DP_ID
DP_PODS+=(app-race)
ip -n mmapp-race$DP_ID link set lo up
ip link add mv9a$DP_ID type veth peer name mv9b$DP_ID
ip link set mv9a$DP_ID netns mmapp-race$DP_ID
ip link set mv9b$DP_ID netns "$DP_NS_SRV"
ip -n mmapp-race$DP_ID addr add 10.211.9.2/24 dev mv9a$DP_ID
ip -n "$DP_NS_SRV" addr add 10.211.9.1/24 dev mv9b$DP_ID
ip -n mmapp-race$DP_ID link set mv9a$DP_ID up
ip -n "$DP_NS_SRV" link set mv9b$DP_ID up
out=$(dp_in app-race curl -s --max-time 5 http://10.211.9.1:$DP_SPORT/customers)
check "a connection racing pod setup is masked or refused, never unmasked" \
	bash -c '! grep -q "123-45-6789" <<<"$1"' _ "$out"

# A pod no policy covers, then a policy that covers it, added at runtime.
dp_pod batch 2
sleep 0.5
out=$(dp_in batch curl -s --max-time 5 http://10.211.2.1:$DP_SPORT/customers)
check "uncovered pod gets the original" grep -q '123-45-6789' <<<"$out"
dp_policy batchpol closed 'batch' 'none' $DP_SPORT
check "policy added at runtime: listener in the newly covered pod" dp_wait_listener batch
out=$(dp_in batch curl -s --max-time 5 http://10.211.2.1:$DP_SPORT/customers)
check "policy added at runtime: pod now masked" masked "$out"
rm -f "$DP_DIR/policies/batchpol.json"
check "policy removed at runtime: listener closed" dp_wait_listener batch absent
out=$(dp_in batch curl -s --max-time 5 http://10.211.2.1:$DP_SPORT/customers)
check "policy removed at runtime: original again" grep -q '123-45-6789' <<<"$out"

# The pod goes away: its processes end; the listener is closed.
for p in $(cat "$DP_CG/app-new/cgroup.procs"); do kill -9 "$p"; done
for _ in $(seq 30); do grep -q "closed listener of netns" "$DP_DIR/agent.log" && break; sleep 0.1; done
check "pod gone: its listener is closed" grep -q "closed listener of netns" "$DP_DIR/agent.log"
check "agent still running" kill -0 $DP_AGENT_PID

# Uninstall: --detach-on-exit removes the steering at SIGTERM, so even a closed-mode
# destination is reached directly afterwards.
kill -TERM $DP_AGENT_PID
wait $DP_AGENT_PID
DP_AGENT_PID=
dp_agent_start --detach-on-exit || not_ok "agent restarts with --detach-on-exit"
dp_pod app-last 3
check "listener in a covered pod" dp_wait_listener app-last
kill -TERM $DP_AGENT_PID
wait $DP_AGENT_PID
check "--detach-on-exit: clean exit" test $? -eq 0
DP_AGENT_PID=
check "--detach-on-exit: pins removed" test ! -e "$DP_BPFFS/meshmask/$DP_INSTANCE"
out=$(dp_in app-last curl -s --max-time 5 http://10.211.3.1:$DP_SPORT/customers)
check "--detach-on-exit: no steering left (direct connection succeeds)" grep -q '123-45-6789' <<<"$out"
dp_done

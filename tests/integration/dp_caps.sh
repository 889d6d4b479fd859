#!/usr/bin/env bash
# Connection caps (--max-connections-per-pod 3, --max-connections 5): a pod holding its three
# connections gets a fourth refused in HTTP (503, x-meshmask-reason: limit) under failureMode
# closed, relayed unmasked under failureMode open, each counted per pod; a connection given
# back makes room again; the node cap holds across pods. Nothing raw reaches the closed pod.
source "$(dirname "$0")/dp_lib.sh"
dp_init "$1"
PO=$((DP_SPORT + 1))
dp_policy capc closed 'app-c*' 'none' $DP_SPORT
dp_policy capo open 'app-o' 'none' $PO
dp_pod app-c 1
dp_pod app-c2 2
dp_pod app-o 3
DP_AGENT_EXTRA="${DP_AGENT_EXTRA:-} --max-connections-per-pod 3 --max-connections 5" dp_agent_start ||
	{ not_ok "agent starts"; dp_done; exit; }
check "agent listens in the pods' netns" dp_wait_listener app-c

# hold POD IP PORT N SECONDS: N idle connections, each after a request (so the agent has them).
hold() {
	dp_in "$1" python3 -c '
import socket, sys, time
cs = []
for _ in range(int(sys.argv[3])):
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
    s.sendall(b"GET /customers HTTP/1.1\r\nHost: x\r\n\r\n")
    s.recv(65536)
    cs.append(s)
print("held", flush=True)
time.sleep(float(sys.argv[4]))' "$2" "$3" "$4" "$5"
}
hold app-c 10.211.1.1 $DP_SPORT 3 6 >"$DP_DIR/held.txt" &
HOLD=$!
for _ in $(seq 50); do grep -q held "$DP_DIR/held.txt" 2>/dev/null && break; sleep 0.1; done
hdr=$(dp_in app-c curl -s --max-time 5 -D - http://10.211.1.1:$DP_SPORT/customers)
check "pod over its cap (closed): answered 503 with x-meshmask-reason: limit" \
	bash -c 'grep -q "^HTTP/1.1 503" <<<"$1" && grep -qi "^x-meshmask-reason: limit" <<<"$1"' _ "$hdr"
check "pod over its cap (closed): nothing raw" \
	bash -c '! grep -qE "123-45-6789|4111 1111 1111 1111" <<<"$1"' _ "$hdr"
out=$(dp_in app-c2 curl -s --max-time 5 http://10.211.2.1:$DP_SPORT/customers)
check "another pod of the same policy is served (masked)" grep -q '"XXX-XX-6789"' <<<"$out"

# The node cap (5): app-c holds 3, app-o takes 2 more, the next from app-o is past the node cap;
# app-o's policy is failureMode open: relayed unmasked, as if the agent were down.
hold app-o 10.211.3.1 $PO 2 4 >"$DP_DIR/held-o.txt" &
HOLD_O=$!
for _ in $(seq 50); do grep -q held "$DP_DIR/held-o.txt" 2>/dev/null && break; sleep 0.1; done
out=$(dp_in app-o curl -s --max-time 5 http://10.211.3.1:$PO/customers)
check "past the node cap under failureMode open: relayed unmasked" grep -q '"123-45-6789"' <<<"$out"
wait $HOLD $HOLD_O
for _ in $(seq 30); do # the held connections are given back as they close
	out=$(dp_in app-c curl -s --max-time 5 http://10.211.1.1:$DP_SPORT/customers)
	grep -q '"XXX-XX-6789"' <<<"$out" && break
	sleep 0.2
done
check "once the pod's connections closed, it is served again (masked)" grep -q '"XXX-XX-6789"' <<<"$out"
m() { dp_metric "$1"; }
check "counted per pod: refused past the pod cap" \
	test "$(m 'meshmask_connections_over_cap_total\{policy="capc",caller="[^"]*app-c",cap="pod",action="refused"\}')" -ge 1
check "counted per pod: passed past the node cap" \
	test "$(m 'meshmask_connections_over_cap_total\{policy="capo",caller="[^"]*app-o",cap="node",action="passed"\}')" -ge 1
check "flows refused and passed for the limit" \
	test "$(m 'meshmask_flows_refused_total\{policy="capc",reason="limit"\}')" -ge 1 -a \
	"$(m 'meshmask_flows_passed_total\{policy="capo",reason="limit"\}')" -ge 1
dp_done

#!/usr/bin/env bash
# Fail closed (issue 13), as an attacker inside a covered pod would try it, through the real
# kernel path: raw-socket requests the agent cannot frame (lenient request lines, HTTP/2 prior
# knowledge, TLS, a line protocol), protocol switches (Upgrade, CONNECT, a 101 nobody asked
# for, a request/response desync into CONNECT), mislabelled and UTF-16 bodies, against a
# deliberately lenient server (bypass_server.py). Under onError fallback and block no raw
# secret reaches the caller (bytes, UTF-16, UTF-32); under onError: pass and tunnels: pass the
# raw bytes pass because the policy says so, and every refusal and pass is counted in
# /metrics and written to the audit log.
source "$(dirname "$0")/dp_lib.sh"
dp_init "$1"
here=$(dirname "$0")
PY=/usr/bin/python3 # Debian's python: the one the suite's other tools use
PF=$((DP_SPORT + 10)) PB=$((DP_SPORT + 11)) PP=$((DP_SPORT + 12)) PT=$((DP_SPORT + 13))
PL=$((DP_SPORT + 14)) PD=$((DP_SPORT + 15))

# bypass_policy NAME PORT SPEC_EXTRA: every secret is covered by a field rule and by an entity
# rule too, so that a fallback entity scan has something to find.
bypass_policy() {
	cat >"$DP_DIR/policies/$1.json" <<JSON
{ "apiVersion": "meshmask.io/v1alpha1", "kind": "MaskingPolicy",
  "metadata": { "name": "$1" },
  "spec": { "mode": "enforce", $3
    "selector": { "destinations": [ { "port": $2 } ], "sources": [ { "cgroup": "$DP_CG_REL/app-*" } ] },
    "rules": [
      { "name": "ssn", "fields": [ "\$..ssn" ], "action": { "type": "mask", "keepLast": 4, "char": "X" } },
      { "name": "ents", "entities": [ "US_SSN", "CREDIT_CARD", "EMAIL_ADDRESS" ], "action": { "type": "mask", "keepLast": 4 } }
    ] } }
JSON
}
bypass_policy bp-fallback $PF '"onError": "fallback",'
bypass_policy bp-block $PB '"onError": "block",'
bypass_policy bp-pass $PP '"onError": "pass",'
bypass_policy bp-tunnels $PT '"onError": "block", "tunnels": "pass",'
bypass_policy bp-line $PL '"onError": "fallback",'
bypass_policy bp-down $PD '"onError": "block",' # nothing listens on PD

ip netns exec "$DP_NS_SRV" $PY "$here/bypass_server.py" "$PF,$PB,$PP,$PT" $PL &
DP_PIDS+=($!)
for _ in $(seq 50); do
	ip netns exec "$DP_NS_SRV" ss -Hltn "sport = :$PL" | grep -q . && break
	sleep 0.1
done
dp_pod app-a 1
DP_AGENT_EXTRA="${DP_AGENT_EXTRA:-} --head-timeout 2" dp_agent_start || { not_ok "agent starts"; dp_done; exit; }
check "agent listens in the pod's netns" dp_wait_listener app-a

# The client's own TAP lines are this test's; its exit status says whether any failed.
out=$(dp_in app-a $PY "$here/bypass_client.py" 10.211.1.1 $PF $PB $PP $PT $PL)
dp_tap "$out"
[[ -n $out ]] || not_ok "the client ran"

# An upstream nobody listens on: the client gets an HTTP answer, not a reset.
hdr=$(dp_in app-a curl -s --max-time 5 -o /dev/null -D - http://10.211.1.1:$PD/customers)
check "unreachable upstream: answered 502 in HTTP" grep -q "^HTTP/1.1 502" <<<"$hdr"
check "unreachable upstream: x-meshmask-reason: upstream_error" \
	grep -qi "^x-meshmask-reason: upstream_error" <<<"$hdr"
body=$(dp_in app-a curl -s --max-time 5 -d '{"x":1}' http://10.211.1.1:$PD/orders)
check "unreachable upstream, a request with a body: answered ($body)" \
	grep -q "upstream server could not be reached" <<<"$body"

# Slowloris with --head-timeout 2: a head trickled a byte every 0.4 s, and a client silent
# since it connected, are answered 408 (x-meshmask-reason: timeout) and closed, within a
# second of the deadline (the sweep runs each second, on whole seconds).
slow() { # slow trickle|silent: prints "<seconds> <first line of the answer>"
	dp_in app-a $PY -c '
import socket, sys, time
s = socket.create_connection(("10.211.1.1", int(sys.argv[2])), timeout=10)
t = time.time()
s.settimeout(0.4)
head = b"GET /customers HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40
got = b""
i = 0
while time.time() - t < 9:
    if sys.argv[1] == "trickle" and i < len(head):
        try:
            s.send(head[i:i + 1])
        except OSError:
            break
        i += 1
    try:
        d = s.recv(4096)
    except socket.timeout:
        continue
    except OSError:
        break
    if not d:
        break
    got += d
print("%.1f %s" % (time.time() - t, got.split(b"\r\n")[0].decode() or "(nothing)"))
if b"x-meshmask-reason: timeout" not in got.lower():
    print("no timeout reason")' "$1" $PB
}
for mode in trickle silent; do
	res=$(slow $mode)
	check "slowloris ($mode): answered 408 after the head timeout ($res)" \
		bash -c '[[ $1 == *"HTTP/1.1 408 Request Timeout" && $1 != *"no timeout reason"* ]] &&
			s=${1%% *} && (( ${s%.*} >= 1 && ${s%.*} <= 4 ))' _ "$res"
done

# Counted and audited. The metrics are the agent's own, read once the client is done.
sleep 0.3
m() { dp_metric "$1"; }
check "refused requests counted (blocked_total, request, not_http)" \
	test "$(m 'meshmask_blocked_total\{policy="bp-block",direction="request",reason="not_http"\}')" -ge 4
check "refused requests counted under fallback too" \
	test "$(m 'meshmask_blocked_total\{policy="bp-fallback",direction="request",reason="not_http"\}')" -ge 4
check "a malformed head counted as bad_http" \
	test "$(m 'meshmask_blocked_total\{policy="bp-block",direction="request",reason="bad_http"\}')" -ge 1
check "the stripped upgrade counted (websocket; h2c is kept: masked as HTTP/2 if taken)" \
	test "$(m 'meshmask_tunnels_total\{policy="bp-block",kind="upgrade",action="stripped"\}')" -ge 1
check "refused switches counted (CONNECT and 101)" \
	test "$(m 'meshmask_tunnels_total\{policy="bp-block",kind="connect",action="refused"\}')" -ge 1 -a \
	"$(m 'meshmask_tunnels_total\{policy="bp-block",kind="upgrade",action="refused"\}')" -ge 2
check "opened tunnels counted as passed unmasked (tunnels: pass)" \
	test "$(m 'meshmask_passed_unmasked_total\{policy="bp-tunnels",direction="response",reason="tunnel"\}')" -ge 2
check "the raw request under onError: pass counted" \
	test "$(m 'meshmask_passed_unmasked_total\{policy="bp-pass",direction="request",reason="not_http"\}')" -ge 1
check "the UTF-16 body under onError: pass counted" \
	test "$(m 'meshmask_passed_unmasked_total\{policy="bp-pass",direction="response",reason="bad_charset"\}')" -ge 1
check "UTF-16 bodies blocked as bad_charset" \
	test "$(m 'meshmask_blocked_total\{policy="bp-fallback",direction="response",reason="bad_charset"\}')" -ge 2
check "the head timeouts counted (flows refused, timeout)" \
	test "$(m 'meshmask_flows_refused_total\{policy="bp-block",reason="timeout"\}')" -ge 2
check "the unreachable upstream counted (flows refused, upstream_error)" \
	test "$(m 'meshmask_flows_refused_total\{policy="bp-down",reason="upstream_error"\}')" -ge 2
check "the server-first banner entity-scanned (fallback)" \
	test "$(m 'meshmask_fallbacks_total\{policy="bp-line",direction="response",reason="not_http"\}')" -ge 1
audit=$DP_DIR/audit.log
check "audit: a refused request, with its answer" \
	grep -q '"event":"error".*"policy":"bp-block".*"direction":"request".*"outcome":"blocked".*"answered":400' "$audit"
check "audit: an opened tunnel" grep -q '"event":"tunnel".*"policy":"bp-tunnels".*"action":"opened"' "$audit"
check "audit: a refused CONNECT" \
	grep -q '"event":"tunnel".*"policy":"bp-block".*"kind":"connect","action":"refused"' "$audit"
check "no secret in the agent's log or audit log" \
	bash -c '! grep -q -e 123-45-6789 -e 4111111111111111 -e ann@example.com "$1" "$2"' _ "$audit" "$DP_DIR/agent.log"
dp_done

#!/usr/bin/env bash
# End to end: a policy that selects callers by namespace and by pod labels, resolved through a
# fake Kubernetes API (identity_kube.py --serve, HTTPS on loopback). Test pods are named like
# systemd-driver pod slices so their UIDs parse from the cgroup path. Checks: the pod in the
# namespace is masked, the pod in another namespace is not until a label change makes it
# match, a pod the API does not know is not covered, and audit events name the caller pod.
# Usage: identity_dp.sh AGENT_BINARY (root).
source "$(dirname "$0")/dp_lib.sh"
dp_init "$1"
command -v openssl >/dev/null || dp_skip "needs openssl"

UID_A=0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0
UID_B=11111111-2222-3333-4444-555555555555
UID_C=c0c0c0c0-0000-4000-8000-000000000003
slice() { echo "kubepods-besteffort-pod${1//-/_}.slice"; }
PA=$(slice $UID_A) PB=$(slice $UID_B) PC=$(slice $UID_C)

pods_json() { # labels of pod B as a JSON object
	cat >"$DP_DIR/kube/pods.json.new" <<JSON
[ { "metadata": { "uid": "$UID_A", "namespace": "shop", "name": "web-1",
                  "labels": { "app": "web" } }, "spec": { "nodeName": "node-1" } },
  { "metadata": { "uid": "$UID_B", "namespace": "batch", "name": "report-1",
                  "labels": $1 }, "spec": { "nodeName": "node-1" } } ]
JSON
	mv "$DP_DIR/kube/pods.json.new" "$DP_DIR/kube/pods.json"
}

mkdir -p "$DP_DIR/kube"
pods_json '{ "app": "report" }'
python3 "$(dirname "$0")/identity_kube.py" --serve "$DP_DIR/kube" &
DP_PIDS+=($!)
for _ in $(seq 100); do [[ -s $DP_DIR/kube/port ]] && break; sleep 0.1; done
[[ -s $DP_DIR/kube/port ]] || { not_ok "fake Kubernetes API starts"; dp_done; exit; }
KPORT=$(cat "$DP_DIR/kube/port")

cat >"$DP_DIR/policies/by-identity.json" <<JSON
{ "apiVersion": "meshmask.io/v1alpha1", "kind": "MaskingPolicy",
  "metadata": { "name": "by-identity" },
  "spec": {
    "mode": "enforce",
    "selector": { "destinations": [ { "port": $DP_SPORT } ],
                  "sources": [ { "namespace": "shop" }, { "labels": { "team": "pay" } } ] },
    "directions": [ "response" ],
    "failureMode": "closed",
    "rules": [
      { "name": "ssn", "fields": [ "\$..ssn" ], "action": { "type": "mask", "keepLast": 4, "char": "X" } } ] } }
JSON

dp_pod "$PA" 1
dp_pod "$PB" 2
dp_pod "$PC" 3
dp_agent_start --kube-api "https://127.0.0.1:$KPORT" --kube-ca-file "$DP_DIR/kube/ca.crt" \
	--kube-token-file "$DP_DIR/kube/token" --node-name node-1 ||
	{ not_ok "agent starts"; dp_done; exit; }
for _ in $(seq 50); do grep -q "known from the API" "$DP_DIR/agent.log" && break; sleep 0.1; done
check "agent learnt the node's pods from the API" grep -q "2 pods of node node-1 known" "$DP_DIR/agent.log"

masked() { grep -q '"XXX-XX-6789"' <<<"$1" && ! grep -q '123-45-6789' <<<"$1"; }
plain() { grep -q '123-45-6789' <<<"$1"; }

check "pod in the selected namespace: listener" dp_wait_listener "$PA"
out=$(dp_in "$PA" curl -s --max-time 5 http://10.211.1.1:$DP_SPORT/customers)
check "pod in the selected namespace: masked" masked "$out"
out=$(dp_in "$PB" curl -s --max-time 5 http://10.211.2.1:$DP_SPORT/customers)
check "pod in another namespace: original" plain "$out"
out=$(dp_in "$PC" curl -s --max-time 5 http://10.211.3.1:$DP_SPORT/customers)
check "pod the API does not know: not covered" plain "$out"

for _ in $(seq 30); do grep -q '"caller"' "$DP_DIR/audit.log" 2>/dev/null && break; sleep 0.1; done
check "audit event names the caller pod (namespace/name)" \
	grep -q '"caller": *"shop/web-1"' "$DP_DIR/audit.log"

# listener_ms NAME present|absent: milliseconds until the agent's listener in pod NAME's
# netns is so (polled every 10 ms, gives up after about 5 s).
listener_ms() {
	local ns=mm$1$DP_ID t0=$(date +%s%N)
	for _ in $(seq 250); do
		if ip netns exec "$ns" ss -Hltn "sport = :$DP_PPORT" | grep -q .; then
			[[ $2 == present ]] && break
		else
			[[ $2 == absent ]] && break
		fi
		sleep 0.01
	done
	echo $((($(date +%s%N) - t0) / 1000000))
}
# A label change on pod B (watch MODIFIED) makes it match the labels source. The identity
# change callback triggers a rescan at once, without waiting for the periodic (1 s) one: the
# fake API notices the file within 100 ms, so allow 500 ms, twice each way.
rescans() { grep -c "rescan after a pod identity change" "$DP_DIR/agent.log"; }
for round in 1 2; do
	n0=$(rescans)
	pods_json '{ "app": "report", "team": "pay" }'
	ms=$(listener_ms "$PB" present)
	check "label added ($round): the pod is covered within 500 ms (${ms} ms)" test "$ms" -lt 500
	check "label added ($round): through an identity-triggered rescan" test "$(rescans)" -gt "$n0"
	out=$(dp_in "$PB" curl -s --max-time 5 http://10.211.2.1:$DP_SPORT/customers)
	check "label added ($round): masked" masked "$out"
	pods_json '{ "app": "report" }'
	ms=$(listener_ms "$PB" absent)
	check "label removed ($round): coverage withdrawn within 500 ms (${ms} ms)" test "$ms" -lt 500
	out=$(dp_in "$PB" curl -s --max-time 5 http://10.211.2.1:$DP_SPORT/customers)
	check "label removed ($round): original again" plain "$out"
done
# Each time, the listener opened within 100 ms of an identity-triggered rescan's start (the
# same rescan, not a periodic one that happened to come first).
check "the listener opened by the identity-triggered rescan" python3 -c '
import datetime, sys
def ts(l):
    return datetime.datetime.strptime(l.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
last, good, opened = None, 0, 0
for l in open(sys.argv[1]):
    if "rescan after a pod identity change" in l:
        last = ts(l)
    elif "listening in netns" in l and sys.argv[2] in l:
        opened += 1
        good += last is not None and ts(l) - last < 0.1
sys.exit(0 if opened >= 2 and good == opened else 1)' "$DP_DIR/agent.log" "$PB"
check "agent still running" kill -0 $DP_AGENT_PID
dp_done

#!/usr/bin/env bash
# The policies' summary status (issue 18): two agents (node-1, node-2, --no-bpf: policies and
# status only) against the fake API (identity_kube.py --serve). One of them holds the Lease and
# sums the MaskingPolicyNodeStatus objects into each policy's status subresource:
#   both apply it -> "2/2", Ready True; a key file missing on node-2 -> "1/2", Ready False,
#   RefusedOnSomeNodes naming node-2 and the pointer; the holder killed -9 -> the other takes
#   the lease once it expired; a node whose agent is down does not report a new generation ->
#   Pending; a namespaced policy is written at its namespaced status path; a node leaves (its
#   Node and, as the garbage collector does, its status object deleted) -> its entry is gone,
#   "1/1". Also `meshmask policy push --cluster` with a kubeconfig (token, then client
#   certificate, CA data inline) writing a resource that both agents then apply.
# Usage: cluster_summary.sh AGENT_BINARY CLI_BINARY. No root needed.
set -uo pipefail
AGENT=${1:?meshmask-agent}
CLI=${2:-}
for t in curl python3 openssl; do
	command -v $t >/dev/null || { echo "1..0 # SKIP needs $t"; exit 77; }
done
T=$(mktemp -d /tmp/crd2-summary.XXXXXX)
PIDS=()
declare -A APID
cleanup() {
	for p in "${PIDS[@]}" "${APID[@]}"; do kill "$p" 2>/dev/null; done
	sleep 0.2
	for p in "${PIDS[@]}" "${APID[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	[[ -n ${KEEP:-} ]] && cp -r "$T" /tmp/crd2-summary-keep
	rm -rf "$T"
}
trap cleanup EXIT
pass=0 fail=0
check() { # check DESC CMD...
	local d=$1
	shift
	if "$@"; then echo "ok - $d"; pass=$((pass + 1)); else echo "not ok - $d"; fail=$((fail + 1)); fi
}
until_s() { # until_s SECONDS CMD...: a deadline for a loaded machine, not a timing assertion
	local end=$((SECONDS + $1))
	shift
	until "$@"; do
		((SECONDS < end)) || return 1
		sleep 0.1
	done
}
# A free port of 31000-31999 (unique per run: several suites run at once).
free_port() {
	python3 -c '
import random, socket
for p in random.sample(range(31000, 32000), 1000):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass'
}

K=$T/kube
mkdir -p "$K"
echo '[]' >"$K/pods.json"
echo '{ "node-1": true, "node-2": true }' >"$K/agents.json" # the agents' Pods: Ready
python3 "$(dirname "$0")/identity_kube.py" --serve "$K" 2>"$T/fakeapi.log" &
PIDS+=($!)
until_s 20 test -s "$K/port" || { echo "not ok - fake Kubernetes API starts"; exit 1; }
KPORT=$(cat "$K/port")
LEASE_NS=crd2-meshmask

# Node keys: node-1 has the hash key, node-2 does not (a Secret not synced there).
mkdir -p "$T/keys-node-1" "$T/keys-node-2"
head -c 32 /dev/urandom >"$T/keys-node-1/email"

# agent NODE: start (or restart) that node's agent; returns once its admin API answers.
agent() {
	local node=$1 port
	port=$(free_port)
	mkdir -p "$T/$node/pol" "$T/$node/state"
	"$AGENT" --no-bpf --policies "$T/$node/pol" --state-dir "$T/$node/state" \
		--admin 127.0.0.1:$port --audit-log "$T/$node/audit.log" --key-dir "$T/keys-$node" \
		--kube-api "https://127.0.0.1:$KPORT" --kube-ca-file "$K/ca.crt" \
		--kube-token-file "$K/token" --node-name "$node" --lease-namespace $LEASE_NS \
		--lease-name crd2-policy-status --lease-seconds 3 --summary-interval-ms 200 \
		--agent-selector app.kubernetes.io/name=meshmask --agent-grace-seconds 2 \
		--status-delay-ms 50 --log-level debug >>"$T/$node.log" 2>&1 &
	APID[$node]=$!
	until_s 10 curl -s -o /dev/null "http://127.0.0.1:$port/healthz"
}
holder() { # the lease's holder as the API has it ("" for none)
	python3 -c '
import json, sys
h = ""
for l in open(sys.argv[1]):
    h = json.loads(l)["lease"]["spec"].get("holderIdentity", "")
print(h)' "$K/leases.jsonl" 2>/dev/null
}
# field PLURAL NS NAME PATH: a field of the last status applied to a policy (dots: keys or
# list indexes; "ready.X": field X of the Ready condition).
field() {
	python3 - "$K/status.jsonl" "$@" <<'PY' 2>/dev/null
import json, sys
f, plural, ns, name, path = sys.argv[1:]
last = None
for l in open(f):
    r = json.loads(l)
    if (r["plural"], r["namespace"], r["name"]) == (plural, ns, name):
        last = r
st = last["body"]["status"]
if path.startswith("ready."):
    st = [c for c in st["conditions"] if c["type"] == "Ready"][0]
    path = path[6:]
for k in path.split("."):
    st = st[int(k)] if isinstance(st, list) else st[k]
print(st)
PY
}
is() { [[ $(field "$1" "$2" "$3" "$4") == "$5" ]]; }
wait_is() { # wait_is PLURAL NS NAME PATH VALUE
	until_s 15 is "$@" || {
		echo "# $4: want '$5', have '$(field "$1" "$2" "$3" "$4")'"
		return 1
	}
}
fields_are() { # PLURAL NS NAME PATH=VALUE...
	local p=$1 n=$2 m=$3 kv
	shift 3
	for kv in "$@"; do
		is "$p" "$n" "$m" "${kv%%=*}" "${kv#*=}" ||
			{ echo "# ${kv%%=*}: $(field "$p" "$n" "$m" "${kv%%=*}")"; return 1; }
	done
}
# crd PLURAL NS|- NAME CHAR [EXTRA_RULE_JSON]: a resource written as `kubectl apply` would.
crd() {
	cat >"$K/crd/.new" <<JSON
{ "spec": { "selector": { "destinations": [ { "port": 8080 } ] },
    "rules": [ { "name": "ssn", "fields": [ "\$..ssn" ], "action": { "type": "mask", "keepLast": 4, "char": "$4" } } ${5:-} ] } }
JSON
	mv "$K/crd/.new" "$K/crd/$1__$2__$3.json"
}
CM=clustermaskingpolicies

# --- node-1 first: it takes the lease; then node-2 -------------------------------------------
agent node-1 || { echo "not ok - agent node-1 starts"; exit 1; }
check "node-1 takes the free lease" until_s 10 grep -q "node node-1 holds lease $LEASE_NS/crd2-policy-status" "$T/node-1.log"
agent node-2 || { echo "not ok - agent node-2 starts"; exit 1; }
sleep 1
check "node-2 stays a candidate while node-1 renews" bash -c '! grep -q "holds lease" "$1"' _ "$T/node-2.log"

crd $CM - crd2-pii X
check "both nodes apply it: in force 2/2" wait_is $CM - crd2-pii inForce 2/2
check "Ready True, reason InForce" wait_is $CM - crd2-pii ready.reason InForce
check "Ready message: in force on 2 of 2 nodes" is $CM - crd2-pii ready.message "in force on 2 of 2 nodes"
check "status: nodes 2, nodesInForce 2, nodesRefused 0, rules 1, observedGeneration 1" \
	fields_are $CM - crd2-pii nodes=2 nodesInForce=2 nodesRefused=0 rules=1 observedGeneration=1
check "the status is a server-side apply of the status subresource by meshmask-summary" python3 -c '
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
assert rs
for r in rs:
    assert r["query"] == "fieldManager=meshmask-summary&force=true", r["query"]
    assert r["ct"] == "application/apply-patch+yaml", r["ct"]
    assert r["body"]["kind"] in ("ClusterMaskingPolicy", "MaskingPolicy"), r["body"]
' "$K/status.jsonl"

# --- a key file missing on node-2: refused there, the previous version stays in force -----
crd $CM - crd2-pii X ', { "name": "email", "entities": [ "EMAIL_ADDRESS" ], "action": { "type": "hash", "keyFile": "email" } }'
check "key missing on node-2: in force 1/2" wait_is $CM - crd2-pii inForce 1/2
check "Ready False" wait_is $CM - crd2-pii ready.status False
check "reason RefusedOnSomeNodes" is $CM - crd2-pii ready.reason RefusedOnSomeNodes
m=$(field $CM - crd2-pii ready.message)
check "the message names node-2 and the pointer ($m)" grep -q "in force on 1 of 2 nodes; refused on 1 (node-2: /spec/rules/1/action/keyFile" <<<"$m"
check "refusedNodes: node-2 at /spec/rules/1/action/keyFile; rules 2" fields_are $CM - crd2-pii \
	refusedNodes.0.node=node-2 refusedNodes.0.pointer=/spec/rules/1/action/keyFile \
	nodesRefused=1 rules=2
check "about one status write per policy change (held until every node reports)" python3 -c '
import collections, json, sys
n = collections.Counter(r["body"]["status"]["observedGeneration"] for r in map(json.loads, open(sys.argv[1]))
                        if r["name"] == "crd2-pii")
print("# writes by generation:", dict(n))
assert n[1] >= 1 and n[2] >= 1 and n[1] + n[2] <= 3, n' "$K/status.jsonl"
check "no key byte in any status" python3 -c '
import sys
key = open(sys.argv[1], "rb").read()
data = open(sys.argv[2], "rb").read()
assert key not in data and key.hex().encode() not in data' "$T/keys-node-1/email" "$K/status.jsonl"

# --- the holder killed -9: the other agent takes the expired lease --------------------------
kill -9 "${APID[node-1]}"
wait "${APID[node-1]}" 2>/dev/null
unset 'APID[node-1]'
t0=$SECONDS
check "node-1 killed: node-2 takes the lease once it expired" until_s 15 grep -q "node node-2 holds lease" "$T/node-2.log"
echo "# taken over after $((SECONDS - t0)) s (lease 3 s, candidates read it every 3 s +-20%)"
check "the lease says node-2" test "$(holder)" = node-2

# --- a node whose agent is down does not report a new generation ----------------------------
crd $CM - crd2-pii Y
check "new generation, node-1's agent down: 1/2" wait_is $CM - crd2-pii observedGeneration 3
check "... in force 1/2 (node-2 only)" wait_is $CM - crd2-pii inForce 1/2
check "... reason Pending" wait_is $CM - crd2-pii ready.reason Pending
# Its Pod turns not Ready (the kubelet noticed): past the grace, that node counts as down.
echo '{ "node-1": false, "node-2": true }' >"$K/agents.json"
check "node-1's agent Pod not Ready for 2 s: reason AgentsNotReady" wait_is $CM - crd2-pii ready.reason AgentsNotReady
check "... in force on 1 of 2 nodes; agent not ready on 1 (node-1)" \
	is $CM - crd2-pii ready.message "in force on 1 of 2 nodes; agent not ready on 1 (node-1)"
check "the summary watched the agent Pods with the selector, in the lease namespace" \
	grep -q '"crd2-meshmask", "app.kubernetes.io/name=meshmask"' "$K/pod_queries.json"
agent node-1 || echo "# node-1 restart failed"
echo '{ "node-1": true, "node-2": true }' >"$K/agents.json"
check "node-1's agent back: 2/2, Ready True" wait_is $CM - crd2-pii inForce 2/2
check "... Ready True" wait_is $CM - crd2-pii ready.status True
ltt=$(field $CM - crd2-pii ready.lastTransitionTime)
check "... and node-2 still holds the lease" test "$(holder)" = node-2

# --- a namespaced policy ---------------------------------------------------------------------
crd maskingpolicies crd2-shop crd2-orders Z
check "MaskingPolicy crd2-shop/crd2-orders: 2/2 at its namespaced status path" \
	wait_is maskingpolicies crd2-shop crd2-orders inForce 2/2

# --- meshmask policy push --cluster -------------------------------------------------------------
if [[ -x $CLI ]]; then
	b64() { base64 -w0 "$1"; }
	cat >"$T/kubeconfig-token" <<YAML
apiVersion: v1
kind: Config
current-context: crd2
clusters:
- name: other
  cluster: { server: "https://127.0.0.1:1", certificate-authority: /nonexistent }
- name: crd2-fake
  cluster:
    server: "https://127.0.0.1:$KPORT"
    certificate-authority-data: $(b64 "$K/ca.crt")
users:
- name: crd2-user
  user:
    token: $(cat "$K/token")
contexts:
- name: other
  context: { cluster: other, user: crd2-user }
- name: crd2
  context: { cluster: crd2-fake, user: crd2-user, namespace: crd2-shop }
YAML
	cat >"$T/pushed.yaml" <<'YAML'
apiVersion: meshmask.io/v1alpha1
kind: MaskingPolicy
metadata:
  name: crd2-pushed
spec:
  selector: { destinations: [ { port: 8080 } ] }
  rules:
    - { name: ssn, fields: ["$..ssn"], action: { type: mask, keepLast: 4 } }
YAML
	"$CLI" policy push --cluster --kubeconfig "$T/kubeconfig-token" "$T/pushed.yaml" >"$T/push.out" 2>&1
	rc=$?
	check "policy push --cluster (kubeconfig token, CA data, context namespace): exit 0 ($rc)" test $rc = 0
	check "... it prints the resource written" grep -q "maskingpolicies/crd2-pushed" "$T/push.out"
	check "... a server-side apply by meshmask-cli, authenticated with the token" python3 -c '
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])][-1]
assert (r["plural"], r["namespace"], r["name"]) == ("maskingpolicies", "crd2-shop", "crd2-pushed"), r
assert r["query"] == "fieldManager=meshmask-cli&force=true" and r["ct"] == "application/apply-patch+yaml", r
assert r["auth"] == "token" and r["body"]["metadata"]["namespace"] == "crd2-shop", r
assert r["body"]["spec"]["rules"][0]["name"] == "ssn"
' "$K/applies.jsonl"
	check "... both agents apply it: 2/2" wait_is maskingpolicies crd2-shop crd2-pushed inForce 2/2
	check "... no token in the CLI output" bash -c '! grep -q "$(cat "$1")" "$2"' _ "$K/token" "$T/push.out"

	# A client certificate (files) instead of a token, -n overriding the context's namespace.
	cat >"$T/kubeconfig-cert" <<YAML
apiVersion: v1
kind: Config
current-context: c
clusters: [ { name: k, cluster: { server: "https://127.0.0.1:$KPORT", certificate-authority: "$K/ca.crt" } } ]
users: [ { name: u, user: { client-certificate: "$K/client.crt", client-key-data: "$(b64 "$K/client.key")" } } ]
contexts: [ { name: c, context: { cluster: k, user: u } } ]
YAML
	"$CLI" policy push --cluster --kubeconfig "$T/kubeconfig-cert" -n crd2-team "$T/pushed.yaml" >"$T/push2.out" 2>&1
	rc=$?
	check "policy push --cluster with a client certificate and -n: exit 0 ($rc)" test $rc = 0
	check "... authenticated by the certificate, in namespace crd2-team" python3 -c '
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])][-1]
assert r["auth"] == "cert" and r["namespace"] == "crd2-team", r' "$K/applies.jsonl"
	check "... applied by both: 2/2" wait_is maskingpolicies crd2-team crd2-pushed inForce 2/2

	# Refusals: the API server's schema refusal (422) is printed with its field, exit 1; a
	# file that is not a policy resource is not sent; a CA that did not sign the server fails.
	sed 's/keepLast: 4/keepLast: -1/' "$T/pushed.yaml" >"$T/bad.yaml"
	"$CLI" policy push --cluster --kubeconfig "$T/kubeconfig-token" "$T/bad.yaml" >"$T/push3.out" 2>&1
	rc=$?
	check "refused by the API server (422): exit 1, the field printed ($rc)" bash -c \
		'[[ $0 == 1 ]] && grep -q "spec.rules\[0\].action.keepLast: Invalid value: -1" "$1"' $rc "$T/push3.out"
	n0=$(wc -l <"$K/applies.jsonl")
	sed 's/kind: MaskingPolicy/kind: Pod/' "$T/pushed.yaml" >"$T/pod.yaml"
	printf 'kind: MaskingPolicy\nmetadata: { name: x }\nspec: [ unclosed\n' >"$T/broken.yaml"
	"$CLI" policy push --cluster --kubeconfig "$T/kubeconfig-token" "$T/pod.yaml" >"$T/push6.out" 2>&1
	rc1=$?
	"$CLI" policy push --cluster --kubeconfig "$T/kubeconfig-token" "$T/broken.yaml" >"$T/push7.out" 2>&1
	rc2=$?
	check "another kind, broken YAML: exit 1 with /kind and the line, nothing sent ($rc1 $rc2)" bash -c \
		'[[ $0 == 1 && $1 == 1 ]] && grep -q "/kind" "$2" && grep -q "broken.yaml:[34]:" "$3" && [[ $(wc -l <"$4") == "$5" ]]' \
		$rc1 $rc2 "$T/push6.out" "$T/push7.out" "$K/applies.jsonl" "$n0"
	sed "s|certificate-authority-data: .*|certificate-authority-data: $(b64 "$K/wrongca.crt")|" \
		"$T/kubeconfig-token" >"$T/kubeconfig-wrongca"
	"$CLI" policy push --cluster --kubeconfig "$T/kubeconfig-wrongca" "$T/pushed.yaml" >"$T/push4.out" 2>&1
	rc=$?
	check "a CA that did not sign the API server: exit 3, TLS named ($rc)" bash -c \
		'[[ $0 == 3 ]] && grep -qi "tls\|certificate" "$1"' $rc "$T/push4.out"
	KUBECONFIG=$T/kubeconfig-token "$CLI" policy push --cluster "$T/pushed.yaml" >"$T/push5.out" 2>&1
	check "\$KUBECONFIG is read when --kubeconfig is not given" test $? = 0
	"$CLI" policy push --cluster --kubeconfig "$T/kubeconfig-token" --context other "$T/pushed.yaml" >"$T/push8.out" 2>&1
	rc=$?
	check "--context selects another cluster (unreachable there: exit 3) ($rc)" bash -c \
		'[[ $0 == 3 ]] && grep -qi "connect" "$1"' $rc "$T/push8.out"
	sed 's/^    token: .*/    exec: { apiVersion: client.authentication.k8s.io\/v1, command: gke-gcloud-auth-plugin }/' \
		"$T/kubeconfig-token" >"$T/kubeconfig-exec"
	"$CLI" policy push --cluster --kubeconfig "$T/kubeconfig-exec" "$T/pushed.yaml" >"$T/push9.out" 2>&1
	rc=$?
	check "an exec plugin user: refused with a hint, nothing run ($rc)" bash -c \
		'[[ $0 == 2 ]] && grep -q "kubectl apply -f FILE" "$1"' $rc "$T/push9.out"
else
	echo "# meshmask CLI not built: push --cluster not tested"
fi

# --- a node leaves while node-1 holds the lease ---------------------------------------------
n1=$(grep -c "node node-1 holds lease" "$T/node-1.log")
kill "${APID[node-2]}" # SIGTERM: the holder releases the lease, node-1 takes it at once
wait "${APID[node-2]}" 2>/dev/null
unset 'APID[node-2]'
took() { [[ $(grep -c "node node-1 holds lease" "$T/node-1.log") -gt $1 ]]; }
check "node-2 stopped: node-1 takes the released lease" until_s 10 took "$n1"
check "the release left no holder before node-1 took it" python3 -c '
import json, sys
hs = [json.loads(l)["lease"]["spec"].get("holderIdentity", "") for l in open(sys.argv[1])]
i = max(k for k, h in enumerate(hs) if h == "node-2")
assert hs[i + 1] == "" and hs[i + 2] == "node-1", hs[i:]' "$K/leases.jsonl"
sleep 0.5
echo '{ "node-1": true }' >"$K/agents.json" # its DaemonSet Pod goes with the node
echo node-2 >"$K/ctl/delnode"
check "node-2 left (Node and status object deleted): in force 1/1" wait_is $CM - crd2-pii inForce 1/1
check "... Ready True still" wait_is $CM - crd2-pii ready.status True
check "... since the same transition, kept across holders ($ltt)" is $CM - crd2-pii ready.lastTransitionTime "$ltt"
check "... nodes 1" wait_is $CM - crd2-pii nodes 1
check "... the namespaced policy too: 1/1" wait_is maskingpolicies crd2-shop crd2-orders inForce 1/1

# --- what was written, against the schemas a real API server holds ---------------------------
# The policies' status against the CRD's status schema (helm/meshmask/files/crds.yaml: the real
# API server would refuse a wrong type and prune an unknown field), the node statuses against
# theirs, the Lease against coordination.k8s.io/v1's fields.
if python3 -c 'import jsonschema, yaml' 2>/dev/null; then
	check "every status, node status and Lease written fits its schema, no unknown field" python3 - \
		"$(dirname "$0")/../../helm/meshmask/files/crds.yaml" "$K" <<'PY'
import json, re, sys, jsonschema, yaml
crds = {d["spec"]["names"]["kind"]: d["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for d in yaml.safe_load_all(open(sys.argv[1])) if d}
k = sys.argv[2]
def unknown(v, sch, at):
    if isinstance(v, dict) and "properties" in sch:
        for key, x in v.items():
            if key not in sch["properties"]:
                raise AssertionError(f"unknown field {at}.{key}")
            unknown(x, sch["properties"][key], f"{at}.{key}")
    elif isinstance(v, list) and "items" in sch:
        for i, x in enumerate(v):
            unknown(x, sch["items"], f"{at}[{i}]")
n = 0
for line in open(f"{k}/status.jsonl"):
    r = json.loads(line)
    sch = crds[r["body"]["kind"]]["properties"]["status"]
    jsonschema.validate(r["body"]["status"], sch, format_checker=jsonschema.FormatChecker())
    unknown(r["body"]["status"], sch, "status")
    t = r["body"]["status"]["conditions"][0]["lastTransitionTime"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", t), t
    n += 1
for line in open(f"{k}/patches.jsonl"):
    b = json.loads(line)["body"]
    sch = crds["MaskingPolicyNodeStatus"]
    jsonschema.validate(b, sch, format_checker=jsonschema.FormatChecker())
    unknown({x: y for x, y in b.items() if x != "metadata"}, sch, "")
    n += 1
micro = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"
for line in open(f"{k}/leases.jsonl"):
    sp = json.loads(line)["lease"]["spec"]
    assert set(sp) <= {"holderIdentity", "leaseDurationSeconds", "acquireTime", "renewTime",
                       "leaseTransitions"}, sp
    assert all(re.fullmatch(micro, sp[t]) for t in ("acquireTime", "renewTime") if t in sp), sp
    assert isinstance(sp["leaseDurationSeconds"], int) and isinstance(sp.get("leaseTransitions", 0), int)
    n += 1
print(f"# {n} objects checked")
PY
else
	echo "# python3-jsonschema or python3-yaml missing: schemas not checked"
fi

# --- load ------------------------------------------------------------------------------------
n_status=$(wc -l <"$K/status.jsonl")
check "status writes only on change (${n_status})" test "$n_status" -le 40
n_lease=$(wc -l <"$K/leases.jsonl")
check "lease writes: renewals every lease/3 (${n_lease} in ${SECONDS} s)" test "$n_lease" -le $((SECONDS * 2 + 10))
check "no token in the agents' logs" bash -c '! grep -q "$(cat "$1")" "$2"/node-*.log' _ "$K/token" "$T"
check "node-1 still running" kill -0 "${APID[node-1]}"
echo "# $pass passed, $fail failed"
[[ $fail -eq 0 ]]

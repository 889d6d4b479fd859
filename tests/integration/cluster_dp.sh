#!/usr/bin/env bash
# Policies as Kubernetes resources (issue 18), end to end: the agent lists and watches
# ClusterMaskingPolicy and MaskingPolicy through the fake API (identity_kube.py --serve), and
# each change reaches a covered caller's responses within 1 s through the real data path:
# create, update, a refused update (the previous version stays in force), a namespaced policy
# (its namespace's callers only; another namespace named is refused), a status-only change
# (ignored), a 410 relist, a dropped watch, delete. Checked too: the node's status object the
# agent applies (server-side apply, field manager, owner Node, state and pointer per policy),
# GET /v1/policies (source, resource), a push refused for a name a resource owns, and the
# metrics meshmask_policies{source,state} and meshmask_policy_apply_seconds.
# Usage: cluster_dp.sh AGENT_BINARY (root).
source "$(dirname "$0")/dp_lib.sh"
dp_init "$1"
command -v openssl >/dev/null || dp_skip "needs openssl"

UID_A=0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0
UID_B=11111111-2222-3333-4444-555555555555
slice() { echo "kubepods-besteffort-pod${1//-/_}.slice"; }
PA=$(slice $UID_A) PB=$(slice $UID_B)
K=$DP_DIR/kube
mkdir -p "$K"
cat >"$K/pods.json" <<JSON
[ { "metadata": { "uid": "$UID_A", "namespace": "shop", "name": "web-1" }, "spec": { "nodeName": "node-1" } },
  { "metadata": { "uid": "$UID_B", "namespace": "batch", "name": "report-1" }, "spec": { "nodeName": "node-1" } } ]
JSON
python3 "$(dirname "$0")/identity_kube.py" --serve "$K" 2>"$DP_DIR/fakeapi.log" &
DP_PIDS+=($!)
for _ in $(seq 100); do [[ -s $K/port ]] && break; sleep 0.1; done
[[ -s $K/port ]] || { not_ok "fake Kubernetes API starts"; dp_done; exit; }
KPORT=$(cat "$K/port")

# crd PLURAL NS|- NAME CHAR [EXTRA_RULE_JSON]: write a resource (a mask of ssn with CHAR), as
# `kubectl apply` would; the fake API turns the change into a watch event.
crd() {
	local extra=${5:-}
	cat >"$K/crd/.new" <<JSON
{ "metadata": { "annotations": { "meshmask.io/changed-at": "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)" } },
  "spec": { "selector": { "destinations": [ { "port": $DP_SPORT } ] ${6:-} },
    "rules": [ { "name": "ssn", "fields": [ "\$..ssn" ], "action": { "type": "mask", "keepLast": 4, "char": "$4" } } $extra ] } }
JSON
	mv "$K/crd/.new" "$K/crd/$1__$2__$3.json"
}
CLUSTER_SRC=', "sources": [ { "namespace": "shop" } ]'
get() { dp_in "$1" curl -s --max-time 2 "http://10.211.$2.1:$DP_SPORT/customers"; }
# until_ms POD IDX PATTERN: milliseconds until POD's response matches PATTERN (gives up at 5 s).
until_ms() {
	local t0=$(date +%s%N)
	for _ in $(seq 100); do
		get "$1" "$2" | grep -q -- "$3" && break
		sleep 0.05
	done
	echo $((($(date +%s%N) - t0) / 1000000))
}
status() { # the last node status body the agent applied
	tail -n1 "$K/patches.jsonl" 2>/dev/null
}
entry() { # entry KIND NS NAME FIELD: a field of a policy's entry in the last status
	status | python3 -c '
import json, sys
b = json.load(sys.stdin)["body"]
for p in b["policies"]:
    if (p["kind"], p["namespace"], p["name"]) == tuple(sys.argv[1:4]):
        v = p
        for k in sys.argv[4].split("."):
            v = v[int(k)] if isinstance(v, list) else v[k]
        print(v)' "$@" 2>/dev/null
}
wait_entry() { # wait_entry KIND NS NAME FIELD VALUE
	for _ in $(seq 50); do [[ $(entry "$1" "$2" "$3" "$4") == "$5" ]] && return 0; sleep 0.1; done
	echo "# status: $(status | head -c 1500)"
	return 1
}

dp_pod "$PA" 1
dp_pod "$PB" 2
ADMIN_TOKEN=cluster-dp-admin-token-0123456789abcdef
echo "$ADMIN_TOKEN" >"$DP_DIR/admin-token"
AUTH="Authorization: Bearer $ADMIN_TOKEN"
DP_AGENT_EXTRA="--status-delay-ms 50 --token-file $DP_DIR/admin-token" dp_agent_start --kube-api "https://127.0.0.1:$KPORT" \
	--kube-ca-file "$K/ca.crt" --kube-token-file "$K/token" --node-name node-1 ||
	{ not_ok "agent starts"; dp_done; exit; }
dp_until 10 grep -q "ClusterMaskingPolicy resources listed" "$DP_DIR/agent.log"
check "agent listed both kinds" grep -q "MaskingPolicy resources listed" "$DP_DIR/agent.log"
dp_until 10 grep -q "2 pods of node node-1 known" "$DP_DIR/agent.log"
out=$(get "$PA" 1)
check "no policy yet: original" grep -q '123-45-6789' <<<"$out"

# --- create, update ----------------------------------------------------------------------
crd clustermaskingpolicies - pii X "" "$CLUSTER_SRC"
ms=$(until_ms "$PA" 1 '"XXX-XX-6789"')
check "ClusterMaskingPolicy created: masked for the covered caller within 1 s (${ms} ms)" test "$ms" -lt 1000
check "created: the caller of another namespace is not covered" grep -q '123-45-6789' <<<"$(get "$PB" 2)"
crd clustermaskingpolicies - pii '#' "" "$CLUSTER_SRC"
ms=$(until_ms "$PA" 1 '"###-##-6789"')
check "updated: the new version masks within 1 s (${ms} ms)" test "$ms" -lt 1000
check "status: InForce at generation 2" wait_entry ClusterMaskingPolicy "" pii state InForce
check "status: generation 2 reported" wait_entry ClusterMaskingPolicy "" pii generation 2

# --- a refused version: the previous one stays in force ------------------------------------
crd clustermaskingpolicies - pii Q ', { "name": "email", "entities": [ "EMAIL_ADDRESS" ], "action": { "type": "hash", "keyFile": "/nonexistent/meshmask-key" } }' "$CLUSTER_SRC"
check "refused: reported Refused in the node status" wait_entry ClusterMaskingPolicy "" pii state Refused
check "refused: at the pointer of the missing key file" \
	wait_entry ClusterMaskingPolicy "" pii errors.0.pointer /spec/rules/1/action/keyFile
m=$(entry ClusterMaskingPolicy "" pii message)
check "refused: the message says the previous version stays in force ($m)" \
	grep -q "previous version stays in force" <<<"$m"
out=$(get "$PA" 1)
check "refused: the previous version still masks" grep -q '"###-##-6789"' <<<"$out"
curl -s -H "$AUTH" "http://127.0.0.1:$DP_APORT/v1/policies" >"$DP_DIR/list.json"
check "GET /v1/policies: source crd and the resource" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
p = [x for x in d["policies"] if x["name"] == "pii"][0]
r = [x for x in d["rejected"] if x.get("resource") == "ClusterMaskingPolicy/pii"][0]
assert p["source"] == "crd" and p["resource"] == "ClusterMaskingPolicy/pii", p
assert r["source"] == "crd" and r["previousVersionInForce"] and r["errors"][0]["pointer"] == "/spec/rules/1/action/keyFile", r
' "$DP_DIR/list.json"
CLI=$(dirname "$1")/cli/meshmask
if [[ -x $CLI ]]; then
	"$CLI" policy list --agent "http://127.0.0.1:$DP_APORT" --token-file "$DP_DIR/admin-token" \
		>"$DP_DIR/cli-list.out" 2>&1
	check "meshmask policy list: source crd" grep -Eq '^pii +crd ' "$DP_DIR/cli-list.out"
	check "meshmask policy list: the refused resource and its pointer" \
		grep -q 'ClusterMaskingPolicy/pii: /spec/rules/1/action/keyFile' "$DP_DIR/cli-list.out"
fi
crd clustermaskingpolicies - pii X "" "$CLUSTER_SRC"
ms=$(until_ms "$PA" 1 '"XXX-XX-6789"')
check "fixed: the corrected version masks within 1 s (${ms} ms)" test "$ms" -lt 1000
check "fixed: InForce again" wait_entry ClusterMaskingPolicy "" pii state InForce

# --- a push cannot take a resource's name ---------------------------------------------------
code=$(curl -s -o "$DP_DIR/push.out" -w '%{http_code}' -H "$AUTH" -H 'Content-Type: application/json' -X PUT --data-binary @- \
	"http://127.0.0.1:$DP_APORT/v1/policies/pii" <<JSON
{ "apiVersion": "meshmask.io/v1alpha1", "kind": "MaskingPolicy", "metadata": { "name": "pii" },
  "spec": { "rules": [ { "name": "r", "fields": [ "x" ], "action": { "type": "redact" } } ] } }
JSON
)
check "a push of a name a resource owns: 409 (${code})" test "$code" = 409
check "the refusal names the resource" grep -q "MaskingPolicy resource" "$DP_DIR/push.out"

# --- namespaced: its own namespace's callers only -----------------------------------------
crd maskingpolicies batch pii Y
ms=$(until_ms "$PB" 2 '"YYY-YY-6789"')
check "MaskingPolicy in batch: its caller masked within 1 s (${ms} ms)" test "$ms" -lt 1000
check "MaskingPolicy in batch: the shop caller keeps the cluster policy" grep -q '"XXX-XX-6789"' <<<"$(get "$PA" 1)"
check "status: the namespaced policy InForce" wait_entry MaskingPolicy batch pii state InForce
crd maskingpolicies batch other Z "" ', "sources": [ { "namespace": "shop" } ]'
check "a MaskingPolicy naming another namespace: Refused" wait_entry MaskingPolicy batch other state Refused
check "... at /spec/selector/sources/0/namespace" \
	wait_entry MaskingPolicy batch other errors.0.pointer /spec/selector/sources/0/namespace
check "... and the shop caller is not masked by it" grep -q '"XXX-XX-6789"' <<<"$(get "$PA" 1)"
rm -f "$K/crd/maskingpolicies__batch__other.json"

# --- a status-only change (same generation) is not applied again ---------------------------
n0=$(grep -c "policy pii applied" "$DP_DIR/agent.log")
echo "clustermaskingpolicies - pii" >"$K/ctl/touch"
sleep 0.5
check "a status-only MODIFIED event applies nothing" test "$(grep -c "policy pii applied" "$DP_DIR/agent.log")" -eq "$n0"

# --- 410: a change the watch history lost, seen by listing again --------------------------
touch "$K/ctl/compact"
crd clustermaskingpolicies - pii R "" "$CLUSTER_SRC"
ms=$(until_ms "$PA" 1 '"RRR-RR-6789"')
check "410 Gone -> relist: the change is applied within 1 s (${ms} ms)" test "$ms" -lt 1000
check "410 Gone logged as a relist" grep -q "watch expired.*listing again" "$DP_DIR/agent.log"

# --- a dropped watch: reconnect, nothing lost -------------------------------------------
touch "$K/ctl/drop"
sleep 0.1
crd clustermaskingpolicies - pii W "" "$CLUSTER_SRC"
ms=$(until_ms "$PA" 1 '"WWW-WW-6789"')
check "dropped watch: the next change is applied within 1 s (${ms} ms)" test "$ms" -lt 1000

# --- delete -------------------------------------------------------------------------------
rm -f "$K/crd/maskingpolicies__batch__pii.json"
ms=$(until_ms "$PB" 2 '123-45-6789')
check "MaskingPolicy deleted: its caller gets the original within 1 s (${ms} ms)" test "$ms" -lt 1000
rm -f "$K/crd/clustermaskingpolicies__-__pii.json"
ms=$(until_ms "$PA" 1 '123-45-6789')
check "ClusterMaskingPolicy deleted: original within 1 s (${ms} ms)" test "$ms" -lt 1000
for _ in $(seq 30); do [[ $(status | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["body"]["policies"]))') == 0 ]] && break; sleep 0.1; done

# --- the status writes --------------------------------------------------------------------
check "status: every write a server-side apply by this node's field manager" python3 -c '
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert recs, "no status written"
for r in recs:
    assert r["name"] == "node-1", r["name"]
    assert r["ct"] == "application/apply-patch+yaml", r["ct"]
    assert r["query"] == "fieldManager=meshmask-agent&force=true", r["query"]
    b = r["body"]
    assert b["kind"] == "MaskingPolicyNodeStatus" and b["metadata"]["name"] == "node-1"
    assert b["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Node", "name": "node-1",
        "uid": "6b1c2d3e-0000-4000-8000-00000000abcd"}], b["metadata"]
print(len(recs), "writes")' "$K/patches.jsonl"
check "status: the deleted policies are gone from the last write" test \
	"$(status | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["body"]["policies"]))')" = 0
n_writes=$(wc -l <"$K/patches.jsonl")
check "status: only changes are written (${n_writes} writes for ~14 changes)" test "$n_writes" -le 30

# --- metrics ------------------------------------------------------------------------------
curl -s "http://127.0.0.1:$DP_APORT/metrics" >"$DP_DIR/metrics.txt"
check "metrics: meshmask_policies{source,state}" grep -q '^meshmask_policies{source="crd",state="in_force"} 0' "$DP_DIR/metrics.txt"
check "metrics: meshmask_policy_apply_seconds observed" \
	awk '/^meshmask_policy_apply_seconds_count\{source="crd"\}/ { exit !($2 >= 6) }' "$DP_DIR/metrics.txt"
check "metrics: every apply took under a second" awk '
	/^meshmask_policy_apply_seconds_bucket\{source="crd",le="1"\}/ { le1 = $2 }
	/^meshmask_policy_apply_seconds_count\{source="crd"\}/ { n = $2 }
	END { exit !(n > 0 && le1 == n) }' "$DP_DIR/metrics.txt"
if command -v promtool >/dev/null; then
	check "metrics: the exposition passes promtool" bash -c 'promtool check metrics <"$1"' _ "$DP_DIR/metrics.txt"
fi
check "no token reaches the log" bash -c '! grep -q -e token-one -e "$2" "$1"' _ "$DP_DIR/agent.log" "$ADMIN_TOKEN"
check "agent still running" kill -0 $DP_AGENT_PID
[[ -n ${KEEP:-} ]] && cp -r "$DP_DIR" /tmp/cluster-dp-keep
dp_done

#!/usr/bin/env bash
# Limits of the steering maps. (1) More than 64 policies: the 65th file is listed as refused
# (JSON pointer, what is in force unchanged) and a push past the limit is refused with
# /metadata/name; deleting one makes room. (2) A full steer_callers map (shrunk to 2 entries
# for the test): the pod that does not fit follows its policy's failureMode, closed refused,
# open passed unmasked, both counted, logged once; pods that fit are masked; an uncovered pod
# is untouched.
source "$(dirname "$0")/dp_lib.sh"
dp_init "$1"
OPEN_PORT=$((DP_SPORT + 1))
TOKEN=limits-token-$DP_ID
echo "$TOKEN" >"$DP_DIR/token"
api() { curl -s --max-time 5 -H "Authorization: Bearer $TOKEN" "$@"; }
masked() { grep -q '"XXX-XX-6789"' "$1" && ! grep -q '123-45-6789' "$1"; }

# --- more than 64 policies
for i in $(seq -w 0 64); do
	dp_policy "p$i" closed "nobody-$i" 'none' $((20000 + 10#$i))
done
dp_agent_start --token-file "$DP_DIR/token" || { not_ok "agent starts"; dp_done; exit; }
api "http://127.0.0.1:$DP_APORT/v1/policies" >"$DP_DIR/list.json"
in_force() { python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["policies"]))' "$1"; }
refused() {
	python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(" ".join("%s:%s:%s" % (r["file"], r["errors"][0].get("pointer"), "64" in r["errors"][0]["message"]) for r in d["rejected"]))' "$1"
}
check "65 policy files: 64 in force ($(in_force "$DP_DIR/list.json"))" test "$(in_force "$DP_DIR/list.json")" = 64
check "65 policy files: the last one is listed as refused ($(refused "$DP_DIR/list.json"))" \
	test "$(refused "$DP_DIR/list.json")" = "p64.json::True"
check "the refusal is logged" grep -q "p64.json: policy p64 refused: a node holds at most 64" "$DP_DIR/agent.log"
doc='{ "apiVersion": "meshmask.io/v1alpha1", "kind": "MaskingPolicy", "metadata": { "name": "pushed" },
  "spec": { "selector": { "destinations": [ { "port": 1 } ] },
    "rules": [ { "name": "ssn", "fields": [ "$..ssn" ], "action": { "type": "redact" } } ] } }'
code=$(api -H "Content-Type: application/json" -o "$DP_DIR/push.json" -w '%{http_code}' -X PUT --data-binary "$doc" "http://127.0.0.1:$DP_APORT/v1/policies/pushed")
ptr=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["details"][0]["pointer"])' "$DP_DIR/push.json" 2>/dev/null)
check "a push past 64 policies is refused (HTTP $code, pointer $ptr)" test "$code" = 400 -a "$ptr" = /metadata/name
rm -f "$DP_DIR/policies/p00.json"
for _ in $(seq 30); do
	api "http://127.0.0.1:$DP_APORT/v1/policies" >"$DP_DIR/list2.json"
	[[ -z $(refused "$DP_DIR/list2.json") ]] && break
	sleep 0.1
done
check "one file removed: the refused one comes into force ($(in_force "$DP_DIR/list2.json") in force)" \
	test "$(in_force "$DP_DIR/list2.json")" = 64 -a -z "$(refused "$DP_DIR/list2.json")"
check "every policy got a steering slot" bash -c "! grep -q 'no steering slot' '$DP_DIR/agent.log'"
kill -TERM $DP_AGENT_PID
wait $DP_AGENT_PID
DP_AGENT_PID=
rm -f "$DP_DIR"/policies/p*.json
rm -rf "$DP_BPFFS/meshmask/$DP_INSTANCE"

# --- a full steer_callers map
dp_policy strict closed 'app-*' 'none' $DP_SPORT
dp_policy lenient open 'app-*' 'none' $OPEN_PORT
dp_pod app-1 1
dp_pod app-2 2
dp_pod app-3 3 # cgroup ids grow: the agent fills the map in id order, so app-3 does not fit
dp_pod other 4
orig=$DP_DIR/orig.json
ip netns exec "$DP_NS_SRV" curl -s --max-time 5 http://127.0.0.1:$DP_SPORT/customers >"$orig"
DP_AGENT_EXTRA="${DP_AGENT_EXTRA:-} --max-callers 2" dp_agent_start || { not_ok "agent starts (callers map of 2)"; dp_done; exit; }
check "agent listens in a pod that fits" dp_wait_listener app-1
sleep 1.2
dp_in app-1 curl -s --max-time 5 http://10.211.1.1:$DP_SPORT/customers >"$DP_DIR/1.json"
check "a pod that fits is masked" masked "$DP_DIR/1.json"
dp_in app-3 curl -s --max-time 5 http://10.211.3.1:$DP_SPORT/customers >"$DP_DIR/3c.json"
rc=$?
check "the pod that does not fit, closed mode: refused (curl rc=$rc), nothing received" \
	test $rc -eq 7 -a ! -s "$DP_DIR/3c.json"
dp_in app-3 curl -s --max-time 5 http://10.211.3.1:$OPEN_PORT/customers >"$DP_DIR/3o.json"
check "the pod that does not fit, open mode: passed unmasked" cmp -s "$orig" "$DP_DIR/3o.json"
dp_in other curl -s --max-time 5 http://10.211.4.1:$DP_SPORT/customers >"$DP_DIR/o.json"
check "an uncovered pod is untouched" cmp -s "$orig" "$DP_DIR/o.json"
sleep 1.2 # one stats collection
check "unsteered callers exported (gauge 1)" test "$(dp_metric meshmask_callers_unsteered)" -eq 1
check "refused flow counted (reason limit)" \
	test "$(dp_metric 'meshmask_flows_refused_total\{policy="strict",reason="limit"\}')" -ge 1
check "passed flow counted (reason limit)" \
	test "$(dp_metric 'meshmask_flows_passed_total\{policy="lenient",reason="limit"\}')" -ge 1
check "logged once" test "$(grep -c 'steer_callers is full' "$DP_DIR/agent.log")" -eq 1
# Room again: the pod becomes steered.
for p in $(cat "$DP_CG/app-2/cgroup.procs"); do kill -9 "$p"; done
for _ in $(seq 30); do grep -qs 'populated 1' "$DP_CG/app-2/cgroup.events" || break; sleep 0.1; done
rmdir "$DP_CG/app-2"
sleep 1.5
dp_in app-3 curl -s --max-time 5 http://10.211.3.1:$DP_SPORT/customers >"$DP_DIR/3m.json"
check "a pod leaves, room again: the pod that did not fit is masked" masked "$DP_DIR/3m.json"
check "unsteered gauge back to 0" test "$(dp_metric meshmask_callers_unsteered)" -eq 0
dp_done

#!/usr/bin/env bash
# gRPC through the real kernel path: a grpcio server and client (Debian python3-grpcio), the
# policies naming protobuf fields from a descriptor set made by protoc: unary, server
# streaming (1000 messages), client streaming and bidi, gzip, trailers and error statuses, a
# message over the bound and a method without a descriptor under each onError. Counted per
# policy; never a value in the log.
source "$(dirname "$0")/dp_lib.sh"
dp_init "$1"
here=$(cd "$(dirname "$0")" && pwd)/grpc
PY=/usr/bin/python3
$PY -c 'import grpc, google.protobuf' 2>/dev/null || dp_skip "needs python3-grpcio and python3-protobuf"
command -v protoc >/dev/null || dp_skip "needs protobuf-compiler"
G1=$((DP_SPORT + 30)) G2=$((DP_SPORT + 31)) G3=$((DP_SPORT + 32))
gen=$DP_DIR/gen
mkdir -p "$gen"
protoc -I "$here" --python_out="$gen" "$here/customers.proto" "$here/hidden.proto" ||
	{ not_ok "protoc --python_out"; dp_done; exit; }
protoc -I "$here" --descriptor_set_out="$DP_DIR/customers.pb" --include_imports \
	"$here/customers.proto" || { not_ok "protoc --descriptor_set_out"; dp_done; exit; }

# grpcpol NAME PORT ON_ERROR DIRECTIONS
grpcpol() {
	cat >"$DP_DIR/policies/$1.json" <<JSON
{ "apiVersion": "meshmask.io/v1alpha1", "kind": "MaskingPolicy",
  "metadata": { "name": "$1" },
  "spec": { "mode": "enforce", "onError": "$3", "directions": [ $4 ],
    "selector": { "destinations": [ { "port": $2 } ], "sources": [ { "cgroup": "$DP_CG_REL/app-*" } ] },
    "protobuf": { "descriptorSets": [ "$DP_DIR/customers.pb" ] },
    "rules": [
      { "name": "ssn", "fields": [ "\$..ssn" ], "action": { "type": "mask", "keepLast": 4, "char": "X" } },
      { "name": "name", "fields": [ "\$.name" ], "action": { "type": "replace", "value": "<name>" } },
      { "name": "ents", "entities": [ "US_SSN", "CREDIT_CARD", "EMAIL_ADDRESS" ], "action": { "type": "mask", "keepLast": 4 } }
    ] } }
JSON
}
grpcpol grpc-fallback $G1 fallback '"request", "response"'
grpcpol grpc-block $G2 block '"response"'
grpcpol grpc-pass $G3 pass '"response"'

ip netns exec "$DP_NS_SRV" $PY "$here/grpc_server.py" "$gen" "$G1,$G2,$G3" &
DP_PIDS+=($!)
for _ in $(seq 100); do
	ip netns exec "$DP_NS_SRV" ss -Hltn "sport = :$G3" | grep -q . && break
	sleep 0.1
done
dp_pod app-a 1
dp_agent_start --grpc-max-message-kb 64 || { not_ok "agent starts"; dp_done; exit; }
check "agent listens in the pod's netns" dp_wait_listener app-a

out=$(dp_in app-a $PY "$here/grpc_client.py" "$gen" 10.211.1.1 $G1 $G2 $G3 2>&1)
dp_tap "$out"
grep -q '^# 0 failed' <<<"$out" || not_ok "the client ran to its end"

sleep 0.3
m() { dp_metric "$1"; }
check "gRPC messages counted per rule (ssn, responses)" \
	test "$(m 'meshmask_values_masked_total\{policy="grpc-fallback",rule="ssn",entity="none",action="mask",direction="response"\}')" -ge 1000
check "request messages counted too (client streaming, bidi)" \
	test "$(m 'meshmask_values_masked_total\{policy="grpc-fallback",rule="ssn",entity="none",action="mask",direction="request"\}')" -ge 70
check "no descriptor under fallback counted (fallbacks_total, no_descriptor)" \
	test "$(m 'meshmask_fallbacks_total\{policy="grpc-fallback",direction="response",reason="no_descriptor"\}')" -ge 1
check "no descriptor under block counted (blocked_total)" \
	test "$(m 'meshmask_blocked_total\{policy="grpc-block",direction="response",reason="no_descriptor"\}')" -ge 1
check "no descriptor under pass counted (passed_unmasked_total)" \
	test "$(m 'meshmask_passed_unmasked_total\{policy="grpc-pass",direction="response",reason="no_descriptor"\}')" -ge 1
check "over the bound under pass counted (passed_unmasked_total, limit)" \
	test "$(m 'meshmask_passed_unmasked_total\{policy="grpc-pass",direction="response",reason="limit"\}')" -ge 1
check "over the bound under fallback refused (blocked_total, limit)" \
	test "$(m 'meshmask_blocked_total\{policy="grpc-fallback",direction="response",reason="limit"\}')" -ge 1
check "messages counted by protocol and method (from the descriptor set)" \
	test "$(m 'meshmask_messages_total\{policy="grpc-fallback",direction="response",protocol="grpc",method="/mm.it.Customers/List"\}')" -ge 3
check "no method label for a method no descriptor names" \
	bash -c "! curl -s http://127.0.0.1:$DP_APORT/metrics | grep -q 'method=\"/mm.hidden'"
check "audit: gRPC events carry the protocol and the method" \
	grep -q '"event":"mask".*"policy":"grpc-fallback".*"protocol":"grpc","method":"/mm.it.Customers/Get"' "$DP_DIR/audit.log"
check "no secret in the agent's log or audit log" \
	bash -c "! grep -q -e 536-22-8710 -e 4111111111111111 -e ann@example.com '$DP_DIR/audit.log' '$DP_DIR/agent.log'"
dp_done

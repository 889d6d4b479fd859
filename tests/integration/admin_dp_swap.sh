#!/usr/bin/env bash
# A policy pushed through the admin API while a keep-alive connection streams masked
# responses: every response is masked whole by one version (old, then new, never a mix), the
# switch happens between messages on the same connection, and after kill -9 and a restart
# the agent masks with the pushed version it had.
# Uses the data-path topology of dp_lib.sh (root, netns, cgroup v2, BPF).
source "$(dirname "$0")/dp_lib.sh"
dp_init "$1"

TOKEN=swap-$RANDOM-$RANDOM
echo "$TOKEN" >"$DP_DIR/token"
pushed() { # pushed MASKCHAR
	cat <<JSON
{ "apiVersion": "meshmask.io/v1alpha1", "kind": "MaskingPolicy",
  "metadata": { "name": "pushed" },
  "spec": {
    "selector": { "destinations": [ { "port": $DP_SPORT } ],
                  "sources": [ { "cgroup": "$DP_CG_REL/app-*" } ] },
    "directions": [ "response" ],
    "rules": [ { "name": "ssn", "fields": [ "\$..ssn" ],
                 "action": { "type": "mask", "keepLast": 4, "char": "$1" } } ] } }
JSON
}
push() { # push MASKCHAR -> HTTP status
	pushed "$1" | curl -s -o /dev/null -w '%{http_code}' -X PUT \
		-H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
		--data-binary @- "http://127.0.0.1:$DP_APORT/v1/policies/pushed"
}

dp_pod app-a 1
dp_agent_start --token-file "$DP_DIR/token" || { not_ok "agent starts"; dp_done; exit; }
check "push the first version" test "$(push X)" = 201
check "agent listens in the flagged pod's netns" dp_wait_listener app-a
out=$(dp_in app-a curl -s --max-time 5 http://10.211.1.1:$DP_SPORT/customers)
check "pushed policy masks traffic" grep -q '"XXX-XX-6789"' <<<"$out"

# 60 requests, 50 ms apart, on one connection; the new version is pushed in the middle.
dp_in app-a python3 - $DP_SPORT >"$DP_DIR/stream.out" 2>&1 <<'EOF' &
import http.client, sys, time
c = http.client.HTTPConnection("10.211.1.1", int(sys.argv[1]), timeout=5)
seq, sock, same = [], None, True
for i in range(60):
    c.request("GET", "/customers?%d" % i)
    b = c.getresponse().read().decode()
    if sock is None:
        sock = c.sock
    same = same and c.sock is sock
    if "123-45-6789" in b or "234-56-7890" in b:
        seq.append("raw")
    elif b.count("XXX-XX-") == 2 and "#" not in b:
        seq.append("X")
    elif b.count("###-##-") == 2 and "XXX" not in b:
        seq.append("#")
    else:
        seq.append("mixed")
    time.sleep(0.05)
print(" ".join(seq))
print("same-connection" if same else "reconnected")
EOF
client=$!
sleep 1
check "push the second version while the connection streams" test "$(push '#')" = 200
wait $client
read -r -a seq <"$DP_DIR/stream.out"
echo "# sequence: ${seq[*]}"
check "all 60 responses received" test ${#seq[@]} -eq 60
check "no raw or mixed response" bash -c '! grep -qE "raw|mixed" "$1"' _ "$DP_DIR/stream.out"
joined=$(tr -d ' ' <<<"${seq[*]}")
check "old version first, then the new one, switching once" \
	bash -c '[[ $1 =~ ^X+#+$ ]]' _ "$joined"
check "on one keep-alive connection" grep -q same-connection "$DP_DIR/stream.out"

dp_agent_kill
dp_agent_start --token-file "$DP_DIR/token" || { not_ok "agent restarts"; dp_done; exit; }
check "agent listens again after kill -9" dp_wait_listener app-a
out=$(dp_in app-a curl -s --max-time 5 http://10.211.1.1:$DP_SPORT/customers)
check "after kill -9 and restart: the pushed version is in force" grep -q '"###-##-6789"' <<<"$out"
dp_done

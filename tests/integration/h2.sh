#!/usr/bin/env bash
# HTTP/2 (h2c, prior knowledge) through the real kernel path: real clients (curl
# --http2-prior-knowledge, nghttp) against real h2c servers (python3-h2's h2_server.py, and
# nghttpd): JSON masked for the flagged caller and byte-identical for the exempt one, many
# concurrent streams on one connection, a body mislabelled text/html, a request body masked
# under a request policy, trailers forwarded, header rules, a stream reset mid-body, GOAWAY
# from the server, and a slow reader that holds the upstream (the agent's memory stays flat).
source "$(dirname "$0")/dp_lib.sh"
dp_init "$1"
here=$(dirname "$0")
PY=/usr/bin/python3
command -v nghttp >/dev/null && command -v nghttpd >/dev/null || dp_skip "needs nghttp2-client and nghttp2-server"
$PY -c 'import h2' 2>/dev/null || dp_skip "needs python3-h2"
curl -V | grep -q HTTP2 || dp_skip "curl without HTTP/2"
PH=$((DP_SPORT + 20)) PN=$((DP_SPORT + 21)) PR=$((DP_SPORT + 22))

# h2pol NAME PORT DIRECTIONS: the usual rules, plus a header rule on Authorization.
h2pol() {
	cat >"$DP_DIR/policies/$1.json" <<JSON
{ "apiVersion": "meshmask.io/v1alpha1", "kind": "MaskingPolicy",
  "metadata": { "name": "$1" },
  "spec": { "mode": "enforce", "onError": "block", "directions": [ $3 ],
    "selector": { "destinations": [ { "port": $2 } ], "sources": [ { "cgroup": "$DP_CG_REL/app-*" } ] },
    "rules": [
      { "name": "ssn", "fields": [ "\$..ssn" ], "action": { "type": "mask", "keepLast": 4, "char": "X" } },
      { "name": "ents", "entities": [ "CREDIT_CARD", "EMAIL_ADDRESS" ], "action": { "type": "mask", "keepLast": 4 } },
      { "name": "auth", "headers": [ "Authorization" ], "action": { "type": "redact" } }
    ] } }
JSON
}
h2pol h2-py $PH '"response"'
h2pol h2-nghttpd $PN '"response"'
h2pol h2-req $PR '"request", "response"'

ip netns exec "$DP_NS_SRV" $PY "$here/h2_server.py" $PH &
DP_PIDS+=($!)
ip netns exec "$DP_NS_SRV" $PY "$here/h2_server.py" $PR &
DP_PIDS+=($!)
mkdir -p "$DP_DIR/htdocs"
ip netns exec "$DP_NS_SRV" curl -s --http2-prior-knowledge --retry 20 --retry-connrefused \
	--retry-delay 0 --max-time 10 "http://127.0.0.1:$PH/json" >"$DP_DIR/htdocs/customers.json"
ip netns exec "$DP_NS_SRV" nghttpd --no-tls -d "$DP_DIR/htdocs" $PN >/dev/null 2>&1 &
DP_PIDS+=($!)
for _ in $(seq 50); do
	ip netns exec "$DP_NS_SRV" ss -Hltn "sport = :$PN" | grep -q . && break
	sleep 0.1
done
dp_pod app-a 1
dp_pod int-b 2
dp_agent_start || { not_ok "agent starts"; dp_done; exit; }
check "agent listens in the pod's netns" dp_wait_listener app-a

orig=$DP_DIR/orig.json
cp "$DP_DIR/htdocs/customers.json" "$orig"
check "the upstream serves secrets (test sanity)" grep -q 123-45-6789 "$orig"
raw() { grep -q -e 123-45-6789 -e 4111111111111111 -e ann@example.com "$@"; }
masked() { grep -q '"XXX-XX-6789"' "$1" && ! raw "$1"; }

steered0=$(dp_metric meshmask_flows_steered_total)
dp_in app-a curl -s --http2-prior-knowledge --max-time 10 -o "$DP_DIR/a.json" \
	-w '%{http_version} %{http_code}' "http://10.211.1.1:$PH/json" >"$DP_DIR/a.meta"
check "curl h2c, flagged caller: HTTP/2 200 ($(cat "$DP_DIR/a.meta"))" test "$(cat "$DP_DIR/a.meta")" = "2 200"
check "curl h2c, flagged caller: masked" masked "$DP_DIR/a.json"
check "curl h2c went through the agent" test "$(dp_metric meshmask_flows_steered_total)" -gt "$steered0"
dp_in int-b curl -s --http2-prior-knowledge --max-time 10 "http://10.211.2.1:$PH/json" -o "$DP_DIR/b.json"
check "curl h2c, a caller the policy does not cover: byte-identical" cmp -s "$orig" "$DP_DIR/b.json"

dp_in app-a curl -s --http2-prior-knowledge --max-time 20 "http://10.211.1.1:$PN/customers.json" -o "$DP_DIR/n.json"
check "nghttpd upstream, curl h2c: masked" masked "$DP_DIR/n.json"
# Upgrade: h2c from HTTP/1.1 (curl --http2 on http://), the python3-h2 server takes it:
# masked as HTTP/2.
dp_in app-a curl -s --http2 --max-time 10 -o "$DP_DIR/u.json" -w '%{http_version}' \
	"http://10.211.1.1:$PH/json" >"$DP_DIR/u.meta"
check "Upgrade: h2c taken by the server: HTTP/2 ($(cat "$DP_DIR/u.meta"))" test "$(cat "$DP_DIR/u.meta")" = 2
check "Upgrade: h2c: the answer (stream 1) masked" masked "$DP_DIR/u.json"
dp_in app-a curl -s --http2 --max-time 10 "http://10.211.1.1:$PH/json" \
	"http://10.211.1.1:$PH/json" -o "$DP_DIR/u1.json" -o "$DP_DIR/u2.json"
check "Upgrade: h2c: the next request on the connection (stream 3) masked too" masked "$DP_DIR/u2.json"
dp_in app-a curl -s --http2-prior-knowledge --max-time 20 "http://10.211.1.1:$PH/html" -o "$DP_DIR/h.json"
check "JSON labelled text/html over h2: masked" masked "$DP_DIR/h.json"

# Many concurrent streams on one connection (nghttp -m: the same path N times at once).
dp_in app-a nghttp -m 50 "http://10.211.1.1:$PH/json" >"$DP_DIR/m.json" 2>/dev/null
nm=$(grep -o '"XXX-XX-6789"' "$DP_DIR/m.json" | wc -l)
check "nghttp, 50 concurrent streams on one connection: every body masked ($nm of 100 values)" \
	test "$nm" -eq 100
check "nghttp, 50 concurrent streams: nothing raw" bash -c "! grep -q -e 123-45-6789 -e 4111111111111111 '$DP_DIR/m.json'"

# Trailers and header rules.
dp_in app-a nghttp -v "http://10.211.1.1:$PH/trailers" -H 'authorization: Bearer s3cret' \
	>"$DP_DIR/t.txt" 2>&1
check "trailers forwarded (x-checksum)" grep -q 'x-checksum: abc' "$DP_DIR/t.txt"
check "a response body with trailers masked" grep -q 'XXX-XX-6789' "$DP_DIR/t.txt"
check "request header rule (redact Authorization) under a response-only policy leaves it" \
	grep -q 'x-request-auth: Bearer s3cret' "$DP_DIR/t.txt"
dp_in app-a nghttp -v "http://10.211.1.1:$PR/echo" -H 'authorization: Bearer s3cret' \
	-H 'content-type: application/json' -d "$orig" >"$DP_DIR/e.txt" 2>&1
check "request policy: Authorization redacted before the upstream" grep -q 'x-request-auth: -' "$DP_DIR/e.txt"
check "request policy: the request body masked before the upstream (echoed back)" \
	bash -c "grep -q XXX-XX-6789 '$DP_DIR/e.txt' && ! grep -q 123-45-6789 '$DP_DIR/e.txt'"

# A stream reset mid-body reaches the app as a reset; the connection serves the next stream.
dp_in app-a nghttp -v "http://10.211.1.1:$PH/reset" "http://10.211.1.1:$PH/json" >"$DP_DIR/r.txt" 2>&1
check "RST_STREAM from the upstream mid-body reaches the app" grep -q 'recv RST_STREAM' "$DP_DIR/r.txt"
check "the other stream on that connection is served, masked" grep -q 'XXX-XX-6789' "$DP_DIR/r.txt"
check "the reset body never leaked raw" bash -c "! grep -q -e 123-45-6789 '$DP_DIR/r.txt'"

# GOAWAY from the server: the app is told, its answer complete and masked.
dp_in app-a nghttp -v "http://10.211.1.1:$PH/goaway" >"$DP_DIR/g.txt" 2>&1
check "GOAWAY from the upstream reaches the app" grep -q 'recv GOAWAY' "$DP_DIR/g.txt"
check "the answer before the GOAWAY is masked" grep -q 'XXX-XX-6789' "$DP_DIR/g.txt"

# A slow reader: 64 MiB at 8 MB/s; the agent holds the upstream instead of buffering.
rss() { awk '/VmRSS/ { print $2 }' /proc/$DP_AGENT_PID/status; }
before=$(rss)
dp_in app-a curl -sS --http2-prior-knowledge --max-time 60 --limit-rate 8M \
	"http://10.211.1.1:$PH/big/64" -o "$DP_DIR/big.json" 2>"$DP_DIR/big.err" &
slow=$!
sleep 3
mid=$(rss)
wait $slow
sz=$(stat -c %s "$DP_DIR/big.json")
check "slow reader: the whole body arrives ($sz bytes; $(cat "$DP_DIR/big.err"))" test "$sz" -gt $((64 << 20))
check "slow reader: masked throughout" bash -c "! grep -q -e 123-45-6789 -e 4111111111111111 '$DP_DIR/big.json'"
if dp_sanitized; then
	echo "ok - slow reader: memory # SKIP sanitizer build"
else
	check "slow reader: agent RSS grew by less than 16 MiB mid-transfer ($before -> $mid KiB)" \
		test $((mid - before)) -lt $((16 << 10))
fi

# Counted per policy, never a value in the log or audit.
sleep 0.3
check "h2 messages counted under the policy" \
	test "$(dp_metric 'meshmask_messages_total\{policy="h2-py",direction="response",protocol="h2",method=""\}')" -ge 50
check "masked values counted" \
	test "$(dp_metric 'meshmask_values_masked_total\{policy="h2-py",rule="ssn"')" -ge 100
check "no secret in the agent's log or audit log" \
	bash -c "! grep -q -e 123-45-6789 -e 4111111111111111 -e s3cret '$DP_DIR/audit.log' '$DP_DIR/agent.log'"
[[ -n ${H2_KEEP:-} ]] && cp -r "$DP_DIR" /tmp/h2-keep
dp_done

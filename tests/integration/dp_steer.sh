#!/usr/bin/env bash
# Steering and masking end to end: a flagged caller gets masked JSON (plain, chunked+gzip, a
# value split across TCP segments, 100 keep-alive requests on one connection); unflagged and
# exempt callers, and a flagged caller to an unflagged port, get the original bytes and are
# not steered; the app sees its real peer; two pods using the same loopback 4-tuple in
# different netns do not collide.
source "$(dirname "$0")/dp_lib.sh"
dp_init "$1"

dp_policy pii closed 'app-*' 'app-fraud*' $DP_SPORT
DP_DIRECTIONS='"request", "response"' dp_policy cidr closed 'app-second' 'none' $((DP_SPORT + 1)) 10.211.4.1/32
dp_policy closedport closed 'app-frontend' 'none' 9
dp_pod app-frontend 1
dp_pod app-fraud 2
dp_pod batch 3
dp_pod app-second 4
dp_agent_start || { not_ok "agent starts"; dp_done; exit; }
check "agent listens in the flagged pod's netns" dp_wait_listener app-frontend
check "agent listens in a second flagged pod's netns" dp_wait_listener app-second

orig=$DP_DIR/orig.json
ip netns exec "$DP_NS_SRV" curl -s --max-time 5 http://127.0.0.1:$DP_SPORT/customers >"$orig"
steered() { grep -c "steered connection to" "$DP_DIR/agent.log"; }

out=$(dp_in app-frontend curl -s --max-time 5 http://10.211.1.1:$DP_SPORT/customers)
check "flagged caller: SSN masked" grep -q '"XXX-XX-6789"' <<<"$out"
check "flagged caller: no raw SSN, card or email" \
	bash -c '! grep -qE "123-45-6789|4111 1111 1111 1111|ada@example.com" <<<"$1"' _ "$out"
check "flagged caller: card keeps last 4" grep -q '1111"' <<<"$out"
check "flagged caller: email replaced" grep -q '<email>' <<<"$out"
check "flagged caller: response is valid JSON" python3 -c 'import json,sys; json.loads(sys.argv[1])' "$out"
n0=$(steered)
check "flagged caller was steered through the agent" test "$n0" -ge 1
check "cgroup/getsockopt attached to the agent's own cgroup" \
	grep -q "cgroup/getsockopt (SO_ORIGINAL_DST) attached to own cgroup $DP_CG_AGENT" "$DP_DIR/agent.log"
if command -v bpftool >/dev/null; then
	check "bpftool shows mm_getsockopt on the agent's cgroup" \
		bash -c "bpftool cgroup show '$DP_CG_AGENT' | grep -q 'getsockopt.*mm_getsockopt'"
fi

for pod in app-fraud:2 batch:3; do
	name=${pod%:*} i=${pod#*:}
	dp_in "$name" curl -s --max-time 5 http://10.211.$i.1:$DP_SPORT/customers >"$DP_DIR/$name.json"
	check "$name caller: byte-identical original" cmp -s "$orig" "$DP_DIR/$name.json"
done
check "exempt and unflagged callers were not steered" test "$(steered)" -eq "$n0"
check "no listener in an unflagged pod's netns" bash -c "! ip netns exec mmbatch$DP_ID ss -Hltn 'sport = :$DP_PPORT' | grep -q ."

dp_in app-frontend curl -s --max-time 5 http://10.211.1.1:$((DP_SPORT + 1))/customers >"$DP_DIR/other.json"
check "flagged caller to an unflagged port: original bytes" cmp -s "$orig" "$DP_DIR/other.json"
check "flagged caller to an unflagged port: not steered" test "$(steered)" -eq "$n0"

out=$(dp_in app-second curl -s --max-time 5 http://10.211.4.1:$((DP_SPORT + 1))/customers)
check "destination matched by port + CIDR: masked" grep -q '"XXX-XX-6789"' <<<"$out"
out=$(dp_in app-second curl -s --max-time 5 -H 'Content-Type: application/json' \
	--data-binary '{"ssn": "123-45-6789", "note": "hello"}' http://10.211.4.1:$((DP_SPORT + 1))/echo)
check "request direction: the server receives the masked body" grep -q '"XXX-XX-6789"' <<<"$out"
check "request direction: the raw SSN never reaches the server" bash -c '! grep -q "123-45-6789" <<<"$1"' _ "$out"
out=$(dp_in app-frontend python3 -c '
import socket
s = socket.create_connection(("10.211.1.1", '$DP_SPORT'), timeout=5)
s.sendall(b"GET /customers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
s.shutdown(socket.SHUT_WR)
d = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    d += b
print("masked" if b"XXX-XX-6789" in d and b"123-45-6789" not in d and d.rstrip().endswith(b"}") else "bad")')
check "half-close: request then SHUT_WR still gets the whole masked response" test "$out" = masked
out=$(dp_in app-frontend curl -s --max-time 5 -g "http://[fd00:211:1::1]:$DP_SPORT/customers")
check "IPv6 destination (connect6): masked" grep -q '"XXX-XX-6789"' <<<"$out"
check "IPv6 destination (connect6): no raw SSN" bash -c '! grep -q "123-45-6789" <<<"$1"' _ "$out"
out=$(dp_in app-frontend curl -s --max-time 5 -g "http://[::ffff:10.211.1.1]:$DP_SPORT/customers")
check "v4-mapped destination on an IPv6 socket: masked" grep -q '"XXX-XX-6789"' <<<"$out"
n0=$(steered)

peer=$(dp_in app-frontend python3 -c '
import socket
s = socket.create_connection(("10.211.1.1", '$DP_SPORT'), timeout=5)
print("%s:%d" % s.getpeername())')
check "app sees its real peer (getpeername)" test "$peer" = "10.211.1.1:$DP_SPORT"

out=$(dp_in app-frontend sh -c "curl -s --max-time 10 --compressed http://10.211.1.1:$DP_SPORT/gzip")
check "chunked+gzip: decodable and masked" grep -q '"XXX-XX-6789"' <<<"$out"
check "chunked+gzip: no raw SSN" bash -c '! grep -q "123-45-6789" <<<"$1"' _ "$out"

out=$(dp_in app-frontend curl -s --max-time 10 http://10.211.1.1:$DP_SPORT/split)
check "value split across TCP segments: masked" grep -q '"XXX-XX-6789"' <<<"$out"
check "value split across TCP segments: no raw SSN" bash -c '! grep -q "123-45-6789" <<<"$1"' _ "$out"

# 100 requests on one keep-alive connection, every response masked.
res=$(dp_in app-frontend python3 -c '
import http.client
c = http.client.HTTPConnection("10.211.1.1", '$DP_SPORT', timeout=10)
good = 0
for i in range(100):
    c.request("GET", "/customers?i=%d" % i)
    r = c.getresponse()
    b = r.read()
    if b"XXX-XX-6789" in b and b"123-45-6789" not in b:
        good += 1
print(good)')
check "keep-alive: 100 requests on one connection all masked ($res)" test "$res" = 100

# Upstream failures reach the app: a reset mid-body as a reset, a refused connect as a 502.
ip netns exec "$DP_NS_SRV" curl -s --max-time 5 http://127.0.0.1:$DP_SPORT/reset >/dev/null
direct=$?
dp_in app-frontend curl -s --max-time 5 http://10.211.1.1:$DP_SPORT/reset >/dev/null
rc=$?
check "upstream reset mid-body reaches the app as a reset (rc $rc, direct $direct)" test $rc -eq 56 -a $direct -eq 56
hdr=$(dp_in app-frontend curl -s --max-time 5 -o /dev/null -D - http://10.211.1.1:9/)
rc=$?
check "upstream refused: the app gets 502 with x-meshmask-reason: upstream_error (rc $rc)" \
	bash -c 'grep -q "^HTTP/1.1 502" <<<"$1" && grep -qi "^x-meshmask-reason: upstream_error" <<<"$1"' _ "$hdr"
check "upstream refused: counted" test "$(dp_metric 'meshmask_flows_refused_total.*upstream_error')" -ge 1

# Many connections at once: 40 concurrent keep-alive clients, 5 requests each.
res=$(dp_in app-frontend python3 -c '
import http.client, threading
good = []
def run():
    c = http.client.HTTPConnection("10.211.1.1", '$DP_SPORT', timeout=20)
    n = 0
    for i in range(5):
        c.request("GET", "/customers")
        b = c.getresponse().read()
        n += b"XXX-XX-6789" in b and b"123-45-6789" not in b
    good.append(n)
ts = [threading.Thread(target=run) for _ in range(40)]
[t.start() for t in ts]
[t.join() for t in ts]
print(sum(good))')
check "40 concurrent connections x 5 requests all masked ($res)" test "$res" = 200

# Same loopback 4-tuple in two netns: bind the same local port in both pods at once.
res=$(for pod in app-frontend:1 app-second:4; do
	name=${pod%:*} i=${pod#*:}
	dp_in "$name" python3 -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 45999))
s.settimeout(5)
s.connect(("10.211.'$i'.1", '$DP_SPORT'))
s.sendall(b"GET /customers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
d = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    d += b
print("masked" if b"XXX-XX-6789" in d and b"123-45-6789" not in d else "bad")' &
done; wait)
check "same loopback 4-tuple in two netns: both masked" test "$(grep -c masked <<<"$res")" -eq 2

# An HTTP/1.0 keep-alive client and a 2 MiB masked body: too big to hold, so it is sent
# close-delimited with "Connection: close" although the server keeps its connection open. The
# agent must end the client's connection once the body is through, not leave it hanging.
res=$(dp_in app-frontend python3 -c '
import socket, time
s = socket.create_connection(("10.211.1.1", '$DP_SPORT'), timeout=8)
s.sendall(b"GET /big/2 HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
t, d = time.time(), b""
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        d += b
except OSError as e:
    print("error %s after %d bytes" % (e, len(d)))
    raise SystemExit
head, _, body = d.partition(b"\r\n\r\n")
print("eof %.1f %d %s" % (time.time() - t, len(body),
      "close" if b"connection: close" in head.lower() else "no-close"))')
check "HTTP/1.0 close-delimited re-frame: the agent closes the client side ($res)" \
	bash -c '[[ $1 == "eof "*" 2097152 close" ]] && (( $(echo "${1#eof }" | cut -d" " -f1 | cut -d. -f1) < 3 ))' _ "$res"

# Every steered connection (IPv4, IPv6, v4-mapped, both netns) learnt its original destination
# and caller through getsockopt(STEER_SO_CALLER) on the accepted socket, none from the map.
via_sockopt=$(grep -c "destination from SO_ORIGINAL_DST" "$DP_DIR/agent.log")
check "original destination through cgroup/getsockopt for all $(steered) steered connections ($via_sockopt)" \
	test "$via_sockopt" -eq "$(steered)"
check "no fallback to the steer_by_port map read" bash -c "! grep -q 'steer_by_port map' '$DP_DIR/agent.log'"

# Without the getsockopt answer (its link detached under the running agent) the proxy reads
# the steer_by_port map itself: still masked, and said once in the log.
link=$(bpftool -j link show 2>/dev/null | python3 -c '
import json, os, sys
cg = os.stat(sys.argv[1]).st_ino
print(next((str(l["id"]) for l in json.load(sys.stdin)
            if l.get("attach_type") == "cgroup_getsockopt" and l.get("cgroup_id") == cg), ""))' "$DP_CG_AGENT")
if [[ -n $link ]] && bpftool link detach id "$link"; then
	out=$(dp_in app-frontend curl -s --max-time 5 http://10.211.1.1:$DP_SPORT/customers)
	check "getsockopt detached: still masked" grep -q '"XXX-XX-6789"' <<<"$out"
	check "getsockopt detached: destination read from the steer_by_port map" \
		grep -q "destination from steer_by_port map" "$DP_DIR/agent.log"
	check "getsockopt detached: the fallback is logged once as a warning" \
		test "$(grep -c 'SO_ORIGINAL_DST not answered' "$DP_DIR/agent.log")" -eq 1
else
	echo "# bpftool cannot detach links here: fallback path not exercised"
fi

dp_check_splice
dp_done
